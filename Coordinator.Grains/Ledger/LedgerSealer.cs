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
/// Seals unsealed receipts into the next block, in one transaction: read the tip, take up to a block's worth of unsealed
/// receipts in <c>seq</c> order, insert block tip+1 chained to the tip's hash, and mark the receipts sealed. The primary
/// key on <c>height</c> makes two sealers racing on one tip (two activations of the ledger grain during membership churn)
/// fork nothing: the second insert of a height fails, its transaction rolls back, and it starts again from the new tip.
/// Stateless: concurrent calls are safe (and are what the primary key is for).
/// </summary>
public sealed partial class LedgerSealer(NpgsqlDataSource dataSource, TimeProvider time, ILogger<LedgerSealer> logger)
{
    /// <summary>
    /// Seals the oldest unsealed receipts (at most <paramref name="maxReceipts"/>) into a new block and answers it; null
    /// when no receipt is unsealed. Receipts are chosen by <c>block_height IS NULL</c>, never by a <c>seq</c> watermark:
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
                var (lost, block) = await TrySealAsync(maxReceipts, cancellationToken);
                if (!lost) return block;
            }
            catch (PostgresException exception) when (exception.SqlState == PostgresErrorCodes.UniqueViolation && exception.TableName == "ledger_blocks")
            {
                // Another sealer inserted this height first; this transaction rolled back.
            }
            LogLostRace(logger, attempt);
        }
    }

    /// <summary>Seals one block; <c>Lost</c> when another sealer took some of its receipts first (it rolled back).</summary>
    private async Task<(bool Lost, LedgerBlock? Block)> TrySealAsync(int maxReceipts, CancellationToken cancellationToken)
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

        var seqs = new List<long>(Math.Min(maxReceipts, 1024));
        var tree = new MerkleTree();
        await using (var select = new NpgsqlCommand("""
            SELECT seq, hash FROM receipts WHERE block_height IS NULL ORDER BY seq LIMIT @max
            """, connection, transaction))
        {
            select.Parameters.AddWithValue("max", maxReceipts);
            await using var reader = await select.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                seqs.Add(reader.GetInt64(0));
                tree.Add(reader.GetFieldValue<byte[]>(1));
            }
        }
        if (seqs.Count == 0) return (false, null);

        // Milliseconds, as the header hashes it; never before the tip, so timestamps do not go back along the chain
        // when the silos' clocks disagree.
        var now = DateTimeOffset.FromUnixTimeMilliseconds(time.GetUtcNow().ToUnixTimeMilliseconds());
        var sealedAt = now < tipSealedAt ? tipSealedAt : now;
        var height = tipHeight + 1;
        var root = tree.Root();
        var hash = LedgerHashing.BlockHash(height, sealedAt, tipHash, root, seqs.Count);
        var block = new LedgerBlock(height, sealedAt, tipHash, root, hash, seqs.Count, tipTotal + seqs.Count);

        await using (var insert = new NpgsqlCommand("""
            INSERT INTO ledger_blocks (height, sealed_at, prev_hash, merkle_root, hash, receipt_count, total_receipts)
            VALUES (@height, @sealedAt, @prevHash, @merkleRoot, @hash, @count, @total)
            """, connection, transaction))
        {
            insert.Parameters.AddWithValue("height", height);
            insert.Parameters.AddWithValue("sealedAt", sealedAt);
            insert.Parameters.AddWithValue("prevHash", tipHash);
            insert.Parameters.AddWithValue("merkleRoot", root);
            insert.Parameters.AddWithValue("hash", hash);
            insert.Parameters.AddWithValue("count", seqs.Count);
            insert.Parameters.AddWithValue("total", block.TotalReceipts);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var seal = new NpgsqlCommand("""
            UPDATE receipts SET block_height = @height WHERE seq = ANY(@seqs) AND block_height IS NULL
            """, connection, transaction))
        {
            seal.Parameters.AddWithValue("height", height);
            seal.Parameters.AddWithValue("seqs", seqs.ToArray());
            // A racing sealer that took some of these receipts into its block had to insert this height first, so this
            // cannot happen while the primary key holds; if it did, the block would claim receipts it does not have.
            if (await seal.ExecuteNonQueryAsync(cancellationToken) != seqs.Count)
            {
                await transaction.RollbackAsync(cancellationToken);
                return (true, null);
            }
        }
        await transaction.CommitAsync(cancellationToken);
        LogSealed(logger, height, seqs.Count);
        return (false, block);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Sealed block {Height} with {Count} receipts")]
    private static partial void LogSealed(ILogger logger, long height, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Another sealer sealed the same tip first ({Attempt} times now); sealing again from the new tip")]
    private static partial void LogLostRace(ILogger logger, int attempt);
}
