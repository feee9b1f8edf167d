using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// Two silos of one cluster in stub mode, with a <see cref="FakeAgentWorker"/> serving their agent. Both trust the
/// loopback address as a proxy (<c>Network:TrustedProxies</c>), so that demo tests give each of their clients an address
/// of its own in <c>X-Forwarded-For</c>.
/// </summary>
public sealed class TwoAgentNodesFixture : IAsyncLifetime
{
    private FakeAgentWorker? _worker;

    public GridHost A { get; private set; } = null!;

    public GridHost B { get; private set; } = null!;

    public HttpClient ClientA { get; private set; } = null!;

    public HttpClient ClientB { get; private set; } = null!;

    public FakeAgentWorker Worker => _worker ?? throw new InvalidOperationException("not started");

    /// <summary>Node A's client for even <paramref name="i"/>, node B's for odd.</summary>
    public HttpClient Either(int i) => i % 2 == 0 ? ClientA : ClientB;

    public async Task InitializeAsync()
    {
        var settings = AgentApi.Settings(ApiClient.Unique("eval"), ApiClient.Unique("work"));
        settings["Network:TrustedProxies"] = "127.0.0.1";
        A = await GridHost.StartAsync(settings: settings);
        B = await GridHost.StartAsync(A.ConnectionString, settings: settings);
        await Eventually.TrueAsync(() => A.IsActive && B.IsActive, "both silos are active");
        _worker = await FakeAgentWorker.StartAsync(A, settings["Lightning:Agent:EvalModel"]!, settings["Lightning:Agent:WorkModel"]!, slots: 8);
        ClientA = AgentApi.Client(A);
        ClientB = AgentApi.Client(B);
    }

    public async Task DisposeAsync()
    {
        ClientA?.Dispose();
        ClientB?.Dispose();
        if (_worker is not null) await _worker.DisposeAsync();
        if (B is not null) await B.DisposeAsync();
        if (A is not null) await A.DisposeAsync();
    }
}
