using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Duties;

/// <summary>The cluster's one runner of the time-driven duties (<see cref="GridDuties"/>).</summary>
public interface IDutiesGrain : IGrainWithIntegerKey
{
    /// <summary>The one key of the singleton.</summary>
    const long Key = 0;

    /// <summary>Activates the grain if it is not active (its timer then runs the duties); answers what its passes did so far.</summary>
    Task<DutyStatus> EnsureRunningAsync();
}

/// <summary>Where the duties run and how many passes they made there since the activation.</summary>
[GenerateSerializer, Immutable]
public sealed record DutyStatus([property: Id(0)] string Silo, [property: Id(1)] long Passes, [property: Id(2)] long FailedPasses);

/// <summary>
/// Runs a duty pass every <see cref="DispatchOptions.DutyInterval"/> on the grain's timer. Orleans keeps one
/// activation of the key in the cluster, so one silo does the work instead of every node taking turns on an advisory
/// lock; <see cref="GridDuties"/> keeps its transaction-scoped lock only as a guard for the moment of membership churn
/// when a dead silo's activation and its replacement may overlap. The timer reads the grain clock (<c>TimeProvider</c>),
/// so tests move it.
/// </summary>
public sealed partial class DutiesGrain(GridDuties duties, IOptions<DispatchOptions> options, ILogger<DutiesGrain> logger) : Grain, IDutiesGrain
{
    private long _passes;
    private long _failedPasses;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var interval = options.Value.DutyInterval;
        // KeepAlive: the grain is never collected while idle; only its silo's death ends it, and then the next
        // EnsureRunningAsync from any silo activates it elsewhere.
        this.RegisterGrainTimer(RunPassAsync, new GrainTimerCreationOptions(interval, interval) { KeepAlive = true });
        LogActivated(logger, RuntimeIdentity);
        return Task.CompletedTask;
    }

    public Task<DutyStatus> EnsureRunningAsync() => Task.FromResult(new DutyStatus(RuntimeIdentity, _passes, _failedPasses));

    private async Task RunPassAsync(CancellationToken cancellationToken)
    {
        try
        {
            await duties.RunOnceAsync(cancellationToken);
            _passes++;
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            // The next tick tries again; a database that is down shows up here once per interval.
            _failedPasses++;
            LogPassFailed(logger, exception.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Duties run on silo {Silo}")]
    private static partial void LogActivated(ILogger logger, string silo);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Duty pass failed, will try again: {Reason}")]
    private static partial void LogPassFailed(ILogger logger, string reason);
}

/// <summary>
/// On every silo: makes sure the duties grain is active somewhere, once at start and every
/// <see cref="DispatchOptions.DutyInterval"/> after, so that after a silo dies the duties resume on a survivor
/// within an interval of the failure detector declaring it dead. A call that fails (the cluster is changing) is retried
/// on the next tick.
/// </summary>
public sealed partial class DutiesKeeper(
    IGrainFactory grains, IHostApplicationLifetime lifetime, TimeProvider time, IOptions<DispatchOptions> options, ILogger<DutiesKeeper> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.RunDuties) return;
        // Grain calls need the silo to have joined the cluster, which happens during the host's start.
        using (var started = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStarted, stoppingToken))
        {
            await Task.Delay(Timeout.Infinite, started.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        }
        if (stoppingToken.IsCancellationRequested) return;
        var grain = grains.GetGrain<IDutiesGrain>(IDutiesGrain.Key);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await grain.EnsureRunningAsync().WaitAsync(stoppingToken);
                await Task.Delay(options.Value.DutyInterval, time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                LogCallFailed(logger, exception.Message);
                await Task.Delay(options.Value.DutyInterval, time, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not reach the duties grain, will try again: {Reason}")]
    private static partial void LogCallFailed(ILogger logger, string reason);
}
