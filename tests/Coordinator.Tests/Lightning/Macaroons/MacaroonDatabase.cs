using Coordinator.Grains;
using Coordinator.Grains.Database;
using Coordinator.Grains.Lightning.Macaroons;
using Coordinator.Grains.Webhooks;
using Coordinator.Tests.Infrastructure;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Coordinator.Tests.Lightning.Macaroons;

/// <summary>
/// A fresh, migrated database and what a silo's <see cref="SessionMacaroons"/> stands on, without a silo: each
/// <see cref="NewSilo"/> has its own Data Protection provider over the grid's key ring in PostgreSQL and its own key cache,
/// as two silos have.
/// </summary>
internal sealed class MacaroonDatabase : IAsyncDisposable
{
    private readonly List<ServiceProvider> _providers = [];

    private MacaroonDatabase(NpgsqlDataSource dataSource) => DataSource = dataSource;

    public NpgsqlDataSource DataSource { get; }

    public static async Task<MacaroonDatabase> CreateAsync()
    {
        var dataSource = GridServiceCollectionExtensions.BuildDataSource(await TestDatabase.CreateAsync());
        await new Migrator(dataSource, NullLogger<Migrator>.Instance).MigrateAsync();
        return new MacaroonDatabase(dataSource);
    }

    /// <summary>A silo's Data Protection, configured as <c>AddGrid</c> configures it.</summary>
    public IDataProtectionProvider NewProtection()
    {
        var services = new ServiceCollection();
        services.AddDataProtection().SetApplicationName("Coordinator");
        services.AddOptions<KeyManagementOptions>().Configure(keys => keys.XmlRepository = new PostgresXmlRepository(DataSource));
        var provider = services.BuildServiceProvider();
        _providers.Add(provider);
        return provider.GetRequiredService<IDataProtectionProvider>();
    }

    public (SessionMacaroons Macaroons, MacaroonRootKeys Keys) NewSilo(TimeProvider time, IDataProtectionProvider? protection = null)
    {
        var keys = new MacaroonRootKeys(DataSource, protection ?? NewProtection(), time);
        return (new SessionMacaroons(keys, time), keys);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var provider in _providers) await provider.DisposeAsync();
        await DataSource.DisposeAsync();
    }
}
