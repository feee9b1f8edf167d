#pragma warning disable CA1849 // rows are read without SequentialAccess: ReadAsync buffers the whole row, so reading its columns does not block

using Microsoft.Extensions.Logging;
using Npgsql;

namespace Coordinator.Grains.Ledger;

/// <summary>A sealed block of the ledger, as <c>ledger_blocks</c> holds it.</summary>
[GenerateSerializer, Immutable]
public sealed record LedgerBlock(
    [property: Id(0)] long Height,
    [property: Id(1)] DateTimeOffset SealedAt,
    [property: Id(2)] byte[] PrevHash,
    [property: Id(3)] byte[] MerkleRoot,
    [property: Id(4)] byte[] Hash,
    [property: Id(5)] int ReceiptCount,
    [property: Id(6)] long TotalReceipts);

/// <summary>
/// Seals unsealed receipts into the next block, in one transaction: read the tip, take up to a block's worth of receipts
/// out of <c>unsealed_receipts</c> in <c>seq</c> order, and insert block tip+1, chained to the tip's hash and listing
/// their seqs. Receipts themselves are never rewritten. The primary
/// key on <c>height</c> makes two sealers racing on one tip (two activations of the ledger grain during membership churn)
/// fork nothing: the second insert of a height fails, its transaction rolls back, and it starts again from the new tip.
/// Stateless: concurrent calls are safe (and are what the primary key is for).
/// </summary>
public sealed partial class LedgerSealer(NpgsqlDataSource dataSource, TimeProvider time, ILogger<LedgerSealer> logger)
{
    /// <summary>
    /// Seals the oldest unsealed receipts (at most <paramref name="maxReceipts"/>) into a new block and answers it; null
    /// when no receipt is unsealed. Receipts are chosen from the queue, never by a <c>seq</c> watermark:
    /// identity values are handed out at insert and committed in another order, so a receipt with a lower <c>seq</c> than
    /// one already sealed may commit later, and it goes into a later block.
    /// </summary>
    public async Task<LedgerBlock?> SealNextAsync(int maxReceipts, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxReceipts, 1);
        // Each lost race means another sealer sealed a block, so the chain moved on and retrying cannot go on for ever:
        // at worst the unsealed receipts run out and the answer is null.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await TrySealAsync(maxReceipts, cancellationToken);
            }
            catch (PostgresException exception) when (exception.SqlState == PostgresErrorCodes.UniqueViolation && exception.TableName == "ledger_blocks")
            {
                // Another sealer inserted this height first; this transaction rolled back.
            }
            LogLostRace(logger, attempt);
        }
    }

    /// <summary>Seals one block, or answers null when no receipt waits.</summary>
    private async Task<LedgerBlock?> TrySealAsync(int maxReceipts, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        long tipHeight = 0;
        var tipHash = LedgerHashing.GenesisPrevHash.ToArray();
        var tipSealedAt = DateTimeOffset.MinValue;
        long tipTotal = 0;
        await using (var tip = new NpgsqlCommand("""
            SELECT height, hash, sealed_at, total_receipts FROM ledger_blocks ORDER BY height DESC LIMIT 1
            """, connection, transaction))
        await using (var reader = await tip.ExecuteReaderAsync(cancellationToken))
        {
            if (await reader.ReadAsync(cancellationToken))
            {
                tipHeight = reader.GetInt64(0);
                tipHash = reader.GetFieldValue<byte[]>(1);
                tipSealedAt = reader.GetFieldValue<DateTimeOffset>(2);
                tipTotal = reader.GetInt64(3);
            }
        }

        // Taken out of the queue in seq order; a racing sealer waits on these rows and then skips them (they are gone),
        // and its block's height collides with this one's.
        var taken = new List<(long Seq, byte[] Hash)>(Math.Min(maxReceipts, 1024));
        await using (var take = new NpgsqlCommand("""
            DELETE FROM unsealed_receipts
            WHERE seq IN (SELECT seq FROM unsealed_receipts ORDER BY seq LIMIT @max FOR UPDATE)
            RETURNING seq, hash
            """, connection, transaction))
        {
            take.Parameters.AddWithValue("max", maxReceipts);
            await using var reader = await take.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken)) taken.Add((reader.GetInt64(0), reader.GetFieldValue<byte[]>(1)));
        }
        taken.Sort((x, y) => x.Seq.CompareTo(y.Seq));
        var seqs = taken.ConvertAll(t => t.Seq);
        var tree = new MerkleTree();
        foreach (var (_, leaf) in taken) tree.Add(leaf);
        if (seqs.Count == 0) return null;

        // Milliseconds, as the header hashes it; never before the tip, so timestamps do not go back along the chain
        // when the silos' clocks disagree.
        var now = DateTimeOffset.FromUnixTimeMilliseconds(time.GetUtcNow().ToUnixTimeMilliseconds());
        var sealedAt = now < tipSealedAt ? tipSealedAt : now;
        var height = tipHeight + 1;
        var root = tree.Root();
        var hash = LedgerHashing.BlockHash(height, sealedAt, tipHash, root, seqs.Count);
        var block = new LedgerBlock(height, sealedAt, tipHash, root, hash, seqs.Count, tipTotal + seqs.Count);

        await using (var insert = new NpgsqlCommand("""
            INSERT INTO ledger_blocks (height, sealed_at, prev_hash, merkle_root, hash, receipt_count, total_receipts, seqs)
            VALUES (@height, @sealedAt, @prevHash, @merkleRoot, @hash, @count, @total, @seqs)
            """, connection, transaction))
        {
            insert.Parameters.AddWithValue("height", height);
            insert.Parameters.AddWithValue("sealedAt", sealedAt);
            insert.Parameters.AddWithValue("prevHash", tipHash);
            insert.Parameters.AddWithValue("merkleRoot", root);
            insert.Parameters.AddWithValue("hash", hash);
            insert.Parameters.AddWithValue("count", seqs.Count);
            insert.Parameters.AddWithValue("total", block.TotalReceipts);
            insert.Parameters.AddWithValue("seqs", seqs.ToArray());
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        LogSealed(logger, height, seqs.Count);
        return block;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Sealed block {Height} with {Count} receipts")]
    private static partial void LogSealed(ILogger logger, long height, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Another sealer sealed the same tip first ({Attempt} times now); sealing again from the new tip")]
    private static partial void LogLostRace(ILogger logger, int attempt);
}
