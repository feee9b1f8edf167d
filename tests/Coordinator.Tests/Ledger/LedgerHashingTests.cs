using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Coordinator.Grains.Ledger;

namespace Coordinator.Tests.Ledger;

/// <summary>
/// The ledger's hashes against an independent implementation: Python's hashlib with RFC 6962's recursive Merkle Tree
/// Hash (split at the largest power of two below n) and <c>struct.pack</c> for the header, run from the test.
/// </summary>
public sealed class LedgerHashingTests
{
    private const string Vectors = """
        import hashlib, struct
        H = lambda b: hashlib.sha256(b).digest()
        def mth(hashes):
            if len(hashes) == 1:
                return H(b'\x00' + hashes[0])
            k = 1
            while k * 2 < len(hashes):
                k *= 2
            return H(b'\x01' + mth(hashes[:k]) + mth(hashes[k:]))
        bodies = ['{"receipt_id":"r-%d","client":"re\u00e7u \u20ac %d"}' % (i, i) for i in range(17)]
        hashes = [H(b.encode('utf-8')) for b in bodies]
        for n in range(1, 18):
            print('root', n, mth(hashes[:n]).hex())
        prev = bytes(range(32))
        root = mth(hashes[:5])
        print('block', H(struct.pack('>qq32s32si', 7, 1700000000123, prev, root, 5)).hex())
        print('receipt', hashes[3].hex())
        """;

    private static List<string> Bodies() =>
        Enumerable.Range(0, 17).Select(i => $"{{\"receipt_id\":\"r-{i}\",\"client\":\"reçu € {i}\"}}").ToList();

    [Fact]
    public async Task MerkleRootsAndBlockHash_MatchAnIndependentRfc6962Implementation()
    {
        var expected = await RunPythonAsync(Vectors);
        var hashes = Bodies().Select(LedgerHashing.ReceiptHash).ToList();
        Assert.Equal(expected["receipt"], Convert.ToHexStringLower(hashes[3]));
        for (var n = 1; n <= 17; n++)
        {
            Assert.Equal(expected[$"root {n}"], Convert.ToHexStringLower(LedgerHashing.MerkleRoot(hashes.Take(n))));
        }
        var prev = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        var blockHash = LedgerHashing.BlockHash(7, DateTimeOffset.FromUnixTimeMilliseconds(1700000000123), prev, LedgerHashing.MerkleRoot(hashes.Take(5)), 5);
        Assert.Equal(expected["block"], Convert.ToHexStringLower(blockHash));
    }

    [Fact]
    public void OddLeafIsPromoted_NotDuplicated()
    {
        var hashes = Bodies().Take(3).Select(LedgerHashing.ReceiptHash).ToList();
        // Bitcoin's duplicate-last rule gives [a, b, c] and [a, b, c, c] one root; promotion does not.
        var withDuplicate = hashes.Append(hashes[2]);
        Assert.NotEqual(LedgerHashing.MerkleRoot(hashes), LedgerHashing.MerkleRoot(withDuplicate));
        // A leaf and a node are hashed apart: a one-receipt tree's root is not a two-receipt tree's child.
        Assert.Equal(SHA256.HashData([0x00, .. hashes[0]]), LedgerHashing.MerkleRoot(hashes.Take(1)));
    }

    [Fact]
    public void ChangingAnyHeaderField_ChangesTheBlockHash()
    {
        var prev = new byte[32];
        var root = SHA256.HashData("root"u8);
        var at = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        var hash = LedgerHashing.BlockHash(1, at, prev, root, 3);
        Assert.NotEqual(hash, LedgerHashing.BlockHash(2, at, prev, root, 3));
        Assert.NotEqual(hash, LedgerHashing.BlockHash(1, at.AddMilliseconds(1), prev, root, 3));
        Assert.NotEqual(hash, LedgerHashing.BlockHash(1, at, root, root, 3));
        Assert.NotEqual(hash, LedgerHashing.BlockHash(1, at, prev, prev, 3));
        Assert.NotEqual(hash, LedgerHashing.BlockHash(1, at, prev, root, 4));
        Assert.Equal(LedgerHashing.HeaderLength, LedgerHashing.Header(1, at, prev, root, 3).Length);
    }

    private static async Task<Dictionary<string, string>> RunPythonAsync(string script)
    {
        var start = new ProcessStartInfo("python3", ["-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = Encoding.UTF8 };
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"python3 failed: {error}");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .ToDictionary(line => line[..line.LastIndexOf(' ')], line => line[(line.LastIndexOf(' ') + 1)..]);
    }
}
