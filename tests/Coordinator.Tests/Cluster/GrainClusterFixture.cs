using Coordinator.Grains;
using Coordinator.Grains.Database;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Orleans.TestingHost;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// A TestingHost cluster of three in-process silos whose membership is the real PostgreSQL table (migration 0009),
/// not the test cluster's in-memory one, with the engine's services in every silo: for grain tests without HTTP.
/// </summary>
public sealed class GrainClusterFixture : IAsyncLifetime
{
    private const string ConnectionKey = "ConnectionStrings:Postgres";

    public TestCluster Cluster { get; private set; } = null!;

    public string ConnectionString { get; private set; } = "";

    public async Task InitializeAsync()
    {
        ConnectionString = await Infrastructure.TestDatabase.CreateAsync();
        await using (var dataSource = GridServiceCollectionExtensions.BuildDataSource(ConnectionString))
        {
            await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();
        }

        var builder = new TestClusterBuilder(3);
        builder.Options.UseTestClusterMembership = false;
        builder.Properties[ConnectionKey] = ConnectionString;
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        builder.AddClientBuilderConfigurator<ClientConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
    }

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder silo)
        {
            var connectionString = silo.Configuration[ConnectionKey]!;
            silo.UseAdoNetClustering(clustering =>
            {
                clustering.Invariant = "Npgsql";
                clustering.ConnectionString = connectionString;
            });
            silo.Configure<Orleans.Configuration.ClusterMembershipOptions>(membership =>
            {
                membership.ProbeTimeout = TimeSpan.FromSeconds(1);
                membership.NumMissedProbesLimit = 2;
                membership.TableRefreshTimeout = TimeSpan.FromSeconds(2);
            });
            var settings = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                // Duties are started by the tests, not by every silo's keeper.
                ["Dispatch:RunDuties"] = "false",
            }).Build();
            silo.Services.AddGrid(settings, connectionString);
            // Webhook bodies are rendered the way the front end renders a job.
            silo.Services.AddSingleton<Coordinator.Grains.Webhooks.IJobRenderer, Coordinator.Api.Webhooks.JobJsonRenderer>();
        }
    }

    private sealed class ClientConfigurator : IClientBuilderConfigurator
    {
        public void Configure(IConfiguration configuration, IClientBuilder client) =>
            client.UseAdoNetClustering(clustering =>
            {
                clustering.Invariant = "Npgsql";
                clustering.ConnectionString = configuration[ConnectionKey];
            });
    }
}
