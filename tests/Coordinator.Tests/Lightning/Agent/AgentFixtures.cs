using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Lightning.Payments;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>
/// A node of the agent API on its own database and clock, with a fixed price source, and in LNbits mode a fake LNbits
/// (stub mode without). The tests of a class share its models, so each test finishes the grid jobs it starts.
/// </summary>
public abstract class AgentFixture(bool lnbits) : IAsyncLifetime
{
    private GridHost? _host;

    public ManualTimeProvider Clock { get; } = new();

    public string EvalModel { get; } = ApiClient.Unique("eval") + ":1b";

    public string WorkModel { get; } = ApiClient.Unique("work") + ":8b";

    public FakePriceOracle Oracle { get; private set; } = null!;

    /// <summary>The LNbits wallet in LNbits mode; null in stub mode.</summary>
    public FakeLnbits? Lnbits { get; private set; }

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    internal AgentApi Api { get; private set; } = null!;

    /// <summary>A worker that serves the eval and the work models.</summary>
    internal ApiClient Worker { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Oracle = await FakePriceOracle.StartAsync();
        if (lnbits) Lnbits = await FakeLnbits.StartAsync();
        _host = await GridHost.StartAsync(time: Clock, settings: AgentSettings.For(EvalModel, WorkModel, Oracle, Lnbits));
        Api = new AgentApi(Host);
        Worker = await AgentWorkers.NewAsync(Host, EvalModel, WorkModel);
    }

    public async Task DisposeAsync()
    {
        Api?.Dispose();
        if (_host is not null) await _host.DisposeAsync();
        if (Lnbits is not null) await Lnbits.DisposeAsync();
        if (Oracle is not null) await Oracle.DisposeAsync();
    }
}

public sealed class StubAgentFixture() : AgentFixture(lnbits: false);

public sealed class LnbitsAgentFixture() : AgentFixture(lnbits: true);
