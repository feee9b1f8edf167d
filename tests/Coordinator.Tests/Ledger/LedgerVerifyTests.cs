using Coordinator.Grains.Ledger;
using Coordinator.Silo.Operator;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Tests.Ledger;

/// <summary>
/// <see cref="LedgerVerifier"/> and <c>ledger verify</c>: a whole chain verifies, and each kind of tampering in the
/// database is detected and named at the first bad block or receipt.
/// </summary>
public sealed class LedgerVerifyTests
{
    /// <summary>Ten receipts in blocks of three: heights 1-4 (3, 3, 3, 1).</summary>
    private static async Task<(LedgerDatabase Ledger, List<string> ReceiptIds)> SealedChainAsync()
    {
        var ledger = await LedgerDatabase.CreateAsync();
        var ids = await ledger.InsertReceiptsAsync(10);
        var blocks = await ledger.SealAllAsync(3);
        Assert.Equal([3, 3, 3, 1], blocks.Select(b => b.ReceiptCount));
        var report = await ledger.VerifyAsync();
        Assert.True(report.Valid, report.Problem?.ToString());
        Assert.Equal((4, 10), (report.Blocks, report.Receipts));
        return (ledger, ids);
    }

    [Fact]
    public async Task ATamperedReceiptBody_IsNamed()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        // Receipt 5 is the second of block 2.
        await ledger.ExecuteAsync($"UPDATE receipts SET body = replace(body, '\"price\":0.02', '\"price\":0.01') WHERE receipt_id = '{ids[4]}'");

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(2, ids[4], "its body does not hash to its stored hash (the body was changed)"), problem);
    }

    [Fact]
    public async Task ATamperedBodyWithItsHashRecomputed_BreaksTheMerkleRoot()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        await ledger.ExecuteAsync($"""
            UPDATE receipts SET body = replace(body, '"units":1', '"units":9') WHERE receipt_id = '{ids[7]}';
            UPDATE receipts SET hash = sha256(convert_to(body, 'UTF8')) WHERE receipt_id = '{ids[7]}';
            """);

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(3, null, "merkle_root is not the Merkle root of its receipts' hashes"), problem);
    }

    [Fact]
    public async Task ARowWhoseColumnsDisagreeWithItsBody_IsNamed()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        await ledger.ExecuteAsync($"UPDATE receipts SET price = 5 WHERE receipt_id = '{ids[0]}'");

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(1, ids[0], "its row's price is 5, its body's 0.02"), problem);
    }

    [Fact]
    public async Task ATamperedMerkleRoot_IsNamed()
    {
        var (ledger, _) = await SealedChainAsync();
        await using var __ = ledger;
        await ledger.ExecuteAsync("UPDATE ledger_blocks SET merkle_root = sha256('forged') WHERE height = 2");

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(2, null, "merkle_root is not the Merkle root of its receipts' hashes"), problem);
    }

    [Fact]
    public async Task ATamperedPrevHash_IsNamed()
    {
        var (ledger, _) = await SealedChainAsync();
        await using var __ = ledger;
        await ledger.ExecuteAsync("UPDATE ledger_blocks SET prev_hash = sha256('forged') WHERE height = 3");

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(3, null, "prev_hash is not the hash of block 2"), problem);
    }

    [Fact]
    public async Task ABlockRewrittenWholeWithItsOwnHash_BreaksTheNextLink()
    {
        var (ledger, _) = await SealedChainAsync();
        await using var __ = ledger;
        // A forger who re-seals block 2 consistently (new timestamp, new hash) still breaks block 3's prev_hash.
        var block = await ledger.Store.ChainBlocksAsync().Where(b => b.Height == 2).SingleAsync();
        var sealedAt = block.SealedAt.AddSeconds(1);
        var hash = LedgerHashing.BlockHash(2, sealedAt, block.PrevHash, block.MerkleRoot, block.ReceiptCount);
        await using (var command = ledger.DataSource.CreateCommand("UPDATE ledger_blocks SET sealed_at = @at, hash = @hash WHERE height = 2"))
        {
            command.Parameters.AddWithValue("at", sealedAt);
            command.Parameters.AddWithValue("hash", hash);
            Assert.Equal(1, await command.ExecuteNonQueryAsync());
        }

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(3, null, "prev_hash is not the hash of block 2"), problem);
    }

    [Fact]
    public async Task ADeletedReceipt_IsNamed()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        var seq = await ledger.ScalarAsync<long>($"SELECT seq FROM receipts WHERE receipt_id = '{ids[6]}'");
        await ledger.ExecuteAsync($"DELETE FROM receipts WHERE receipt_id = '{ids[6]}'");

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(3, null, $"lists receipt seq {seq}, which is not in receipts"), problem);
    }

    [Fact]
    public async Task ADeletedBlock_IsNamed()
    {
        var (ledger, _) = await SealedChainAsync();
        await using var __ = ledger;
        await ledger.ExecuteAsync("DELETE FROM ledger_blocks WHERE height = 2");

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(3, null, "block 2 is missing: the chain goes from 1 to 3"), problem);
    }

    [Fact]
    public async Task AReceiptMovedToAnotherBlock_IsNamed()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        // Receipt 10, the only one of block 4, is listed by block 3 instead (its count check dropped first, as a tamperer would).
        await ledger.ExecuteAsync($"""
            ALTER TABLE ledger_blocks DROP CONSTRAINT ledger_blocks_seqs_count;
            UPDATE ledger_blocks SET seqs = seqs || (SELECT seq FROM receipts WHERE receipt_id = '{ids[9]}') WHERE height = 3;
            UPDATE ledger_blocks SET seqs = ARRAY[]::bigint[] WHERE height = 4;
            """);

        var problem = (await ledger.VerifyAsync()).Problem;
        Assert.Equal(new ChainProblem(3, null, "holds 4 receipts, its header says 3"), problem);
    }

    [Fact]
    public async Task ASignatureThatDoesNotVerify_IsNamed()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        var report = await ledger.VerifyAsync(body => body.Contains(ids[8], StringComparison.Ordinal) ? "bad signature" : null);

        Assert.True(report.SignaturesChecked);
        Assert.Equal(new ChainProblem(3, ids[8], "its signature does not verify: bad signature"), report.Problem);
        // Everything before it was walked.
        Assert.Equal((2, 8), (report.Blocks, report.Receipts));
    }

    [Fact]
    public async Task TheCommand_ExitsZeroWithASummary_ThenNonZeroNamingTheFirstProblem()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        await ledger.InsertReceiptsAsync(2);
        await using var services = new ServiceCollection().AddSingleton(ledger.Store).BuildServiceProvider();

        var good = new StringWriter();
        Assert.Equal(0, await LedgerCommands.RunAsync(services, ["verify"], good));
        Assert.Contains("The ledger verifies: 4 blocks and 10 receipts", good.ToString(), StringComparison.Ordinal);
        Assert.Contains("Checked: every receipt's hash, signature and columns", good.ToString(), StringComparison.Ordinal);
        Assert.Contains("2 receipts are not sealed yet", good.ToString(), StringComparison.Ordinal);

        await ledger.ExecuteAsync($"UPDATE receipts SET body = body || ' ' WHERE receipt_id = '{ids[1]}'");
        var bad = new StringWriter();
        Assert.Equal(1, await LedgerCommands.RunAsync(services, ["verify"], bad));
        Assert.Contains($"The ledger is broken at block 1, receipt {ids[1]}: its body does not hash", bad.ToString(), StringComparison.Ordinal);

        Assert.Equal(2, await LedgerCommands.RunAsync(services, ["frobnicate"], new StringWriter()));
    }

    [Fact]
    public async Task TheCommand_NamesAReceiptThatIsInNoBlockAndNotWaiting()
    {
        var (ledger, _) = await SealedChainAsync();
        await using var __ = ledger;
        var lost = (await ledger.InsertReceiptsAsync(2))[1];
        await using var services = new ServiceCollection().AddSingleton(ledger.Store).BuildServiceProvider();
        await ledger.ExecuteAsync($"DELETE FROM unsealed_receipts WHERE seq = (SELECT seq FROM receipts WHERE receipt_id = '{lost}')");

        var output = new StringWriter();
        Assert.Equal(1, await LedgerCommands.RunAsync(services, ["verify"], output));
        Assert.Contains($"The ledger is broken at receipt {lost}: it is in no block and not waiting to be sealed.", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheCommand_NamesAReceiptListedTwice()
    {
        var (ledger, ids) = await SealedChainAsync();
        await using var _ = ledger;
        await using var services = new ServiceCollection().AddSingleton(ledger.Store).BuildServiceProvider();
        // Receipt 1 sealed in block 1 and queued again: the next block would list it twice.
        await ledger.ExecuteAsync($"INSERT INTO unsealed_receipts (seq, hash) SELECT seq, hash FROM receipts WHERE receipt_id = '{ids[0]}'");

        var output = new StringWriter();
        Assert.Equal(1, await LedgerCommands.RunAsync(services, ["verify"], output));
        Assert.Contains("its blocks list 10 receipts and 1 wait, but there are 10", output.ToString(), StringComparison.Ordinal);
    }
}
