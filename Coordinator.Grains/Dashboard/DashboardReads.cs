using Coordinator.Grains.Accounting;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Dashboard;

/// <summary>The account behind a dashboard session, when its key is still active and the account enabled.</summary>
public sealed record SessionAccount(long AccountId, long KeyId, string AccountName, string Plan);

/// <summary>One bar of a chart: the start of its bucket (UTC) and its value.</summary>
public sealed record ChartPoint(DateTime Start, long Value);

/// <summary>Today's quota counters against the plan's limits (null: unlimited).</summary>
public sealed record QuotaToday(string PlanName, long Requests, int? RequestLimit, long Tokens, long? TokenLimit);

public sealed record Overview(
    IReadOnlyDictionary<string, long> JobsByStatus, IReadOnlyList<ChartPoint> JobsPerHour, IReadOnlyList<ChartPoint> TokensPerDay, QuotaToday Quota);

/// <summary>One of the account's workers as the dashboard lists it.</summary>
public sealed class WorkerSummary
{
    public long Id { get; init; }
    public string Name { get; init; } = "";
    public string? AgentVersion { get; init; }
    public string? Platform { get; init; }
    public bool Online { get; init; }
    public DateTime LastSeenAt { get; init; }
    public string[] Models { get; init; } = [];
    public long? CurrentJobId { get; init; }
    public decimal Balance { get; init; }
}

public sealed record GridTotals(long Pending, long Running, long CompletedToday, long WorkersOnline);

/// <summary>Per-tag figures of one usage period.</summary>
public sealed record TagUsage(string? Tag, long Tokens, long Requests);

/// <summary>
/// Read-only aggregates the dashboard shows beside what the stores already answer (jobs, keys, credits, usage).
/// Every query that reads an account's rows is scoped by <c>account_id</c>.
/// </summary>
public sealed class DashboardReads(NpgsqlDataSource dataSource, TimeProvider time, IGrainFactory grains, IOptions<DispatchOptions> dispatch)
{
    public async Task<SessionAccount?> SessionAsync(long accountId, long keyId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<SessionAccount>(new CommandDefinition("""
            SELECT a.id AS account_id, k.id AS key_id, a.name AS account_name, p.name AS plan
            FROM api_keys k JOIN accounts a ON a.id = k.account_id JOIN plans p ON p.id = a.plan
            WHERE k.id = @keyId AND k.account_id = @accountId AND k.revoked_at IS NULL AND NOT a.disabled
            """, new { accountId, keyId }, cancellationToken: cancellationToken));
    }

