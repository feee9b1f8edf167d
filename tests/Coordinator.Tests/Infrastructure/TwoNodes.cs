namespace Coordinator.Tests.Infrastructure;

/// <summary>Two silos of one cluster on one database, each with its own front end.</summary>
public static class TwoNodes
{
    /// <summary>Starts node A, then node B joining A's cluster, and waits until both are active.</summary>
    public static async Task<(GridHost A, GridHost B)> StartAsync()
    {
        var a = await GridHost.StartAsync();
        var b = await GridHost.StartAsync(a.ConnectionString);
        await Eventually.TrueAsync(() => a.IsActive && b.IsActive, "both silos are active");
        return (a, b);
    }
}
