namespace Coordinator.Tests.Infrastructure;

/// <summary>A node on its own fresh database, shared by the tests of one class (they run one after another).</summary>
public sealed class HostFixture : IAsyncLifetime
{
    private GridHost? _host;

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync() => _host = await GridHost.StartAsync();

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
    }
}
