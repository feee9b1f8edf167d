using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Dapper;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Duties;

/// <summary>What one pass of the duties did.</summary>
public sealed record DutyReport(int TimedOut, int WentOffline, int Requeued, int FailedAfterAttempts, int Released = 0, bool Skipped = false, int ClaimsExpired = 0);

/// <summary>
/// The time-driven duties: timeouts, the offline sweep, requeue of jobs held by offline workers, and claims not started
/// within the claim lease. <see cref="DutiesGrain"/> runs them on one silo of the cluster; a transaction-scoped advisory
/// lock still makes concurrent passes (two activations during membership churn, or a test's pass by hand) take turns.
/// </summary>
public sealed partial class GridDuties(
    NpgsqlDataSource dataSource, TimeProvider time, Dispatchers dispatchers, Quotas quotas, IGrainFactory grains, IOptions<DispatchOptions> options,
    ILogger<GridDuties> logger)
{
    private const long DutyLockKey = 0x636f6f7264_02;

    /// <summary>
    /// Cancels the jobs still out with a worker past their timeout. Each job has its own deadline, so no index is searched
    /// by it: the statement reads the in-flight index (<c>jobs_in_flight</c>) whole, which holds only the jobs out now.
    /// </summary>
    internal const string TimeOutSql = """
        UPDATE jobs SET status = 'cancelled', completed_at = @now,
            error = format('timed out: still %s %s seconds after it was claimed (timeout_seconds = %s)', status, timeout_seconds, timeout_seconds)
        WHERE status IN ('claimed', 'running')
          AND claimed_at + make_interval(secs => timeout_seconds) <= @now
        RETURNING id, watched, worker_id
        """;

    /// <summary>
    /// Gives back the claims that their worker has not started within the claim lease: pending again, the worker cleared,
    /// and the attempt the claim counted taken back (a hand-off inserts its job claimed with attempt 1, so the same rule
    /// holds). A lease consumer's jobs are running from the claim on and are not touched. It reads the in-flight index
    /// (<c>jobs_in_flight</c>) whole, as the timeout sweep does: it holds only the jobs out now, and an index keyed by
    /// <c>claimed_at</c> would cost every claim one more index entry (migration 0007 dropped one for that).
    /// </summary>
    internal const string ExpireClaimsSql = $"""
        UPDATE jobs SET status = 'pending', worker_id = NULL, claimed_at = NULL, attempts = attempts - 1
        WHERE status = 'claimed' AND claimed_at <= @claimedBefore
        RETURNING {JobStore.QueuedColumns}
        """;

    public async Task<DutyReport> RunOnceAsync(CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var settings = options.Value;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var locked = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT pg_try_advisory_xact_lock(@key)", new { key = DutyLockKey }, transaction, cancellationToken: cancellationToken));
        if (!locked) return new DutyReport(0, 0, 0, 0, Skipped: true);

        var released = await quotas.ReleaseAsync(connection, transaction, cancellationToken);

        // The spec: "Auto-cancelled if still claimed/running this long after being claimed."
        var timedOutJobs = (await connection.QueryAsync<(long Id, bool Watched, long WorkerId)>(new CommandDefinition(TimeOutSql, new { now }, transaction, cancellationToken: cancellationToken))).AsList();
        var timedOut = timedOutJobs.Count;

        // An AITBC miner has no heartbeat in its protocol: while it runs a job it claimed, it stays online and the job's
        // timeout bounds it (the claimed_at-based cancellation above).
        var wentOffline = await connection.ExecuteAsync(new CommandDefinition("""
            UPDATE workers w SET online = false
            WHERE online AND last_seen_at < @cutoff
              AND NOT (w.miner_id IS NOT NULL AND EXISTS (SELECT 1 FROM jobs j WHERE j.worker_id = w.id AND j.status = 'running'))
            """, new { cutoff = now - settings.OfflineAfter }, transaction, cancellationToken: cancellationToken));

        // Jobs held by offline workers go back to pending, or fail once they have used their attempts.
        var requeued = (await connection.QueryAsync<(string Status, long Id, string? Model, string? Family, string ModelMatch, int Priority, long AccountId, bool Watched, int Attempts)>(new CommandDefinition("""
            UPDATE jobs j SET
                status = CASE WHEN j.attempts >= @maxAttempts THEN 'failed' ELSE 'pending' END,
                error = CASE WHEN j.attempts >= @maxAttempts
                    THEN format('abandoned %s times: each worker that held it went offline', j.attempts) END,
                completed_at = CASE WHEN j.attempts >= @maxAttempts THEN @now END,
                worker_id = CASE WHEN j.attempts >= @maxAttempts THEN j.worker_id END,
                claimed_at = CASE WHEN j.attempts >= @maxAttempts THEN j.claimed_at END,
                started_at = CASE WHEN j.attempts >= @maxAttempts THEN j.started_at END
            FROM workers w
            WHERE w.id = j.worker_id AND NOT w.online AND j.status IN ('claimed', 'running')
            RETURNING j.status, j.id, j.model, j.family, j.model_match, j.priority, j.account_id, j.watched, j.attempts
            """, new { now, maxAttempts = settings.MaxAttempts }, transaction, cancellationToken: cancellationToken))).AsList();

        // After the offline requeue, so that a claim held by a worker that went offline still counts as its attempt. A
        // claim whose worker is alive but never started it was most likely made for a poll that was never answered.
        var expired = (await connection.QueryAsync<QueuedJob>(new CommandDefinition(
            ExpireClaimsSql, new { claimedBefore = now - settings.ClaimLease }, transaction, cancellationToken: cancellationToken))).AsList();
        await transaction.CommitAsync(cancellationToken);

        var backToPending = requeued.Where(r => r.Status == JobStatus.Pending)
            .Select(r => new QueuedJob(r.Id, r.Model, r.Family, r.ModelMatch, r.Priority, r.AccountId)).ToList();
        // Their dispatchers hear of them once the transaction has committed; so do the grains of watched jobs: those that
        // ended (their streams end) and those that went back to the queue after they had started (their streams start again).
        await dispatchers.AddAsync(backToPending.Concat(expired).Concat(released));
        foreach (var (id, _, _) in timedOutJobs.Where(job => job.Watched)) _ = grains.GetGrain<IJobGrain>(id).EndedAsync();
        // Their workers hear it at their next heartbeat too.
        foreach (var (id, _, workerId) in timedOutJobs) _ = grains.GetGrain<IWorkerGrain>(workerId).JobCancelledAsync(id);
        foreach (var job in requeued.Where(job => job.Watched))
        {
            var grain = grains.GetGrain<IJobGrain>(job.Id);
            _ = job.Status == JobStatus.Pending ? grain.RestartedAsync(job.Attempts) : grain.EndedAsync();
        }
        var report = new DutyReport(timedOut, wentOffline, backToPending.Count, requeued.Count - backToPending.Count, released.Count, ClaimsExpired: expired.Count);
        if (timedOut + wentOffline + requeued.Count + released.Count + expired.Count > 0)
        {
            LogDuties(logger, report.TimedOut, report.WentOffline, report.Requeued, report.FailedAfterAttempts, report.Released, report.ClaimsExpired);
        }
        return report;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Duties: {TimedOut} timed out, {WentOffline} workers offline, {Requeued} requeued, {Failed} failed after their last attempt, {Released} released from quota holds, {ClaimsExpired} claims not started within the claim lease given back")]
    private static partial void LogDuties(ILogger logger, int timedOut, int wentOffline, int requeued, int failed, int released, int claimsExpired);
}
