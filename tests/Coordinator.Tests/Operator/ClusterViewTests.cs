using System.Net;
using Coordinator.Api.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

/// <summary>The cluster view on two silos of one cluster; and the operator cookie of one silo on the other.</summary>
public sealed class ClusterViewTests : IAsyncLifetime
{
    private readonly string _key = OperatorKeys.Generate();
    private GridHost _a = null!;
    private GridHost _b = null!;

    public async Task InitializeAsync()
    {
        _a = await GridHost.StartAsync(settings: OperatorHost.Settings(_key));
        _b = await GridHost.StartAsync(_a.ConnectionString, settings: OperatorHost.Settings(_key));
        await Eventually.TrueAsync(() => _a.IsActive && _b.IsActive, "both silos are active");
    }

    public async Task DisposeAsync()
    {
        await _b.DisposeAsync();
        await _a.DisposeAsync();
    }

    [Fact]
    public async Task ShowsBothSilos_TheirActivations_AndTheWorkersOnline()
    {
        var client = await _a.NewAccountAsync();
        var (_, workerId) = await client.NewWorkerAsync("cluster-view", ApiClient.Unique());

        using var http = OperatorHost.Client(_b);
        using var response = await OperatorHost.SendAsync(http, HttpMethod.Get, "cluster", _key);
        var cluster = await ApiClient.ExpectAsync(response, HttpStatusCode.OK);

        var silos = cluster.GetProperty("silos").EnumerateArray().ToList();
        var active = silos.Where(s => s.GetProperty("status").GetString() == "Active").Select(s => s.GetProperty("address").GetString()!).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(new[] { _a.Silo, _b.Silo }.Order(StringComparer.Ordinal), active);
        Assert.All(silos, s => Assert.True(s.GetProperty("started_at").GetDateTime() > DateTime.UtcNow.AddHours(-1)));
        var activations = cluster.GetProperty("activations").GetInt64();
        Assert.True(activations > 0, "grains are active");
        Assert.Equal(activations, cluster.GetProperty("grains").EnumerateArray().Sum(g => g.GetProperty("activations").GetInt64()));

        var workers = cluster.GetProperty("workers");
        Assert.True(workers.GetProperty("count").GetInt64() >= 1);
        Assert.Contains(workers.GetProperty("most_recent").EnumerateArray(), w => w.GetProperty("id").GetInt64() == workerId);
    }

    [Fact]
    public async Task AnOperatorCookieFromSiloA_WorksOnSiloB()
    {
        using var onA = OperatorHost.Client(_a);
        var cookie = await OperatorHost.SignInAsync(onA, _key);
        using var onB = OperatorHost.Client(_b);
        using var response = await OperatorHost.GetWithCookieAsync(onB, "cluster", cookie);
        await ApiClient.ExpectAsync(response, HttpStatusCode.OK);
    }
}
