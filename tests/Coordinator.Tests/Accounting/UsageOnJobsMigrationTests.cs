using Coordinator.Grains;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Database;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Tests.Accounting;

/// <summary>Migration 0006 folds usage_ledger and worker_credits into the completed job rows.</summary>
public class UsageOnJobsMigrationTests
{
    private static readonly DateTime Noon = new(2030, 5, 20, 12, 0, 0, DateTimeKind.Utc);

    /// <summary>A database at the schema before 0006, with an account and two of its workers.</summary>
    private static async Task<(NpgsqlDataSource DataSource, long Account, long W1, long W2)> BeforeFoldAsync()
    {
        var dataSource = NpgsqlDataSource.Create(await TestDatabase.CreateAsync());
        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync(5, CancellationToken.None);
        await using var connection = await dataSource.OpenConnectionAsync();
        var account = await connection.QuerySingleAsync<long>("INSERT INTO accounts (name, created_at) VALUES ('a', @Noon) RETURNING id", new { Noon });
        var workers = (await connection.QueryAsync<long>("""
            INSERT INTO workers (account_id, name, last_seen_at, created_at)
            VALUES (@account, 'w1', @Noon, @Noon), (@account, 'w2', @Noon, @Noon) RETURNING id
            """, new { account, Noon })).Order().ToList();
        return (dataSource, account, workers[0], workers[1]);
    }

    /// <summary>A completed job with its usage_ledger row and credit entry, written as the old result statement did.</summary>
    private static async Task<long> CompletedAsync(
        NpgsqlConnection connection, long account, long worker, string? tag, int? inputTokens, int outputTokens, DateTime at, long? batch = null)
    {
        var job = await connection.QuerySingleAsync<long>("""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, tag, output, input_tokens,
                              output_tokens, duration_ms, model_used, worker_id, attempts, created_at, claimed_at, started_at, completed_at)
            VALUES (@account, 'completed', 'm:1b', 'm', 'exact', 'p', 0, 300, @tag, 'o', @inputTokens, @outputTokens, 9, 'm:1b-q4', @worker, 1,
                    @at, @at, @at, @at)
            RETURNING id
            """, new { account, worker, tag, inputTokens, outputTokens, at });
        await connection.ExecuteAsync("""
            INSERT INTO usage_ledger (account_id, job_id, tag, model, input_tokens, output_tokens, created_at)
            VALUES (@account, @job, @tag, 'm:1b-q4', COALESCE(@inputTokens, 0), @outputTokens, @at);
            INSERT INTO worker_credits (worker_id, job_id, credits, output_tokens, duration_ms, payout_batch_id, created_at)
            VALUES (@worker, @job, round(@outputTokens / 1000.0, 4), @outputTokens, 9, @batch, @at);
            """, new { account, job, worker, tag, inputTokens, outputTokens, at, batch });
        return job;
    }

    private static async Task<bool> TableExistsAsync(NpgsqlConnection connection, string table) =>
        await connection.QuerySingleAsync<bool>("SELECT to_regclass(@table) IS NOT NULL", new { table });

    [Fact]
    public async Task ExistingEntries_MoveOntoTheirJobs_AndUsageAndCreditsReadTheSame()
    {
        var (database, account, w1, w2) = await BeforeFoldAsync();
        await using var dataSource = database;
        long paid, zero, other, failed;
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            var batch = await connection.QuerySingleAsync<long>("""
                INSERT INTO payout_batches (worker_id, amount_credits, amount_usd, status, created_at)
                VALUES (@w1, 2.5, 0.025, 'pending', @Noon) RETURNING id
                """, new { w1, Noon });
            paid = await CompletedAsync(connection, account, w1, "t", 100, 2500, Noon.AddHours(-3), batch);
            zero = await CompletedAsync(connection, account, w1, null, null, 0, Noon.AddHours(-2));
            other = await CompletedAsync(connection, account, w2, "t", 10, 1234, Noon.AddHours(-1));
            failed = await connection.QuerySingleAsync<long>("""
                INSERT INTO jobs (account_id, status, model_match, prompt, priority, timeout_seconds, worker_id, error, created_at, completed_at)
                VALUES (@account, 'failed', 'any', 'p', 0, 300, @w1, 'boom', @Noon, @Noon) RETURNING id
                """, new { account, w1, Noon });
        }

        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();

        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            var rows = (await connection.QueryAsync<(long Id, decimal? Credits, long? PayoutBatchId)>(
                "SELECT id, credits, payout_batch_id FROM jobs ORDER BY id")).ToDictionary(r => r.Id);
            Assert.Equal(2.5m, rows[paid].Credits);
            Assert.NotNull(rows[paid].PayoutBatchId);
            Assert.Equal((0m, (long?)null), (rows[zero].Credits, rows[zero].PayoutBatchId));
            Assert.Equal((1.234m, (long?)null), (rows[other].Credits, rows[other].PayoutBatchId));
            Assert.Equal(((decimal?)null, (long?)null), (rows[failed].Credits, rows[failed].PayoutBatchId));
            Assert.False(await TableExistsAsync(connection, "usage_ledger"));
            Assert.False(await TableExistsAsync(connection, "worker_credits"));
        }

        var time = new ManualTimeProvider(Noon);
        var credits = new Credits(dataSource, time, Options.Create(new AccountingOptions()));
        var summary = await credits.SummaryAsync(w1);
        Assert.Equal((0m, 2.5m), (summary.Balance, summary.TotalEarned));
        // Newest first; the zero-credit entry is listed and unpaid, the paid one stays paid.
        Assert.Equal([(zero, 0m, false, Noon.AddHours(-2)), (paid, 2.5m, true, Noon.AddHours(-3))],
            summary.History.Select(h => (h.Id, h.CreditsEarned, h.PaidOut, h.CreatedAt)));
        var secondWorker = await credits.SummaryAsync(w2);
        Assert.Equal((1.234m, 1.234m, other), (secondWorker.Balance, secondWorker.TotalEarned, Assert.Single(secondWorker.History).Id));

        var usage = await new Usage(dataSource, time).ReportAsync(account, UsagePeriod.Daily, null);
        Assert.Equal((2600L + 0 + 1244, 3L), (usage.TokensUsed, usage.RequestsUsed));
        Assert.Equal(KeyValuePair.Create("t", 3844L), Assert.Single(usage.ByTag));
    }

    [Fact]
    public async Task AnEntryThatDoesNotMatchItsJob_StopsTheMigration_AndNothingIsDropped()
    {
        var (database, account, w1, _) = await BeforeFoldAsync();
        await using var dataSource = database;
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            var job = await CompletedAsync(connection, account, w1, null, 5, 50, Noon);
            await connection.ExecuteAsync("UPDATE usage_ledger SET output_tokens = 51 WHERE job_id = @job", new { job });
        }

        var failure = await Assert.ThrowsAsync<PostgresException>(() => new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync());

        Assert.Contains("usage_ledger has rows that do not match their completed job", failure.MessageText);
        await using var check = await dataSource.OpenConnectionAsync();
        Assert.True(await TableExistsAsync(check, "usage_ledger"));
        Assert.True(await TableExistsAsync(check, "worker_credits"));
        Assert.False(await check.QuerySingleAsync<bool>("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = 6)"));
    }
}
