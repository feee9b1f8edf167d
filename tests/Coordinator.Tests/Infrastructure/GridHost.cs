using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Coordinator.Tests.Infrastructure;

/// <summary>
/// One coordinator node on real Kestrel (a loopback port) against a real PostgreSQL database.
/// Several hosts on one database make a multi-node grid.
/// </summary>
public sealed class GridHost : IAsyncDisposable
{
    private readonly Factory _factory;

    private GridHost(Factory factory, HttpClient http, HttpClient aitbc)
    {
        _factory = factory;
        Http = http;
        Aitbc = aitbc;
    }

    /// <summary>A client of this node's AITBC port, whose base address is <c>http://127.0.0.1:aitbc-port/</c> (the spec's paths are relative to it).</summary>
    public HttpClient Aitbc { get; }

    public string ConnectionString => _factory.ConnectionString;

    /// <summary>A client whose base address is <c>http://127.0.0.1:port/api/v1/</c>.</summary>
    public HttpClient Http { get; }

    public Uri BaseAddress => Http.BaseAddress!;

    public IServiceProvider Services => _factory.Services;

    public T Get<T>() where T : notnull => _factory.Services.GetRequiredService<T>();

    public ApiClient Anonymous() => new(Http, null);

    public IGrainFactory Grains => Get<IGrainFactory>();

    /// <summary>This silo's address in the cluster.</summary>
    public string Silo => Get<Orleans.Runtime.ILocalSiloDetails>().SiloAddress.ToString();

    /// <summary>Whether this silo is an active member of its cluster.</summary>
    public bool IsActive =>
        Get<Orleans.Runtime.IClusterMembershipService>().CurrentSnapshot.GetSiloStatus(Get<Orleans.Runtime.ILocalSiloDetails>().SiloAddress) == Orleans.Runtime.SiloStatus.Active;

    /// <summary>Worker polls this silo's front end holds open now.</summary>
    public int PollsWaiting => Get<Coordinator.Api.Workers.PollsWaiting>().Count;

    /// <summary>What the dispatcher of a model's family holds (a model without a tag is its own family).</summary>
    public Task<Coordinator.Grains.Dispatch.DispatcherStats> DispatcherAsync(string model) =>
        Grains.GetGrain<Coordinator.Grains.Dispatch.IDispatcherGrain>(Coordinator.Grains.ModelNames.FamilyOf(model)).StatsAsync();

    /// <summary>
    /// Waits until <paramref name="count"/> polls are parked on the dispatcher of a model's family: past every check,
    /// only waiting, so that a job submitted now is handed to one of them.
    /// </summary>
    public Task ParkedAsync(string model, int count = 1) =>
        Eventually.TrueAsync(async () => (await DispatcherAsync(model)).ParkedPolls >= count, $"{count} poll(s) park on the dispatcher of {model}");

    /// <summary>An account's quota counts for today, as its grain holds them.</summary>
    public Task<Coordinator.Grains.Accounting.QuotaCounters> QuotaTodayAsync(long accountId) =>
        Grains.GetGrain<Coordinator.Grains.Accounting.IAccountGrain>(accountId).TodayAsync();

