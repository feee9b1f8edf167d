#pragma warning disable CA1849 // rows are read without SequentialAccess: ReadAsync buffers the whole row, so reading its columns does not block

using System.Runtime.CompilerServices;
using System.Text.Json;
using Npgsql;

namespace Coordinator.Grains.Ledger;

/// <summary>A block as the explorer shows it.</summary>
public sealed record ExplorerBlock(long Height, byte[] Hash, DateTime SealedAt, int ReceiptCount, byte[] PrevHash, byte[] MerkleRoot);

/// <summary>
/// A receipt as a transaction: the client pays the provider the receipt's price for its units. Unsealed while
/// <see cref="BlockHeight"/> is null.
/// </summary>
public sealed record ExplorerTransaction(
    string ReceiptId, byte[] Hash, long? BlockHeight, string Client, string Provider, decimal Price, string? UnitType, decimal? Units, DateTime IssuedAt);

/// <summary>The grid in four numbers (see <see cref="LedgerStore.StatsAsync"/>).</summary>
public sealed record ExplorerStats(long TotalJobs, long ActiveMiners, long TotalReceipts, long BlockHeight);

/// <summary>
/// What the ledger's readers need from PostgreSQL: the chain as two ordered streams for <see cref="LedgerVerifier"/>, and
/// the explorer's recent blocks, transactions, receipts and totals, each one bounded, indexed read.
/// </summary>
public sealed class LedgerStore(NpgsqlDataSource dataSource)
{
    /// <summary>Every block in height order (the primary key), streamed.</summary>
    public async IAsyncEnumerable<ChainBlock> ChainBlocksAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            SELECT height, sealed_at, prev_hash, merkle_root, hash, receipt_count, total_receipts FROM ledger_blocks ORDER BY height
            """, connection) { CommandTimeout = 0 };
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            yield return new ChainBlock(reader.GetInt64(0), reader.GetFieldValue<DateTimeOffset>(1), reader.GetFieldValue<byte[]>(2),
                reader.GetFieldValue<byte[]>(3), reader.GetFieldValue<byte[]>(4), reader.GetInt32(5), reader.GetInt64(6));
        }
    }

    /// <summary>
    /// Every receipt the blocks list, in (block height, seq) order: each block's <c>seqs</c> joined to <c>receipts</c>
    /// along its primary key, streamed. A listed seq with no receipt comes as a <see cref="ChainReceipt"/> whose
    /// <see cref="ChainReceipt.ReceiptId"/> is null.
    /// </summary>
    public async IAsyncEnumerable<ChainReceipt> ChainReceiptsAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            SELECT b.height, s.seq, r.receipt_id, r.client, r.provider, r.price, r.body, r.hash
            FROM ledger_blocks b CROSS JOIN LATERAL unnest(b.seqs) AS s(seq) LEFT JOIN receipts r ON r.seq = s.seq
            ORDER BY b.height, s.seq
            """, connection) { CommandTimeout = 0 };
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            yield return reader.IsDBNull(2)
                ? new ChainReceipt(reader.GetInt64(0), reader.GetInt64(1), null, "", "", 0, "", [])
                : new ChainReceipt(reader.GetInt64(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3), reader.GetString(4),
                    reader.GetDecimal(5), reader.GetString(6), reader.GetFieldValue<byte[]>(7));
        }
    }

    /// <summary>
    /// How many receipts there are, and the first (by seq) that is neither listed by a block nor waiting to be sealed,
    /// if any: a receipt the ledger lost. The search reads every receipt, so it runs only when the counts disagree.
    /// </summary>
    public async Task<(long Total, string? Stray)> ReceiptCensusAsync(long listed, long unsealed, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var count = new NpgsqlCommand("SELECT count(*) FROM receipts", connection) { CommandTimeout = 0 };
        var total = (long)(await count.ExecuteScalarAsync(cancellationToken))!;
        if (total == listed + unsealed) return (total, null);
        await using var stray = new NpgsqlCommand("""
            SELECT r.receipt_id FROM receipts r
            WHERE NOT EXISTS (SELECT 1 FROM unsealed_receipts u WHERE u.seq = r.seq)
              AND NOT EXISTS (SELECT 1 FROM ledger_blocks b, unnest(b.seqs) AS s(seq) WHERE s.seq = r.seq)
            ORDER BY r.seq LIMIT 1
            """, connection) { CommandTimeout = 0 };
        return (total, await stray.ExecuteScalarAsync(cancellationToken) as string);
    }

    /// <summary>
    /// SQL for the height of the block that sealed the receipt whose seq is <paramref name="seq"/>, or null while it waits:
    /// the blocks whose seq range covers it, along <c>ledger_blocks_last_seq</c>, checked for listing it.
    /// </summary>
    public static string BlockOfReceiptSql(string seq) => $"""
        (SELECT b.height FROM ledger_blocks b
         WHERE b.last_seq >= {seq} AND b.first_seq <= {seq} AND {seq} = ANY (b.seqs) ORDER BY b.last_seq LIMIT 1)
        """;

    /// <summary>Every public key the grid has signed receipts with, the retired ones included, by key id.</summary>
    public async Task<IReadOnlyDictionary<string, byte[]>> SigningKeysAsync(CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("SELECT key_id, public_key FROM receipt_signing_keys");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken)) keys[reader.GetString(0)] = reader.GetFieldValue<byte[]>(1);
        return keys;
    }

    /// <summary>Receipts not sealed yet (<c>unsealed_receipts</c>).</summary>
    public async Task<long> UnsealedCountAsync(CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("SELECT count(*) FROM unsealed_receipts");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>The newest blocks, newest first.</summary>
    public async Task<IReadOnlyList<ExplorerBlock>> RecentBlocksAsync(int limit, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT height, hash, sealed_at, receipt_count, prev_hash, merkle_root FROM ledger_blocks ORDER BY height DESC LIMIT @limit
            """);
        command.Parameters.AddWithValue("limit", limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var blocks = new List<ExplorerBlock>(limit);
        while (await reader.ReadAsync(cancellationToken))
        {
            blocks.Add(new ExplorerBlock(reader.GetInt64(0), reader.GetFieldValue<byte[]>(1), reader.GetDateTime(2), reader.GetInt32(3),
                reader.GetFieldValue<byte[]>(4), reader.GetFieldValue<byte[]>(5)));
        }
        return blocks;
    }

    /// <summary>The newest receipts as transactions, newest (highest seq) first, sealed or not.</summary>
    public async Task<IReadOnlyList<ExplorerTransaction>> RecentTransactionsAsync(int limit, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand($"""
            SELECT receipt_id, hash, {BlockOfReceiptSql("r.seq")}, client, provider, price, body, issued_at FROM receipts r ORDER BY seq DESC LIMIT @limit
            """);
        command.Parameters.AddWithValue("limit", limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var transactions = new List<ExplorerTransaction>(limit);
        while (await reader.ReadAsync(cancellationToken))
        {
            var (unitType, units) = UnitsOf(reader.GetString(6));
            transactions.Add(new ExplorerTransaction(reader.GetString(0), reader.GetFieldValue<byte[]>(1),
                reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.GetString(3), reader.GetString(4), reader.GetDecimal(5),
                unitType, units, reader.GetDateTime(7)));
        }
        return transactions;
    }

    /// <summary>The newest receipts' bodies, newest first, exactly as stored (and signed).</summary>
    public async Task<IReadOnlyList<string>> RecentReceiptBodiesAsync(int limit, CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("SELECT body FROM receipts ORDER BY seq DESC LIMIT @limit");
        command.Parameters.AddWithValue("limit", limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var bodies = new List<string>(limit);
        while (await reader.ReadAsync(cancellationToken)) bodies.Add(reader.GetString(0));
        return bodies;
    }

    /// <summary>
    /// The explorer's totals, each a probe of an index rather than a count of a large table: <c>total_jobs</c> is the jobs'
    /// identity high-water mark (jobs are never deleted; an insert that rolled back leaves a gap, so it can overcount by
    /// those); <c>active_miners</c> counts the online workers (the <c>workers_online_last_seen</c> partial index);
    /// <c>total_receipts</c> is the tip's running total plus the unsealed receipts (<c>unsealed_receipts</c>, a few
    /// seconds' worth); <c>block_height</c> is the tip's height, 0 before the first block (heights start at 1).
    /// </summary>
    public async Task<ExplorerStats> StatsAsync(CancellationToken cancellationToken = default)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT (SELECT COALESCE(max(id), 0) FROM jobs),
                   (SELECT count(*) FROM workers WHERE online),
                   COALESCE(tip.total_receipts, 0) + (SELECT count(*) FROM unsealed_receipts),
                   COALESCE(tip.height, 0)
            FROM (SELECT 1) AS one
            LEFT JOIN (SELECT height, total_receipts FROM ledger_blocks ORDER BY height DESC LIMIT 1) AS tip ON true
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new ExplorerStats(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3));
    }

    /// <summary>
    /// <c>unit_type</c> and <c>units</c> from a receipt's body. A body that does not parse (only a tampered row can hold
    /// one; <c>ledger verify</c> names it) shows none rather than failing the whole page.
    /// </summary>
    private static (string? UnitType, decimal? Units) UnitsOf(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind != JsonValueKind.Object) return (null, null);
            var root = document.RootElement;
            var unitType = root.TryGetProperty("unit_type", out var type) && type.ValueKind == JsonValueKind.String ? type.GetString() : null;
            decimal? units = root.TryGetProperty("units", out var count) && count.ValueKind == JsonValueKind.Number && count.TryGetDecimal(out var value) ? value : null;
            return (unitType, units);
        }
        catch (JsonException)
        {
            return (null, null);
        }
    }
}