    /// <summary>A job's prompt (the stores' client view leaves it out), only from the account's own jobs.</summary>
    public async Task<string?> PromptAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT prompt FROM jobs WHERE id = @jobId AND account_id = @accountId", new { accountId, jobId }, cancellationToken: cancellationToken));
    }

    public async Task<Overview> OverviewAsync(long accountId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var hourStart = new DateTime(now.Year, now.Month, now.Day, now.Hour, 0, 0, DateTimeKind.Utc).AddHours(-23);
        var dayStart = now.Date.AddDays(-29);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var byStatus = (await connection.QueryAsync<(string Status, long Count)>(new CommandDefinition(
            "SELECT status, count(*) FROM jobs WHERE account_id = @accountId GROUP BY status",
            new { accountId }, cancellationToken: cancellationToken))).ToDictionary(r => r.Status, r => r.Count, StringComparer.Ordinal);
        var perHour = await connection.QueryAsync<ChartPoint>(new CommandDefinition("""
            SELECT b.start, count(j.id) AS value
            FROM generate_series(@hourStart, @hourStart + interval '23 hours', interval '1 hour') AS b(start)
            LEFT JOIN jobs j ON j.account_id = @accountId AND j.created_at >= b.start AND j.created_at < b.start + interval '1 hour'
            GROUP BY b.start ORDER BY b.start
            """, new { accountId, hourStart }, cancellationToken: cancellationToken));
        var perDay = await connection.QueryAsync<ChartPoint>(new CommandDefinition("""
            SELECT b.start, coalesce(sum(COALESCE(j.input_tokens, 0) + j.output_tokens), 0)::bigint AS value
            FROM generate_series(@dayStart, @dayStart + interval '29 days', interval '1 day') AS b(start)
            -- completed_at >= @dayStart bounds the jobs_usage range to the chart (the planner does not derive it from the series).
            LEFT JOIN jobs j ON j.account_id = @accountId AND j.status = 'completed' AND j.completed_at >= @dayStart
                AND j.completed_at >= b.start AND j.completed_at < b.start + interval '1 day'
            GROUP BY b.start ORDER BY b.start
            """, new { accountId, dayStart }, cancellationToken: cancellationToken));
        var plan = await connection.QuerySingleAsync<(string Name, int? RequestLimit, long? TokenLimit)>(new CommandDefinition("""
            SELECT p.name, p.daily_requests, p.daily_tokens FROM accounts a JOIN plans p ON p.id = a.plan WHERE a.id = @accountId
            """, new { accountId }, cancellationToken: cancellationToken));
        // Today's counts as the account's grain holds them: the table has them only as of its last write.
        var counts = await grains.GetGrain<IAccountGrain>(accountId).TodayAsync();
        return new Overview(byStatus, perHour.AsList(), perDay.AsList(), new QuotaToday(plan.Name, counts.Requests, plan.RequestLimit, counts.Tokens, plan.TokenLimit));
    }

    /// <summary>The account's workers (or one of them), with liveness as <c>GET /models</c> judges it.</summary>
    public async Task<IReadOnlyList<WorkerSummary>> WorkersAsync(long accountId, long? workerId = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<WorkerSummary>(new CommandDefinition("""
            SELECT w.id, w.name, w.agent_version, w.platform, (w.online AND w.last_seen_at >= @cutoff) AS online, w.last_seen_at,
                   coalesce((SELECT array_agg(wm.model ORDER BY wm.model) FROM worker_models wm WHERE wm.worker_id = w.id), '{}') AS models,
                   (SELECT min(j.id) FROM jobs j WHERE j.worker_id = w.id AND j.status IN ('claimed', 'running')) AS current_job_id,
                   (SELECT coalesce(sum(j.credits), 0) FROM jobs j
                    WHERE j.worker_id = w.id AND j.status = 'completed' AND j.payout_batch_id IS NULL) AS balance
            FROM workers w
            WHERE w.account_id = @accountId AND (@workerId::bigint IS NULL OR w.id = @workerId)
            ORDER BY w.name
            """, new { accountId, workerId, cutoff = time.GetUtcNow() - dispatch.Value.OfflineAfter }, cancellationToken: cancellationToken));
        return rows.AsList();
    }

    /// <summary>Grid-wide live totals (no account's details).</summary>
    public async Task<GridTotals> GridTotalsAsync(CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<GridTotals>(new CommandDefinition("""
            SELECT (SELECT count(*) FROM jobs WHERE status = 'pending') AS pending,
                   (SELECT count(*) FROM jobs WHERE status IN ('claimed', 'running')) AS running,
                   (SELECT count(*) FROM jobs WHERE status = 'completed' AND completed_at >= @today) AS completed_today,
                   (SELECT count(*) FROM workers WHERE online AND last_seen_at >= @cutoff) AS workers_online
            """, new { today = now.UtcDateTime.Date, cutoff = now - dispatch.Value.OfflineAfter }, cancellationToken: cancellationToken));
    }

    /// <summary>Tokens and completed requests per tag in the current UTC day, week or month (untagged as a null tag).</summary>
    public async Task<IReadOnlyList<TagUsage>> UsageByTagAsync(long accountId, string period, CancellationToken cancellationToken = default)
    {
        var from = DateTime.SpecifyKind(UsagePeriod.StartOf(period, time.GetUtcNow()), DateTimeKind.Utc);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<TagUsage>(new CommandDefinition("""
            SELECT tag, sum(COALESCE(input_tokens, 0) + output_tokens)::bigint AS tokens, count(*) AS requests
            FROM jobs
            WHERE account_id = @accountId AND status = 'completed' AND completed_at >= @from
            GROUP BY tag ORDER BY tokens DESC, tag
            """, new { accountId, from }, cancellationToken: cancellationToken));
        return rows.AsList();
    }
}
