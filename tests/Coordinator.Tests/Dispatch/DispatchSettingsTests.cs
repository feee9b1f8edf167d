using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Dispatch;

/// <summary>Dispatch settings that cannot work together stop the node at start-up, with a message that names them.</summary>
public class DispatchSettingsTests
{
    [Fact]
    public async Task AnOfflineWindowNoLongerThanThePollWindow_StopsStartUp()
    {
        var message = await StartUpFailureAsync(new() { ["Dispatch:LongPollTimeout"] = "00:00:45", ["Dispatch:OfflineAfter"] = "00:00:45" });

        Assert.Contains("Dispatch:OfflineAfter", message);
        Assert.Contains("Dispatch:LongPollTimeout", message);
    }

    [Fact]
    public async Task AClaimLeaseOfZero_StopsStartUp()
    {
        var message = await StartUpFailureAsync(new() { ["Dispatch:ClaimLease"] = "00:00:00" });

        Assert.Contains("Dispatch:ClaimLease", message);
    }

    /// <summary>Every message in the chain of the exception that stopped the node; fails if it started.</summary>
    private static async Task<string> StartUpFailureAsync(Dictionary<string, string?> settings)
    {
        Exception? failure = null;
        try
        {
            await using var host = await GridHost.StartAsync(settings: settings);
        }
        catch (Exception exception)
        {
            failure = exception;
        }
        Assert.NotNull(failure);
        return string.Join('\n', Flatten(failure).Select(e => e.Message));
    }

    private static IEnumerable<Exception> Flatten(Exception exception)
    {
        yield return exception;
        var inner = exception is AggregateException aggregate ? aggregate.InnerExceptions : exception.InnerException is { } one ? [one] : [];
        foreach (var nested in inner.SelectMany(Flatten)) yield return nested;
    }
}
