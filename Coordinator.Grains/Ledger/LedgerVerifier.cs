using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Coordinator.Grains.Ledger;

/// <summary>A block as the verifier reads it from <c>ledger_blocks</c>.</summary>
public sealed record ChainBlock(long Height, DateTimeOffset SealedAt, byte[] PrevHash, byte[] MerkleRoot, byte[] Hash, int ReceiptCount, long TotalReceipts);

/// <summary>
/// A receipt a block lists, as the verifier reads it from <c>receipts</c>: its row's columns and its body;
/// <see cref="ReceiptId"/> is null when the block lists a seq that no receipt has.
/// </summary>
public sealed record ChainReceipt(long BlockHeight, long Seq, string? ReceiptId, string Client, string Provider, decimal Price, string Body, byte[] Hash);

/// <summary>The first thing found wrong: the block, the receipt when it is one (else null), and what.</summary>
public sealed record ChainProblem(long Height, string? ReceiptId, string What)
{
    public override string ToString() => ReceiptId is null ? $"block {Height}: {What}" : $"block {Height}, receipt {ReceiptId}: {What}";
}

/// <summary>What a verification walked, and the first problem, or null when the chain is whole.</summary>
public sealed record ChainReport(long Blocks, long Receipts, bool SignaturesChecked, ChainProblem? Problem)
{
    public bool Valid => Problem is null;
}

/// <summary>
/// Walks the ledger in height order and each block's receipts in <c>seq</c> order, as two streams that are merged (so
/// nothing but one block's Merkle frontier is held), and recomputes everything the chain's hashes promise
/// (docs/ARCHITECTURE.md, "Ledger"). For each receipt: its hash from its body, the row's <c>receipt_id</c>,
/// <c>client</c>, <c>provider</c> and <c>price</c> against the body (the explorer shows the columns), and its signature
/// through <c>checkReceipt</c>. For each block: its height follows the last, its receipt count, its Merkle root, its
/// <c>prev_hash</c> is the last block's hash, its timestamp does not go back, its own hash, and its running receipt total.
/// It stops at the first problem and names it.
/// </summary>
public static class LedgerVerifier
{
    /// <summary>
    /// Verifies the chain. <paramref name="blocks"/> must come in height order and <paramref name="receipts"/> (the sealed
    /// ones) in (block height, seq) order. <paramref name="checkReceipt"/> checks a receipt's signature from its body:
    /// null when it is valid, else the reason; with no check, signatures are not verified and the report says so.
    /// </summary>
    public static async Task<ChainReport> VerifyAsync(
        IAsyncEnumerable<ChainBlock> blocks, IAsyncEnumerable<ChainReceipt> receipts, Func<string, string?>? checkReceipt,
        CancellationToken cancellationToken = default)
    {
        long blockCount = 0, receiptCount = 0, expectedHeight = 1, total = 0;
        var prevHash = LedgerHashing.GenesisPrevHash.ToArray();
        var prevSealedAt = DateTimeOffset.MinValue;
        ChainReport Fail(long height, string? receiptId, string what) =>
            new(blockCount, receiptCount, checkReceipt is not null, new ChainProblem(height, receiptId, what));

        await using var receipt = receipts.GetAsyncEnumerator(cancellationToken);
        var more = await receipt.MoveNextAsync();
        await foreach (var block in blocks.WithCancellation(cancellationToken))
        {
            if (block.Height != expectedHeight)
            {
                return Fail(block.Height, null, expectedHeight == block.Height - 1
                    ? $"block {expectedHeight} is missing: the chain goes from {expectedHeight - 1} to {block.Height}"
                    : $"blocks {expectedHeight} to {block.Height - 1} are missing: the chain goes from {expectedHeight - 1} to {block.Height}");
            }
            if (more && receipt.Current.BlockHeight < block.Height)
            {
                return Fail(receipt.Current.BlockHeight, receipt.Current.ReceiptId, $"sealed into block {receipt.Current.BlockHeight}, which is not in the ledger");
            }

            var tree = new MerkleTree();
            while (more && receipt.Current.BlockHeight == block.Height)
            {
                var current = receipt.Current;
                if (current.ReceiptId is null) return Fail(block.Height, null, $"lists receipt seq {current.Seq}, which is not in receipts");
                if (CheckReceipt(current, checkReceipt) is { } problem) return Fail(block.Height, current.ReceiptId, problem);
                tree.Add(current.Hash);
                receiptCount++;
                more = await receipt.MoveNextAsync();
            }

            if (tree.Count != block.ReceiptCount)
            {
                return Fail(block.Height, null, $"holds {tree.Count} receipts, its header says {block.ReceiptCount}");
            }
            if (!tree.Root().AsSpan().SequenceEqual(block.MerkleRoot))
            {
                return Fail(block.Height, null, "merkle_root is not the Merkle root of its receipts' hashes");
            }
            if (!block.PrevHash.AsSpan().SequenceEqual(prevHash))
            {
                return Fail(block.Height, null, block.Height == 1
                    ? "prev_hash of the first block is not 32 zero bytes"
                    : $"prev_hash is not the hash of block {block.Height - 1}");
            }
            if (block.SealedAt < prevSealedAt)
            {
                return Fail(block.Height, null, $"sealed_at {block.SealedAt:O} is before block {block.Height - 1}'s {prevSealedAt:O}");
            }
            var hash = LedgerHashing.BlockHash(block.Height, block.SealedAt, block.PrevHash, block.MerkleRoot, block.ReceiptCount);
            if (!hash.AsSpan().SequenceEqual(block.Hash))
            {
                return Fail(block.Height, null, "hash is not the hash of its header (height, sealed_at, prev_hash, merkle_root, receipt_count)");
            }
            total += block.ReceiptCount;
            if (block.TotalReceipts != total)
            {
                return Fail(block.Height, null, $"total_receipts is {block.TotalReceipts}, the chain's running count is {total}");
            }
            prevHash = block.Hash;
            prevSealedAt = block.SealedAt;
            expectedHeight++;
            blockCount++;
        }
        if (more)
        {
            return Fail(receipt.Current.BlockHeight, receipt.Current.ReceiptId,
                $"sealed into block {receipt.Current.BlockHeight}, which is not in the ledger (its last block is {expectedHeight - 1})");
        }
        return new ChainReport(blockCount, receiptCount, checkReceipt is not null, null);
    }

