using Coordinator.Grains;
using Coordinator.Grains.Database;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>A fresh, migrated database for a test class of the stub node; each test makes its own invoices.</summary>
public sealed class LightningDatabase : IAsyncLifetime
{
    public string ConnectionString { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        ConnectionString = await TestDatabase.CreateAsync();
        await using var dataSource = GridServiceCollectionExtensions.BuildDataSource(ConnectionString);
        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();
    }

    /// <summary>A data source of its own, as each silo has.</summary>
    public NpgsqlDataSource NewDataSource() => GridServiceCollectionExtensions.BuildDataSource(ConnectionString);

    public Task DisposeAsync() => Task.CompletedTask;
}
