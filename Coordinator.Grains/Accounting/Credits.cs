using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Accounting;

public sealed class CreditEntry
{
    public long Id { get; init; }
    public decimal CreditsEarned { get; init; }
    public int? OutputTokens { get; init; }
    public int? DurationMs { get; init; }
    public bool PaidOut { get; init; }
    public DateTime CreatedAt { get; init; }
}

public sealed record CreditSummary(decimal Balance, decimal TotalEarned, decimal CreditValueUsd, IReadOnlyList<CreditEntry> History);

public sealed class PayoutBatch
{
    public long Id { get; init; }
    public long WorkerId { get; init; }
    public decimal AmountCredits { get; init; }
    public decimal AmountUsd { get; init; }
    public string Status { get; init; } = "";
    public DateTime CreatedAt { get; init; }
    public DateTime? PaidAt { get; init; }
}

/// <summary>
/// Worker credits and payout batches. A credit entry is a completed job of the worker: its <c>credits</c> (set by the
/// result) and the <c>payout_batch_id</c> that paid them; the entry's id is the job's id.
/// </summary>
public sealed class Credits(NpgsqlDataSource dataSource, TimeProvider time, IOptions<AccountingOptions> options)
{
    public const int HistoryLength = 100;

    public async Task<CreditSummary> SummaryAsync(long workerId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var totals = await connection.QuerySingleAsync<(decimal Balance, decimal TotalEarned)>(new CommandDefinition("""
            SELECT coalesce(sum(credits) FILTER (WHERE payout_batch_id IS NULL), 0), coalesce(sum(credits), 0)
            FROM jobs WHERE worker_id = @workerId AND status = 'completed'
            """, new { workerId }, cancellationToken: cancellationToken));
        var history = await connection.QueryAsync<CreditEntry>(new CommandDefinition("""
            SELECT id, credits AS credits_earned, output_tokens, duration_ms, payout_batch_id IS NOT NULL AS paid_out, completed_at AS created_at
            FROM jobs WHERE worker_id = @workerId AND status = 'completed'
            ORDER BY completed_at DESC, id DESC LIMIT @limit
            """, new { workerId, limit = HistoryLength }, cancellationToken: cancellationToken));
        return new CreditSummary(totals.Balance, totals.TotalEarned, options.Value.CreditValueUsd, history.AsList());
    }

    /// <summary>
    /// Pays the whole unpaid balance into a new pending batch. Null when the balance is not above the minimum.
    /// Entries are claimed row by row with <c>payout_batch_id IS NULL</c> rechecked under the row lock, so two
    /// concurrent requests can never put the same entry in two batches.
    /// </summary>
    public async Task<PayoutBatch?> RequestPayoutAsync(long workerId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var batch = await connection.QuerySingleAsync<PayoutBatch>(new CommandDefinition("""
            INSERT INTO payout_batches (worker_id, amount_credits, amount_usd, status, created_at)
            VALUES (@workerId, 0, 0, 'pending', @now)
            RETURNING id, worker_id, amount_credits, amount_usd, status, created_at, paid_at
            """, new { workerId, now = time.GetUtcNow() }, transaction, cancellationToken: cancellationToken));
        var amount = await connection.ExecuteScalarAsync<decimal>(new CommandDefinition("""
            WITH paid AS (
                UPDATE jobs SET payout_batch_id = @batchId
                WHERE worker_id = @workerId AND status = 'completed' AND payout_batch_id IS NULL
                RETURNING credits
            )
            SELECT coalesce(sum(credits), 0) FROM paid
            """, new { workerId, batchId = batch.Id }, transaction, cancellationToken: cancellationToken));
        if (amount <= options.Value.MinimumPayoutCredits || amount <= 0)
        {
            await transaction.RollbackAsync(cancellationToken);
            return null;
        }
        var usd = Math.Round(amount * options.Value.CreditValueUsd, 4);
        await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE payout_batches SET amount_credits = @amount, amount_usd = @usd WHERE id = @id",
            new { amount, usd, id = batch.Id }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return new PayoutBatch { Id = batch.Id, WorkerId = workerId, AmountCredits = amount, AmountUsd = usd, Status = "pending", CreatedAt = batch.CreatedAt };
    }

    /// <summary>For the operator: batches waiting to be paid, oldest first.</summary>
    public async Task<IReadOnlyList<PayoutBatch>> PendingBatchesAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<PayoutBatch>(new CommandDefinition("""
            SELECT id, worker_id, amount_credits, amount_usd, status, created_at, paid_at
            FROM payout_batches WHERE status = 'pending' ORDER BY id
            """, cancellationToken: cancellationToken));
        return rows.AsList();
    }

    /// <summary>For the operator: marks a pending batch paid. False when there is no such pending batch.</summary>
    public async Task<bool> MarkPaidAsync(long batchId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE payout_batches SET status = 'paid', paid_at = @now WHERE id = @batchId AND status = 'pending'",
            new { batchId, now = time.GetUtcNow() }, cancellationToken: cancellationToken)) == 1;
    }

    /// <summary>
    /// For the operator: marks every pending batch paid, in one statement; answers the batches it marked (none when
    /// nothing was pending). A batch paid by a concurrent call is in only one call's answer.
    /// </summary>
    public async Task<IReadOnlyList<PayoutBatch>> MarkAllPaidAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<PayoutBatch>(new CommandDefinition("""
            UPDATE payout_batches SET status = 'paid', paid_at = @now WHERE status = 'pending'
            RETURNING id, worker_id, amount_credits, amount_usd, status, created_at, paid_at
            """, new { now = time.GetUtcNow() }, cancellationToken: cancellationToken));
        return rows.OrderBy(batch => batch.Id).ToList();
    }

    /// <summary>One batch, whatever its status; null when there is none.</summary>
    public async Task<PayoutBatch?> BatchAsync(long batchId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<PayoutBatch>(new CommandDefinition("""
            SELECT id, worker_id, amount_credits, amount_usd, status, created_at, paid_at FROM payout_batches WHERE id = @batchId
            """, new { batchId }, cancellationToken: cancellationToken));
    }
}
