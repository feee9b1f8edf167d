using Coordinator.Grains.Dispatch;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Accounting;

/// <summary>
/// Daily quotas. Requests are counted when a job is claimed and tokens when its result arrives, into sharded
/// counter rows (see <c>quota_usage</c>). An account that reaches a limit has its pending jobs held until the UTC
/// day changes; then they go out again in their original order.
/// </summary>
public sealed class Quotas(NpgsqlDataSource dataSource, TimeProvider time, IOptions<AccountingOptions> options)
{
    public DateOnly Today => DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);

    private int _shardCursor;

    /// <summary>
    /// The counter row one statement's counts go to, taken in turn: one account's concurrent claims, results and
    /// hand-offs write different rows, so they seldom wait on each other's row locks until commit.
    /// </summary>
    public short NextShard() => (short)((uint)Interlocked.Increment(ref _shardCursor) % (uint)options.Value.QuotaShards);

    /// <summary>
    /// Checks the account's counters for today against its plan; if a limit is reached, marks the account exhausted
    /// for today and holds its pending jobs. Answers how many jobs were held.
    /// </summary>
    public async Task<int> EnforceAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition("""
            WITH total AS (
                SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(tokens), 0) AS tokens
                FROM quota_usage WHERE account_id = @accountId AND day = @day
            ), exhausted AS (
                UPDATE accounts a SET quota_exhausted_on = @day
                FROM plans p, total
                WHERE a.id = @accountId AND p.id = a.plan AND a.quota_exhausted_on IS DISTINCT FROM @day
                  AND ((p.daily_requests IS NOT NULL AND total.requests >= p.daily_requests)
                    OR (p.daily_tokens IS NOT NULL AND total.tokens >= p.daily_tokens))
                RETURNING a.id
            )
            UPDATE jobs SET held = true
            WHERE account_id IN (SELECT id FROM exhausted) AND status = 'pending' AND NOT held
            """, new { accountId, day = Today }, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// At the UTC day boundary: un-holds the jobs of every account exhausted on an earlier day. Answers the wake keys
    /// of the released jobs, for the caller to wake once its transaction has committed.
    /// </summary>
    public async Task<IReadOnlyList<string[]>> ReleaseAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken = default)
    {
        var released = await connection.QueryAsync<(string ModelMatch, string? Model, string? Family)>(new CommandDefinition("""
            WITH renewed AS (
                UPDATE accounts SET quota_exhausted_on = NULL WHERE quota_exhausted_on < @day RETURNING id
            )
            UPDATE jobs SET held = false
            WHERE held AND account_id IN (SELECT id FROM renewed)
            RETURNING model_match, model, family
            """, new { day = Today }, transaction, cancellationToken: cancellationToken));
        return released.Select(r => WakeKeys.ForJob(r.ModelMatch, r.Model, r.Family)).ToList();
    }
}
