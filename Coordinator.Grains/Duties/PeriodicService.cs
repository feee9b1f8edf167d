using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Coordinator.Grains.Duties;

/// <summary>
/// A loop that every node runs: wait <see cref="Interval"/> on the injected clock, do one pass, and when a pass fails
/// log why and try again next time. The passes themselves make sure that nodes never do the same work twice.
/// </summary>
public abstract partial class PeriodicService(TimeProvider time, ILogger logger) : BackgroundService
{
    /// <summary>Whether this node runs the loop at all (tests switch loops off and run passes by hand).</summary>
    protected abstract bool Enabled { get; }

    protected abstract TimeSpan Interval { get; }

    /// <summary>What the loop does, for the log ("Duty", "Webhook", …).</summary>
    protected abstract string Name { get; }

    protected abstract Task RunPassAsync(CancellationToken stoppingToken);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Enabled) return;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Interval, time, stoppingToken);
                await RunPassAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                LogPassFailed(logger, Name, exception.Message);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Name} pass failed, will try again: {Reason}")]
    private static partial void LogPassFailed(ILogger logger, string name, string reason);
}
