using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Grains.Ledger;

/// <summary>
/// The ledger's hashes, all SHA-256 (docs/ARCHITECTURE.md, "Ledger"):
/// <list type="bullet">
/// <item>a receipt's hash is SHA-256 of its body's UTF-8 bytes;</item>
/// <item>a block's Merkle root is RFC 6962's Merkle Tree Hash over its receipts' hashes in <c>seq</c> order: a leaf is
/// SHA-256(0x00 ‖ receipt hash), a node SHA-256(0x01 ‖ left ‖ right), and a level with an odd node out promotes it
/// unchanged to the level above (it is never paired with itself, so no two lists of receipts share a root);</item>
/// <item>a block's hash is SHA-256 of its 84-byte header: height (int64), sealed_at as Unix milliseconds (int64),
/// prev_hash (32 bytes), merkle_root (32 bytes), receipt_count (int32), integers big-endian.</item>
/// </list>
/// </summary>
public static class LedgerHashing
{
    /// <summary>The length of every hash here.</summary>
    public const int HashLength = 32;

    /// <summary>The length of a block's header.</summary>
    public const int HeaderLength = 8 + 8 + HashLength + HashLength + 4;

    private const byte LeafPrefix = 0x00;
    private const byte NodePrefix = 0x01;

    /// <summary>The <c>prev_hash</c> of the first block: 32 zero bytes.</summary>
    public static ReadOnlySpan<byte> GenesisPrevHash => new byte[HashLength];

    /// <summary>SHA-256 of a receipt body's UTF-8 bytes: the receipt's hash, and its leaf's input.</summary>
    public static byte[] ReceiptHash(string body)
    {
        var byteCount = Encoding.UTF8.GetByteCount(body);
        var buffer = byteCount <= 4096 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(body, buffer);
        return SHA256.HashData(buffer);
    }

    /// <summary>A Merkle leaf: SHA-256(0x00 ‖ receipt hash).</summary>
    public static void Leaf(ReadOnlySpan<byte> receiptHash, Span<byte> destination)
    {
        if (receiptHash.Length != HashLength) throw new ArgumentException($"A receipt hash is {HashLength} bytes, not {receiptHash.Length}.", nameof(receiptHash));
        Span<byte> input = stackalloc byte[1 + HashLength];
        input[0] = LeafPrefix;
        receiptHash.CopyTo(input[1..]);
        SHA256.HashData(input, destination);
    }

    /// <summary>A Merkle node: SHA-256(0x01 ‖ left ‖ right).</summary>
    public static void Node(ReadOnlySpan<byte> left, ReadOnlySpan<byte> right, Span<byte> destination)
    {
        Span<byte> input = stackalloc byte[1 + 2 * HashLength];
        input[0] = NodePrefix;
        left.CopyTo(input[1..]);
        right.CopyTo(input[(1 + HashLength)..]);
        SHA256.HashData(input, destination);
    }

    /// <summary>The Merkle root over receipt hashes, in order (at least one).</summary>
    public static byte[] MerkleRoot(IEnumerable<byte[]> receiptHashes)
    {
        var tree = new MerkleTree();
        foreach (var hash in receiptHashes) tree.Add(hash);
        return tree.Root();
    }

    /// <summary>A block's header bytes, in the layout the class summary gives.</summary>
    public static byte[] Header(long height, DateTimeOffset sealedAt, ReadOnlySpan<byte> prevHash, ReadOnlySpan<byte> merkleRoot, int receiptCount)
    {
        if (prevHash.Length != HashLength || merkleRoot.Length != HashLength) throw new ArgumentException($"prev_hash and merkle_root are {HashLength} bytes each.");
        var header = new byte[HeaderLength];
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(0, 8), height);
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(8, 8), sealedAt.ToUnixTimeMilliseconds());
        prevHash.CopyTo(header.AsSpan(16, HashLength));
        merkleRoot.CopyTo(header.AsSpan(16 + HashLength, HashLength));
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(16 + 2 * HashLength, 4), receiptCount);
        return header;
    }

    /// <summary>A block's hash: SHA-256 of its header.</summary>
    public static byte[] BlockHash(long height, DateTimeOffset sealedAt, ReadOnlySpan<byte> prevHash, ReadOnlySpan<byte> merkleRoot, int receiptCount) =>
        SHA256.HashData(Header(height, sealedAt, prevHash, merkleRoot, receiptCount));
}

/// <summary>
/// Builds a Merkle root (<see cref="LedgerHashing"/>) one receipt hash at a time, holding one subtree root per level
/// (log₂ n hashes), so that a verifier streams a block's receipts instead of holding them.
/// </summary>
public sealed class MerkleTree
{
    // The roots of the complete subtrees built so far, largest first; Levels[i] is the height of Roots[i].
    private readonly List<byte[]> _roots = [];
    private readonly List<int> _levels = [];

    /// <summary>How many receipt hashes were added.</summary>
    public int Count { get; private set; }

    public void Add(ReadOnlySpan<byte> receiptHash)
    {
        var node = new byte[LedgerHashing.HashLength];
        LedgerHashing.Leaf(receiptHash, node);
        var level = 0;
        // Two complete subtrees of one height make one of the next: the pairs RFC 6962 makes, left to right.
        while (_levels.Count > 0 && _levels[^1] == level)
        {
            LedgerHashing.Node(_roots[^1], node, node);
            _roots.RemoveAt(_roots.Count - 1);
            _levels.RemoveAt(_levels.Count - 1);
            level++;
        }
        _roots.Add(node);
        _levels.Add(level);
        Count++;
    }

    /// <summary>
    /// The root: the incomplete right edge folds from the right, so a subtree left over on a level rises unchanged until
    /// it meets its left neighbour (the odd node out is promoted, never duplicated).
    /// </summary>
    public byte[] Root()
    {
        if (Count == 0) throw new InvalidOperationException("A Merkle root needs at least one receipt: the ledger seals no empty blocks.");
        var root = (byte[])_roots[^1].Clone();
        for (var i = _roots.Count - 2; i >= 0; i--) LedgerHashing.Node(_roots[i], root, root);
        return root;
    }
}
