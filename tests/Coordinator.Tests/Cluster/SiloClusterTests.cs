using Coordinator.Tests.Infrastructure;
using Npgsql;
using Orleans.Runtime;

namespace Coordinator.Tests.Cluster;

/// <summary>The silos form one Orleans cluster through the membership tables of migration 0009.</summary>
public sealed class SiloClusterTests
{
    [Fact]
    public async Task SilosOnOneDatabase_JoinOneCluster_AndLeaveIt()
    {
        var database = await TestDatabase.CreateAsync();
        await using var first = await GridHost.StartAsync(database);
        await using (var second = await GridHost.StartAsync(database))
        {
            // Both silos see both, through the provider's statements on our tables.
            foreach (var host in new[] { first, second })
            {
                var hosts = await host.Get<IGrainFactory>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
                Assert.Equal(2, hosts.Count);
            }
            Assert.Equal(2, await CountMembersAsync(database, status: 3));
        }

        // A silo that stops marks itself dead (status 6); the other goes on alone.
        Assert.Equal(1, await CountMembersAsync(database, status: 6));
        var management = first.Get<IGrainFactory>().GetGrain<IManagementGrain>(0);
        var deadline = Environment.TickCount64 + 10_000;
        while ((await management.GetHosts(onlyActive: true)).Count != 1)
        {
            Assert.True(Environment.TickCount64 < deadline, "the remaining silo still counts the stopped one as active");
            await Task.Delay(20);
        }
    }

    private static async Task<long> CountMembersAsync(string database, int status)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM orleans_membership WHERE status = @status", connection);
        command.Parameters.AddWithValue("status", status);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