    /// <summary>A connection to the test database, for assertions on rows the API does not show.</summary>
    public async Task<Npgsql.NpgsqlConnection> OpenConnectionAsync()
    {
        var connection = new Npgsql.NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public ApiClient WithKey(string key) => new(Http, key);

    /// <summary>The AITBC API with this key (<c>X-Api-Key</c>), on this node's AITBC port.</summary>
    public AitbcClient AitbcWithKey(string? key) => new(Aitbc, key);

    /// <summary>Signs up a fresh account (every test makes its own) and answers a client holding its key.</summary>
    public async Task<ApiClient> NewAccountAsync(string name = "test")
    {
        var (_, key) = await Anonymous().SignUpAsync(name);
        return WithKey(key);
    }

    /// <summary>
    /// Signs up an account on a plan with the given daily limits (null: none). Tests that move many jobs use
    /// <c>NewAccountOnPlanAsync(null, null)</c> so that the free plan's 100 requests a day do not hold them.
    /// </summary>
    public async Task<ApiClient> NewAccountOnPlanAsync(int? dailyRequests, long? dailyTokens) =>
        (await NewAccountOnPlanWithIdAsync(dailyRequests, dailyTokens)).Client;

    /// <summary><see cref="NewAccountOnPlanAsync"/>, with the account's id.</summary>
    public async Task<(long AccountId, ApiClient Client)> NewAccountOnPlanWithIdAsync(int? dailyRequests, long? dailyTokens)
    {
        var (accountId, key) = await Anonymous().SignUpAsync("planned");
        var plan = $"test-{dailyRequests?.ToString() ?? "none"}-{dailyTokens?.ToString() ?? "none"}";
        await using var connection = new Npgsql.NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("""
            INSERT INTO plans (id, name, daily_requests, daily_tokens) VALUES (@plan, @plan, @requests, @tokens) ON CONFLICT (id) DO NOTHING;
            UPDATE accounts SET plan = @plan WHERE id = @accountId;
            """, connection);
        command.Parameters.AddWithValue("plan", plan);
#pragma warning disable CA1508 // a null int? boxes to null: the analyzer takes the box for never null
        command.Parameters.AddWithValue("requests", (object?)dailyRequests ?? DBNull.Value);
        command.Parameters.AddWithValue("tokens", (object?)dailyTokens ?? DBNull.Value);
#pragma warning restore CA1508
        command.Parameters.AddWithValue("accountId", accountId);
        await command.ExecuteNonQueryAsync();
        return (accountId, WithKey(key));
    }

    /// <summary>Starts a node on a fresh database, or on <paramref name="connectionString"/>'s to join its grid.</summary>
    /// <param name="connectionString">The database of the grid to join; null for a fresh one.</param>
    /// <param name="time">The node's clock; null for the system's.</param>
    /// <param name="settings">Configuration settings over the test defaults.</param>
    /// <param name="services">Replaces services after the node's own registrations (a test seam, e.g. a failing signer).</param>
    public static async Task<GridHost> StartAsync(string? connectionString = null, TimeProvider? time = null, IDictionary<string, string?>? settings = null,
        Action<IServiceCollection>? services = null)
    {
        connectionString ??= await TestDatabase.CreateAsync();
        var aitbcPort = settings is not null && settings.TryGetValue("Aitbc:Port", out var configured) && configured is not null
            ? int.Parse(configured, System.Globalization.CultureInfo.InvariantCulture)
            : FreeTcpPort();
        settings = new Dictionary<string, string?>(settings ?? new Dictionary<string, string?>()) { ["Aitbc:Port"] = aitbcPort.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        var factory = new Factory(connectionString, time, settings, services);
        // The main port first (the factory's client uses the first address), then the AITBC API's own.
        // A test that turns the Prometheus endpoint on with an operator port names the port; the node listens on it too.
        var metricsPort = settings.TryGetValue("Telemetry:Prometheus:Port", out var metrics) && metrics is not null
            ? int.Parse(metrics, System.Globalization.CultureInfo.InvariantCulture)
            : 0;
        factory.UseKestrel(kestrel =>
        {
            kestrel.Listen(System.Net.IPAddress.Loopback, 0);
            kestrel.Listen(System.Net.IPAddress.Loopback, aitbcPort);
            if (metricsPort > 0) kestrel.Listen(System.Net.IPAddress.Loopback, metricsPort);
        });
        factory.StartServer();
        var http = factory.CreateClient();
        // The factory's client takes one of the server's addresses: make it the main port's, not the AITBC port's.
        var addresses = factory.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses;
        var main = addresses.Select(a => new Uri(a)).First(a => a.Port != aitbcPort && a.Port != metricsPort);
        http.BaseAddress = new Uri(main, "/api/v1/");
        http.Timeout = TimeSpan.FromSeconds(100);
        var aitbc = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{aitbcPort}/"), Timeout = TimeSpan.FromSeconds(100) };
        return await Task.FromResult(new GridHost(factory, http, aitbc));
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        Aitbc.Dispose();
        await _factory.DisposeAsync();
    }

    internal static int FreeTcpPort() => Coordinator.Tests.Infrastructure.TestPorts.Next();

    private sealed class Factory(string connectionString, TimeProvider? time, IDictionary<string, string?>? settings, Action<IServiceCollection>? replacements)
        : WebApplicationFactory<Program>
    {
        public string ConnectionString { get; } = connectionString;

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            builder.UseSetting("ConnectionStrings:Postgres", ConnectionString);
            // Duties run when a test says so, against the test's clock.
            builder.UseSetting("Dispatch:RunDuties", "false");
            // Each node keeps local-disk blobs in its own temporary folder unless the test shares one.
            // Each host is a silo of its database's cluster, on a port of its own; no gateway (the front end is co-hosted).
            builder.UseSetting("Cluster:SiloPort", FreeTcpPort().ToString(System.Globalization.CultureInfo.InvariantCulture));
            builder.UseSetting("Cluster:GatewayPort", "0");
            // Test settings for the failure detector: a dead silo is declared dead in about 2 s instead of 10-12 s.
            builder.UseSetting("Cluster:ProbeTimeout", "00:00:01");
            builder.UseSetting("Cluster:MissedProbesLimit", "2");
            builder.UseSetting("Cluster:TableRefreshTimeout", "00:00:02");
            // Tests sign up many accounts from one address and move many jobs: rate limits are off unless a test turns them on.
            builder.UseSetting("RateLimits:Enabled", "false");
            builder.UseSetting("Blobs:LocalPath", Path.Combine(Path.GetTempPath(), "coordinator-blobs", Guid.NewGuid().ToString("N")));
            foreach (var (key, value) in settings ?? new Dictionary<string, string?>()) builder.UseSetting(key, value);
            builder.ConfigureServices(services =>
            {
                if (time is not null)
                {
                    services.RemoveAll<TimeProvider>();
                    services.AddSingleton(time);
                    // Grains and their timers follow the test's clock; membership, messaging and the other silo
                    // maintenance loops stay on real time, so that moving the clock does not fake a silo's death.
                    Orleans.TestingHost.TimeProviderTestingExtensions.UseTimeProviderForBackgroundAreas(services, TimeProvider.System);
                }
            });
            if (replacements is not null) builder.ConfigureTestServices(replacements);
        }
    }
}
