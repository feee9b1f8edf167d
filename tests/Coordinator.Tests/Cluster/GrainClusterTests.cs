using Coordinator.Grains.Duties;
using Orleans.Runtime;
using Orleans.TestingHost;

namespace Coordinator.Tests.Cluster;

/// <summary>Grain behaviour on a TestingHost cluster of three silos clustered on PostgreSQL.</summary>
public sealed class GrainClusterTests(GrainClusterFixture fixture) : IClassFixture<GrainClusterFixture>
{
    [Fact]
    public async Task TheSilos_ShareOneMembershipTable()
    {
        var hosts = await fixture.Cluster.Client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        Assert.Equal(fixture.Cluster.GetActiveSilos().Count(), hosts.Count);
        Assert.True(hosts.Count >= 2);
    }

    [Fact]
    public async Task TheDutiesSingleton_IsOneActivation_AndMovesWhenItsSiloIsKilled()
    {
        var duties = fixture.Cluster.Client.GetGrain<IDutiesGrain>(IDutiesGrain.Key);
        var first = (await duties.EnsureRunningAsync()).Silo;
        // Every caller reaches the same activation.
        for (var i = 0; i < 20; i++) Assert.Equal(first, (await duties.EnsureRunningAsync()).Silo);

        var owner = fixture.Cluster.GetActiveSilos().Single(silo => silo.SiloAddress.ToString() == first);
        await fixture.Cluster.KillSiloAsync(owner);

        var moved = (await duties.EnsureRunningAsync()).Silo;
        Assert.NotEqual(first, moved);
        Assert.Contains(moved, fixture.Cluster.GetActiveSilos().Select(silo => silo.SiloAddress.ToString()));
    }
}
