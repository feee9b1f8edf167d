using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Dapper;
using Npgsql;

namespace Coordinator.Grains.Accounting;

/// <summary>An account's plan limits and what it used on one day, as its grain loads them.</summary>
public sealed class QuotaState
{
    public int? DailyRequests { get; init; }
    public long? DailyTokens { get; init; }
    public long Requests { get; init; }
    public long Tokens { get; init; }
    /// <summary>The account's jobs are held on that day: it reached a limit.</summary>
    public bool Held { get; init; }
}

/// <summary>
/// The daily quotas' statements, for <see cref="AccountGrain"/> and the duties. Requests are counted when a job is
/// claimed and tokens when its result arrives; the account grain keeps the counts in memory and writes them to
/// <c>quota_usage</c> now and then. An account that reaches a limit has its pending jobs held until the UTC day changes;
/// then they go out again in their original order.
/// </summary>
public sealed class Quotas(NpgsqlDataSource dataSource, TimeProvider time, Telemetry.CoordinatorMetrics metrics)
{
    public DateOnly Today => DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);

    /// <summary>The account's limits and its counts for <paramref name="day"/> as last written.</summary>
    public async Task<QuotaState> LoadAsync(long accountId, DateOnly day)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        return await connection.QuerySingleAsync<QuotaState>("""
            SELECT p.daily_requests, p.daily_tokens, a.quota_exhausted_on IS NOT DISTINCT FROM @day AS held,
                   coalesce((SELECT sum(q.requests) FROM quota_usage q WHERE q.account_id = a.id AND q.day = @day), 0) AS requests,
                   coalesce((SELECT sum(q.tokens) FROM quota_usage q WHERE q.account_id = a.id AND q.day = @day), 0) AS tokens
            FROM accounts a JOIN plans p ON p.id = a.plan
            WHERE a.id = @accountId
            """, new { accountId, day });
    }

    /// <summary>
    /// Adds counts to the account's row of the day (one row: its grain writes it, and a stopping silo's unsent counts are
    /// added the same way, <see cref="QuotaCounting"/>).
    /// </summary>
    public async Task AddAsync(long accountId, DateOnly day, long requests, long tokens)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await connection.ExecuteAsync("""
            INSERT INTO quota_usage (account_id, day, shard, requests, tokens) VALUES (@accountId, @day, 0, @requests, @tokens)
            ON CONFLICT (account_id, day, shard) DO UPDATE
                SET requests = quota_usage.requests + EXCLUDED.requests, tokens = quota_usage.tokens + EXCLUDED.tokens
            """, new { accountId, day, requests, tokens });
    }

    /// <summary>
    /// Marks the account exhausted for <paramref name="day"/> and holds its pending jobs; answers the dispatchers of the
    /// jobs it held, which must drop them.
    /// </summary>
    public async Task<IReadOnlyList<string>> HoldAsync(long accountId, DateOnly day)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var held = await connection.QueryAsync<(string ModelMatch, string? Family)>("""
            WITH exhausted AS (
                UPDATE accounts SET quota_exhausted_on = @day WHERE id = @accountId RETURNING id
            )
            UPDATE jobs SET held = true
            WHERE account_id IN (SELECT id FROM exhausted) AND status = 'pending' AND NOT held
            RETURNING model_match, family
            """, new { accountId, day });
        var jobs = held.AsList();
        metrics.QuotaHolds.Add(1);
        if (jobs.Count > 0) metrics.JobsHeld.Add(jobs.Count);
        return jobs.Select(job => DispatchKeys.Of(job.ModelMatch, job.Family)).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// At the UTC day boundary: un-holds the jobs of every account exhausted on an earlier day. Answers the released
    /// jobs, for their dispatchers to hear of once the transaction has committed.
    /// </summary>
    public async Task<IReadOnlyList<QueuedJob>> ReleaseAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken = default) =>
        (await connection.QueryAsync<QueuedJob>(new CommandDefinition($"""
            WITH renewed AS (
                UPDATE accounts SET quota_exhausted_on = NULL WHERE quota_exhausted_on < @day RETURNING id
            )
            UPDATE jobs SET held = false
            WHERE held AND account_id IN (SELECT id FROM renewed)
            RETURNING {JobStore.QueuedColumns}
            """, new { day = Today }, transaction, cancellationToken: cancellationToken))).AsList();

    /// <summary>Un-holds one account's jobs (its plan changed); answers them, as <see cref="ReleaseAsync"/> does.</summary>
    public static async Task<IReadOnlyList<QueuedJob>> ReleaseAccountAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, long accountId,
        CancellationToken cancellationToken = default) =>
        (await connection.QueryAsync<QueuedJob>(new CommandDefinition($"""
            WITH renewed AS (UPDATE accounts SET quota_exhausted_on = NULL WHERE id = @accountId AND quota_exhausted_on IS NOT NULL RETURNING id)
            UPDATE jobs SET held = false WHERE held AND account_id IN (SELECT id FROM renewed)
            RETURNING {JobStore.QueuedColumns}
            """, new { accountId }, transaction, cancellationToken: cancellationToken))).AsList();
}
