using Coordinator.Grains.Ledger;
using Coordinator.Tests.Infrastructure;
using Orleans.Runtime;

namespace Coordinator.Tests.Ledger;

/// <summary>Two silos on one database: the ledger grain lives once, kept running by both silos' keepers, and the blocks form one chain.</summary>
public sealed class LedgerClusterTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private static Task<GridHost> StartSiloAsync(string database, ManualTimeProvider clock) =>
        GridHost.StartAsync(database, clock, new Dictionary<string, string?>
        {
            // The keepers run (they follow the duty switch), on the shared fake clock.
            ["Dispatch:RunDuties"] = "true",
            ["Ledger:SealInterval"] = Interval.ToString(),
            ["Ledger:MaxReceiptsPerBlock"] = "4",
        });

    private static Task<LedgerStatus> StatusAsync(GridHost host) => host.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).EnsureRunningAsync();

    [Fact]
    public async Task TwoSilos_SealOneChain_FromOneActivation()
    {
        var database = await TestDatabase.CreateAsync();
        var clock = new ManualTimeProvider();
        await using var a = await StartSiloAsync(database, clock);
        await using var b = await StartSiloAsync(database, clock);
        var status = await SettledStatusAsync(a, b);
        Assert.Contains(status.Silo, new[] { a.Silo, b.Silo });

        // Receipts reported through both silos reach the one grain: 3 + 3 passes the block size of 4.
        await using (var connection = await a.OpenConnectionAsync())
        {
            for (var i = 0; i < 6; i++) await LedgerDatabase.InsertReceiptAsync(connection, null);
        }
        await a.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).ReceiptsIssuedAsync(3);
        await b.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).ReceiptsIssuedAsync(3);
        await Eventually.TrueAsync(async () => (await StatusAsync(a)).BlocksSealed == 2, "the count seals 4 + 2");

        // Unreported ones are sealed by the timer; seals asked of both silos at once go to the same activation.
        await using (var connection = await b.OpenConnectionAsync())
        {
            for (var i = 0; i < 5; i++) await LedgerDatabase.InsertReceiptAsync(connection, null);
        }
        clock.Advance(Interval);
        await Eventually.TrueAsync(async () => (await StatusAsync(b)).BlocksSealed == 4, "the timer seals 4 + 1");
        await using (var connection = await b.OpenConnectionAsync())
        {
            for (var i = 0; i < 3; i++) await LedgerDatabase.InsertReceiptAsync(connection, null);
        }
        var both = await Task.WhenAll(
            a.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).SealNowAsync(),
            b.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).SealNowAsync());
        Assert.Equal(1, both.Sum(blocks => blocks.Count));

        var final = await StatusAsync(a);
        Assert.Equal((status.Silo, 5L, 0L), (final.Silo, final.BlocksSealed, final.FailedSeals));
        var store = a.Get<LedgerStore>();
        var report = await LedgerVerifier.VerifyAsync(store.ChainBlocksAsync(), store.ChainReceiptsAsync(), null);
        Assert.True(report.Valid, report.Problem?.ToString());
        Assert.Equal((5, 14), (report.Blocks, report.Receipts));
    }

    /// <summary>Once both silos see each other, both reach the same activation.</summary>
    private static async Task<LedgerStatus> SettledStatusAsync(params GridHost[] hosts)
    {
        LedgerStatus? settled = null;
        await Eventually.TrueAsync(async () =>
        {
            var active = await Task.WhenAll(hosts.Select(h => h.Grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true)));
            if (!active.All(view => view.Count == hosts.Length)) return false;
            var statuses = await Task.WhenAll(hosts.Select(StatusAsync));
            settled = statuses[0];
            return statuses.All(s => s.Silo == statuses[0].Silo);
        }, "the silos settle on one ledger activation", timeoutMs: 20_000);
        return settled!;
    }
}
