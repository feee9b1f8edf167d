using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;
using Orleans.Runtime;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// The duties run once in the cluster, in the singleton <see cref="DutiesGrain"/>, on its timer and the shared fake
/// clock; when its silo goes the duties go on elsewhere.
/// </summary>
public sealed class DutiesGrainTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    private static Task<GridHost> StartSiloAsync(string database, ManualTimeProvider clock) =>
        GridHost.StartAsync(database, clock, new Dictionary<string, string?>
        {
            ["Dispatch:RunDuties"] = "true",
            ["Dispatch:DutyInterval"] = Interval.ToString(),
        });

    private static string SiloOf(GridHost host) => host.Get<ILocalSiloDetails>().SiloAddress.ToString();

    private static Task<DutyStatus> StatusAsync(GridHost host) =>
        host.Get<IGrainFactory>().GetGrain<IDutiesGrain>(IDutiesGrain.Key).EnsureRunningAsync();

    [Fact]
    public async Task ThreeSilos_RunEachPassOnce_OnOneSilo()
    {
        var database = await TestDatabase.CreateAsync();
        var clock = new ManualTimeProvider();
        await using var a = await StartSiloAsync(database, clock);
        await using var b = await StartSiloAsync(database, clock);
        await using var c = await StartSiloAsync(database, clock);

        // While silos join, the grain directory moves between them and a second activation may exist for a moment (the
        // duties' advisory lock covers that); once membership has settled every silo reaches the same one.
        var status = await SettledStatusAsync(a, b, c);
        Assert.Contains(status.Silo, new[] { SiloOf(a), SiloOf(b), SiloOf(c) });

        // A job whose timeout passes is cancelled by the grain's timer, with no pass run by hand.
        var client = await a.NewAccountAsync();
        var (_, id, _) = await client.SubmitAndClaimAsync(new { timeout_seconds = 1 }, start: true);
        for (var tick = 1; tick <= 4; tick++)
        {
            clock.Advance(Interval);
            await WaitForPassesAsync(a, status.Passes + tick);
        }
        Assert.Equal("cancelled", (await client.GetJobAsync(id)).GetProperty("status").GetString());

        // Four intervals, four passes in the cluster: one silo did them, not one per silo.
        var after = await StatusAsync(c);
        Assert.Equal(status.Silo, after.Silo);
        Assert.Equal(status.Passes + 4, after.Passes);
    }

    [Fact]
    public async Task WhenTheDutiesSiloStops_TheDutiesResumeOnAnother()
    {
        var database = await TestDatabase.CreateAsync();
        var clock = new ManualTimeProvider();
        var hosts = new List<GridHost> { await StartSiloAsync(database, clock), await StartSiloAsync(database, clock) };
        try
        {
            var first = (await StatusAsync(hosts[0])).Silo;
            var owner = hosts.Single(h => SiloOf(h) == first);
            hosts.Remove(owner);
            await owner.DisposeAsync();

            var survivor = hosts[0];
            var client = await survivor.NewAccountAsync();
            var (_, id, _) = await client.SubmitAndClaimAsync(new { timeout_seconds = 1 }, start: true);
            var moved = await StatusAsync(survivor);
            Assert.Equal(SiloOf(survivor), moved.Silo);
            clock.Advance(Interval);
            await WaitForPassesAsync(survivor, moved.Passes + 1);
            Assert.Equal("cancelled", (await client.GetJobAsync(id)).GetProperty("status").GetString());
        }
        finally
        {
            foreach (var host in hosts) await host.DisposeAsync();
        }
    }

    private static async Task<DutyStatus> SettledStatusAsync(params GridHost[] hosts)
    {
        var deadline = Environment.TickCount64 + 20_000;
        while (true)
        {
            var active = await Task.WhenAll(hosts.Select(h => h.Get<IGrainFactory>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true)));
            if (active.All(view => view.Count == hosts.Length))
            {
                var statuses = await Task.WhenAll(hosts.Select(StatusAsync));
                if (statuses.All(s => s.Silo == statuses[0].Silo)) return statuses[0];
            }
            Assert.True(Environment.TickCount64 < deadline, "the silos did not settle on one duties activation");
            await Task.Delay(20);
        }
    }

    private static async Task WaitForPassesAsync(GridHost host, long passes)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while ((await StatusAsync(host)).Passes < passes)
        {
            Assert.True(Environment.TickCount64 < deadline, $"the duties grain did not make pass {passes}");
            await Task.Delay(5);
        }
    }
}