    /// <summary>What is wrong with one receipt, or null.</summary>
    private static string? CheckReceipt(ChainReceipt receipt, Func<string, string?>? checkReceipt)
    {
        var length = Encoding.UTF8.GetMaxByteCount(receipt.Body.Length);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var utf8 = buffer.AsSpan(0, Encoding.UTF8.GetBytes(receipt.Body, buffer));
            Span<byte> hash = stackalloc byte[LedgerHashing.HashLength];
            SHA256.HashData(utf8, hash);
            if (!hash.SequenceEqual(receipt.Hash)) return "its body does not hash to its stored hash (the body was changed)";
            if (CheckColumns(receipt, utf8) is { } mismatch) return mismatch;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return checkReceipt?.Invoke(receipt.Body) is { } reason ? $"its signature does not verify: {reason}" : null;
    }

    /// <summary>Whether the row's columns say what its body says.</summary>
    private static string? CheckColumns(ChainReceipt receipt, ReadOnlySpan<byte> utf8)
    {
        string? receiptId = null, client = null, provider = null;
        decimal? price = null;
        var reader = new Utf8JsonReader(utf8);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return "its body is not a JSON object";
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var field = reader.ValueTextEquals("receipt_id"u8) ? 1 : reader.ValueTextEquals("client"u8) ? 2
                    : reader.ValueTextEquals("provider"u8) ? 3 : reader.ValueTextEquals("price"u8) ? 4 : 0;
                reader.Read();
                if (field == 1 && reader.TokenType == JsonTokenType.String) receiptId = reader.GetString();
                else if (field == 2 && reader.TokenType == JsonTokenType.String) client = reader.GetString();
                else if (field == 3 && reader.TokenType == JsonTokenType.String) provider = reader.GetString();
                else if (field == 4 && reader.TokenType == JsonTokenType.Number && reader.TryGetDecimal(out var value)) price = value;
                else reader.Skip();
            }
        }
        catch (JsonException exception)
        {
            return $"its body is not valid JSON ({exception.Message})";
        }
        if (receiptId != receipt.ReceiptId) return $"its row's receipt_id is {receipt.ReceiptId}, its body's {receiptId ?? "missing"}";
        if (client != receipt.Client) return $"its row's client is {receipt.Client}, its body's {client ?? "missing"}";
        if (provider != receipt.Provider) return $"its row's provider is {receipt.Provider}, its body's {provider ?? "missing"}";
        if (price != receipt.Price)
        {
            return string.Create(CultureInfo.InvariantCulture, $"its row's price is {receipt.Price}, its body's {(price is { } body ? body.ToString(CultureInfo.InvariantCulture) : "missing")}");
        }
        return null;
    }
}
