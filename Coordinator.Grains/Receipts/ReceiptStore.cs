using Dapper;
using Npgsql;

namespace Coordinator.Grains.Receipts;

/// <summary>One row of <c>receipts</c>: the signed receipt as it is served (<see cref="Body"/>) and what it is filed under.</summary>
public sealed class ReceiptRow
{
    public string ReceiptId { get; init; } = "";
    public long JobId { get; init; }
    public string Client { get; init; } = "";
    public string Provider { get; init; } = "";
    /// <summary>The key that signed it: the signature's <c>key_id</c>.</summary>
    public string KeyId { get; init; } = "";
    /// <summary>The signed receipt's JSON text exactly as it was issued; never re-serialised, since verifiers check these bytes.</summary>
    public string Body { get; init; } = "";
    public DateTime IssuedAt { get; init; }
    /// <summary>The ledger block that sealed it; null until one does.</summary>
    public long? BlockHeight { get; init; }
}

/// <summary>
/// Reads receipts for an account. An account sees a receipt when it is the receipt's client (the job's account) or
/// owns its provider (the worker that ran the job); every other receipt is, to it, not there at all.
/// </summary>
public sealed class ReceiptStore(NpgsqlDataSource dataSource)
{
    private static readonly string Columns =
        $"r.receipt_id, r.job_id, r.client, r.provider, r.key_id, r.body, r.issued_at, {Ledger.LedgerStore.BlockOfReceiptSql("r.seq")} AS block_height";

    // A receipt the account may see: as its client, or as the owner of the worker that ran the job.
    private const string Visible = """
        (r.account_id = @accountId OR EXISTS (SELECT 1 FROM workers w WHERE w.id = r.worker_id AND w.account_id = @accountId))
        """;

    /// <summary>
    /// The account's receipts, newest first: those it is the client of and those of its workers, optionally only
    /// those whose <c>client</c> and <c>provider</c> are the given strings (<c>account-7</c>, <c>worker-3</c>, a miner id).
    /// </summary>
    public async Task<IReadOnlyList<ReceiptRow>> ListAsync(long accountId, string? client, string? provider, int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Receipts are found from their jobs: each side reads the completed jobs' index newest first (the account's
        // jobs_usage, each worker's jobs_credits) and stops at the limit, so the answer costs at most
        // (1 + the account's workers) × limit jobs however many receipts there are. A receipt is issued with its job's
        // completion, at the same time, so completion order is issue order.
        var rows = await connection.QueryAsync<ReceiptRow>(new CommandDefinition($"""
            WITH visible AS (
                (SELECT j.receipt_seq AS seq, j.completed_at FROM jobs j JOIN receipts r ON r.seq = j.receipt_seq
                 WHERE j.account_id = @accountId AND j.status = 'completed'
                   AND (@client::text IS NULL OR r.client = @client) AND (@provider::text IS NULL OR r.provider = @provider)
                 ORDER BY j.completed_at DESC LIMIT @limit)
                UNION
                (SELECT mine.seq, mine.completed_at FROM workers w
                 CROSS JOIN LATERAL (
                     SELECT j.receipt_seq AS seq, j.completed_at FROM jobs j JOIN receipts r ON r.seq = j.receipt_seq
                     WHERE j.worker_id = w.id AND j.status = 'completed'
                       AND (@client::text IS NULL OR r.client = @client) AND (@provider::text IS NULL OR r.provider = @provider)
                     ORDER BY j.completed_at DESC LIMIT @limit) mine
                 WHERE w.account_id = @accountId)
                ORDER BY completed_at DESC, seq DESC LIMIT @limit
            )
            SELECT {Columns} FROM visible v JOIN receipts r ON r.seq = v.seq
            ORDER BY v.completed_at DESC, r.seq DESC
            """, new { accountId, client, provider, limit }, cancellationToken: cancellationToken));
        return rows.AsList();
    }

    /// <summary>The receipt, or null when there is none by that id that the account may see.</summary>
    public async Task<ReceiptRow?> GetAsync(long accountId, string receiptId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<ReceiptRow>(new CommandDefinition(
            $"SELECT {Columns} FROM receipts r WHERE r.receipt_id = @receiptId AND {Visible}",
            new { accountId, receiptId }, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// The job's receipts that the account may see (the history AITBC's SDK reads: a job completes once, so at most
    /// one); empty for a job of the account's without any, null when the account neither owns the job nor sees a
    /// receipt of it.
    /// </summary>
    public async Task<IReadOnlyList<ReceiptRow>?> OfJobAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<ReceiptRow>(new CommandDefinition(
            $"SELECT {Columns} FROM jobs j JOIN receipts r ON r.seq = j.receipt_seq WHERE j.id = @jobId AND {Visible}",
            new { accountId, jobId }, cancellationToken: cancellationToken))).AsList();
        if (rows.Count > 0) return rows;
        var owned = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = @jobId AND account_id = @accountId)",
            new { accountId, jobId }, cancellationToken: cancellationToken));
        return owned ? rows : null;
    }

    /// <summary>The job's receipt, if the account may see it, or null.</summary>
    public async Task<ReceiptRow?> LatestOfJobAsync(long accountId, long jobId, CancellationToken cancellationToken = default) =>
        (await OfJobAsync(accountId, jobId, cancellationToken))?.SingleOrDefault();
}
