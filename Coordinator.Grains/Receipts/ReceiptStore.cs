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
        // Each side reads its own index newest first and stops at the limit (a worker's side per worker), so the
        // answer costs at most (1 + the account's workers) × limit index entries however many receipts there are, and
        // only the chosen ones are read whole (a join on seq, not a merge with receipts read backwards).
        var rows = await connection.QueryAsync<ReceiptRow>(new CommandDefinition($"""
            WITH visible AS (
                (SELECT seq FROM receipts
                 WHERE account_id = @accountId
                   AND (@client::text IS NULL OR client = @client) AND (@provider::text IS NULL OR provider = @provider)
                 ORDER BY seq DESC LIMIT @limit)
                UNION
                (SELECT mine.seq FROM workers w
                 CROSS JOIN LATERAL (
                     SELECT seq FROM receipts
                     WHERE worker_id = w.id
                       AND (@client::text IS NULL OR client = @client) AND (@provider::text IS NULL OR provider = @provider)
                     ORDER BY seq DESC LIMIT @limit) mine
                 WHERE w.account_id = @accountId)
                ORDER BY seq DESC LIMIT @limit
            )
            SELECT {Columns} FROM visible v JOIN receipts r ON r.seq = v.seq
            ORDER BY r.seq DESC
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
    /// The job's receipts that the account may see, oldest first (the history AITBC's SDK reads); empty for a job of
    /// the account's without any, null when the account neither owns the job nor sees a receipt of it.
    /// </summary>
    public async Task<IReadOnlyList<ReceiptRow>?> OfJobAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<ReceiptRow>(new CommandDefinition(
            $"SELECT {Columns} FROM receipts r WHERE r.job_id = @jobId AND {Visible} ORDER BY r.seq",
            new { accountId, jobId }, cancellationToken: cancellationToken))).AsList();
        if (rows.Count > 0) return rows;
        var owned = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = @jobId AND account_id = @accountId)",
            new { accountId, jobId }, cancellationToken: cancellationToken));
        return owned ? rows : null;
    }

    /// <summary>The job's latest receipt that the account may see, or null.</summary>
    public async Task<ReceiptRow?> LatestOfJobAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<ReceiptRow>(new CommandDefinition(
            $"SELECT {Columns} FROM receipts r WHERE r.job_id = @jobId AND {Visible} ORDER BY r.seq DESC LIMIT 1",
            new { accountId, jobId }, cancellationToken: cancellationToken));
    }
}
