using Coordinator.Grains.Ledger;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Ledger;

/// <summary>
/// Sealing: by count and by interval in the ledger grain (on a fake clock), one linear chain under concurrent sealers,
/// and a receipt that commits after a higher-seq one was sealed still sealed.
/// </summary>
public sealed class LedgerSealingTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private static Task<GridHost> StartAsync(ManualTimeProvider clock) =>
        GridHost.StartAsync(time: clock, settings: new Dictionary<string, string?>
        {
            ["Ledger:MaxReceiptsPerBlock"] = "5",
            ["Ledger:SealInterval"] = Interval.ToString(),
        });

    private static async Task<List<(long Height, int Count)>> BlocksAsync(GridHost host)
    {
        await using var connection = await host.OpenConnectionAsync();
        await using var command = new Npgsql.NpgsqlCommand("SELECT height, receipt_count FROM ledger_blocks ORDER BY height", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var blocks = new List<(long, int)>();
        while (await reader.ReadAsync()) blocks.Add((reader.GetInt64(0), reader.GetInt32(1)));
        return blocks;
    }

    private static async Task InsertReceiptsAsync(GridHost host, int count)
    {
        await using var connection = await host.OpenConnectionAsync();
        for (var i = 0; i < count; i++) await LedgerDatabase.InsertReceiptAsync(connection, null);
    }

    [Fact]
    public async Task ABlockIsSealed_AsSoonAsMaxReceiptsAreReported_WithoutTheClockMoving()
    {
        var clock = new ManualTimeProvider();
        await using var host = await StartAsync(clock);
        var ledger = host.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key);
        await ledger.EnsureRunningAsync();

        await InsertReceiptsAsync(host, 4);
        await ledger.ReceiptsIssuedAsync(4);
        Assert.Equal(0, (await ledger.EnsureRunningAsync()).BlocksSealed);
        Assert.Empty(await BlocksAsync(host));

        // The fifth reaches the block size: the grain seals at once, everything unsealed (5 and then the 2 beyond).
        await InsertReceiptsAsync(host, 3);
        await ledger.ReceiptsIssuedAsync(3);
        await Eventually.TrueAsync(async () => (await BlocksAsync(host)).Count == 2, "two blocks are sealed");
        Assert.Equal([(1L, 5), (2L, 2)], await BlocksAsync(host));
        var report = await LedgerVerifier.VerifyAsync(host.Get<LedgerStore>().ChainBlocksAsync(), host.Get<LedgerStore>().ChainReceiptsAsync(), null);
        Assert.True(report.Valid, report.Problem?.ToString());
        Assert.Equal(7, report.Receipts);
    }

    [Fact]
    public async Task UnreportedReceipts_AreSealedWhenTheIntervalPasses()
    {
        var clock = new ManualTimeProvider();
        await using var host = await StartAsync(clock);
        var ledger = host.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key);
        await ledger.EnsureRunningAsync();

        // Nobody reports these (their issuer's silo died, say): the timer still seals them.
        await InsertReceiptsAsync(host, 3);
        clock.Advance(Interval - TimeSpan.FromSeconds(1));
        Assert.Equal(0, (await ledger.EnsureRunningAsync()).BlocksSealed);
        clock.Advance(TimeSpan.FromSeconds(1));
        await Eventually.TrueAsync(async () => (await BlocksAsync(host)).Count == 1, "the timer seals a block");
        Assert.Equal([(1L, 3)], await BlocksAsync(host));

        await InsertReceiptsAsync(host, 2);
        clock.Advance(Interval);
        await Eventually.TrueAsync(async () => (await BlocksAsync(host)).Count == 2, "the next tick seals the next block");
        Assert.Equal([(1L, 3), (2L, 2)], await BlocksAsync(host));
    }

    [Fact]
    public async Task ConcurrentSealers_MakeOneLinearChain()
    {
        await using var ledger = await LedgerDatabase.CreateAsync();
        var ids = await ledger.InsertReceiptsAsync(400);

        // Four sealers at once, as two activations overlapping in membership churn would be (and more): each races the
        // others for every tip.
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => ledger.SealAllAsync(20))));

        var blocks = results.SelectMany(b => b).OrderBy(b => b.Height).ToList();
        Assert.Equal(Enumerable.Range(1, 20).Select(h => (long)h), blocks.Select(b => b.Height));
        Assert.All(blocks, b => Assert.Equal(20, b.ReceiptCount));
        for (var i = 1; i < blocks.Count; i++) Assert.Equal(blocks[i - 1].Hash, blocks[i].PrevHash);
        var report = await ledger.VerifyAsync();
        Assert.True(report.Valid, report.Problem?.ToString());
        Assert.Equal((20, ids.Count), (report.Blocks, report.Receipts));
        Assert.Equal(0L, await ledger.ScalarAsync<long>("SELECT count(*) FROM unsealed_receipts"));
        // Every receipt is listed by exactly one block.
        Assert.Equal((long)ids.Count, await ledger.ScalarAsync<long>("SELECT count(DISTINCT s) FROM ledger_blocks, unnest(seqs) AS s"));
    }

    [Fact]
    public async Task AReceiptCommittedAfterAHigherSeqWasSealed_GoesIntoTheNextBlock()
    {
        await using var ledger = await LedgerDatabase.CreateAsync();
        // One committed first, so that the signing key row the helper adds is committed too.
        await ledger.InsertReceiptsAsync(1);
        await using var slow = await ledger.DataSource.OpenConnectionAsync();
        await using var transaction = await slow.BeginTransactionAsync();
        var early = await LedgerDatabase.InsertReceiptAsync(slow, transaction);
        var late = (await ledger.InsertReceiptsAsync(1))[0];

        var first = await ledger.Sealer.SealNextAsync(10);
        Assert.Equal(2, first!.ReceiptCount);
        await transaction.CommitAsync();
        var second = await ledger.Sealer.SealNextAsync(10);
        Assert.Equal((2L, 1), (second!.Height, second.ReceiptCount));
        Assert.Null(await ledger.Sealer.SealNextAsync(10));

        // The early one has the lower seq, but committed after the late one was sealed.
        Assert.True(await ledger.ScalarAsync<bool>($"""
            SELECT e.seq < l.seq AND e.seq = ANY (b2.seqs) AND l.seq = ANY (b1.seqs)
            FROM receipts e, receipts l, ledger_blocks b1, ledger_blocks b2
            WHERE e.receipt_id = '{early}' AND l.receipt_id = '{late}' AND b1.height = 1 AND b2.height = 2
            """));
        var report = await ledger.VerifyAsync();
        Assert.True(report.Valid, report.Problem?.ToString());
    }
}
