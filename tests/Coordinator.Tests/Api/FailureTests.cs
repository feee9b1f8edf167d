using System.Net;
using Coordinator.Grains.Database;
using Coordinator.Tests.Infrastructure;
using Npgsql;

namespace Coordinator.Tests.Api;

public class FailureTests
{
    [Fact]
    public async Task WhilePostgresIsDown_RequestsFailFastWith503_AndTheNodeRecoversWithoutARestart()
    {
        var direct = new NpgsqlConnectionStringBuilder(await TestDatabase.CreateAsync());
        var addresses = await Dns.GetHostAddressesAsync(direct.Host!);
        await using var proxy = new TcpProxy(new IPEndPoint(addresses.First(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork), direct.Port));
        proxy.Start();
        var viaProxy = new NpgsqlConnectionStringBuilder(direct.ConnectionString) { Host = "127.0.0.1", Port = proxy.Port, Timeout = 2 };
        await using var host = await GridHost.StartAsync(viaProxy.ConnectionString);
        var client = await host.NewAccountAsync();
        await Eventually.TrueAsync(() => host.IsActive, "the silo is active");

        proxy.Cut();
        var started = DateTime.UtcNow;
        var health = await host.Http.GetAsync("health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        var healthBody = await ApiClient.ExpectAsync(health, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("unreachable", healthBody.GetProperty("database").GetString());

        var submit = await client.PostAsync("jobs", new { prompt = "p" });
        var body = await ApiClient.ExpectAsync(submit, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("service_unavailable", body.GetProperty("error").GetString());
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10), "503s come fast, not after a hang");

        proxy.Start();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while ((await host.Http.GetAsync("health")).StatusCode != HttpStatusCode.OK)
        {
            Assert.True(DateTime.UtcNow < deadline, "the node did not recover after PostgreSQL came back");
            await Task.Delay(50);
        }
        Assert.True(host.IsActive, "the silo stayed in the cluster through the outage");
        await client.SubmitAsync(new { prompt = "after the outage" });
    }

    [Fact]
    public async Task TwoNodesMigratingTogether_ApplyEachMigrationOnce()
    {
        var connectionString = await TestDatabase.CreateAsync();
        await using var first = NpgsqlDataSource.Create(connectionString);
        await using var second = NpgsqlDataSource.Create(connectionString);
        var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger<Migrator>.Instance;
        await Task.WhenAll(new Migrator(first, logger).MigrateAsync(), new Migrator(second, logger).MigrateAsync());

        await using var command = first.CreateCommand("SELECT count(*), count(DISTINCT version) FROM schema_migrations");
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        Assert.Equal(Migrator.LoadMigrations().Count, reader.GetInt64(0));
        Assert.Equal(reader.GetInt64(0), reader.GetInt64(1));
    }
}
