using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>One node in stub mode on its own database and clock, with a <see cref="FakeAgentWorker"/> serving its agent.</summary>
public sealed class AgentHostFixture : IAsyncLifetime
{
    private GridHost? _host;
    private FakeAgentWorker? _worker;

    // Whole seconds, so that times read back from PostgreSQL (microseconds) compare equal to the clock's.
    public ManualTimeProvider Clock { get; } = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public FakeAgentWorker Worker => _worker ?? throw new InvalidOperationException("not started");

    public HttpClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var (evalModel, workModel) = (ApiClient.Unique("eval"), ApiClient.Unique("work"));
        _host = await GridHost.StartAsync(time: Clock, settings: AgentApi.Settings(evalModel, workModel));
        _worker = await FakeAgentWorker.StartAsync(_host, evalModel, workModel);
        Client = AgentApi.Client(_host);
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        if (_worker is not null) await _worker.DisposeAsync();
        if (_host is not null) await _host.DisposeAsync();
    }
}
