namespace Coordinator.Tests.Infrastructure;

/// <summary>Waits for a condition the system under test will reach by itself (not for time to pass): checks often, fails after a generous bound.</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, $"timed out waiting until {what}");
            await Task.Delay(5);
        }
    }

    public static async Task TrueAsync(Func<Task<bool>> condition, string what, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!await condition())
        {
            Assert.True(Environment.TickCount64 < deadline, $"timed out waiting until {what}");
            await Task.Delay(5);
        }
    }
}

/// <summary>A node on its own database whose clock only moves when the test advances it.</summary>
public sealed class ClockHostFixture : IAsyncLifetime
{
    private GridHost? _host;

    public ManualTimeProvider Clock { get; } = new();

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync() => _host = await GridHost.StartAsync(time: Clock);

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
    }
}
