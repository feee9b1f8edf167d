using System.ComponentModel.DataAnnotations;

namespace Coordinator.Silo;

/// <summary>How a silo stops on SIGTERM (or Ctrl-C), bound from the <c>Shutdown</c> configuration section.</summary>
public sealed class ShutdownOptions
{
    public const string Section = "Shutdown";

    /// <summary>
    /// The whole graceful stop's budget (the host's <c>HostOptions.ShutdownTimeout</c>): the drain delay, then in-flight
    /// requests finishing (Kestrel stops accepting and waits for them), then the silo leaving the cluster (grains
    /// deactivated, its membership row marked dead). What is still running then is abandoned. Default: 30 s (the host's
    /// own default). Keep the supervisor's kill deadline above it: <c>terminationGracePeriodSeconds</c> 45 in
    /// deploy/kubernetes/silo.yaml (with its 5 s preStop), <c>TimeoutStopSec=45s</c> in deploy/coordinator.service.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long the silo goes on accepting connections after stopping began, answering its readiness probe
    /// (<c>/api/v1/health</c>) 503 <c>stopping</c> and every worker poll 204 at once, so that a load balancer that
    /// probes sees it leave before its port closes. Default: 0, for Kubernetes, whose <c>preStop</c> sleep does this
    /// before SIGTERM; behind a load balancer that only probes, set it to the probe interval times its failure threshold.
    /// Part of <see cref="Timeout"/>.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan DrainDelay { get; set; } = TimeSpan.Zero;
}

/// <summary>
/// The first step of a graceful stop. The host raises <c>ApplicationStopping</c> (the front end answers parked polls
/// 204 and reports not ready, the grains let their polls go), then calls every lifecycle service's
/// <see cref="StoppingAsync"/> before any hosted service stops: this one holds the stop there for
/// <see cref="ShutdownOptions.DrainDelay"/>, while Kestrel still listens. Then Kestrel, registered after the silo and
/// so stopped before it, lets in-flight requests finish, and the silo leaves the cluster last.
/// </summary>
internal sealed partial class StopDrain(
    Microsoft.Extensions.Options.IOptions<ShutdownOptions> options, Coordinator.Grains.Dispatch.DispatchInFlight dispatch, ILogger<StopDrain> logger)
    : IHostedLifecycleService
{
    /// <summary>The longest the stop waits for this silo's claims and polls in flight (a poll ends within 2 s of its grain letting go).</summary>
    internal static readonly TimeSpan DispatchBound = TimeSpan.FromSeconds(5);

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        // Claims in flight and polls of this silo's grains answer first, while the silo still sends: Orleans' stop
        // abandons calls still running in its activations, and a job claimed for one would reach no worker until the
        // claim lease ran out. No new claim starts here once stopping began.
        using (var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            bound.CancelAfter(DispatchBound);
            try
            {
                await dispatch.WhenIdleAsync(bound.Token);
            }
            catch (OperationCanceledException)
            {
                LogDispatchNotIdle(logger, dispatch.Count, DispatchBound.TotalSeconds);
            }
        }
        var delay = options.Value.DrainDelay;
        if (delay <= TimeSpan.Zero) return;
        LogDraining(logger, delay.TotalSeconds);
        try
        {
            await Task.Delay(delay, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The shutdown timeout passed: stop now.
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stopping: {Count} dispatch calls still in flight after {Seconds} s; the silo leaves without them (their claims go back after the claim lease).")]
    private static partial void LogDispatchNotIdle(ILogger logger, int count, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping: not ready, still accepting connections for {Seconds} s so that load balancers stop routing here.")]
    private static partial void LogDraining(ILogger logger, double seconds);
}

public static class GracefulStop
{
    /// <summary>The <c>Shutdown</c> settings: the host's shutdown timeout and the drain delay (<see cref="ShutdownOptions"/>).</summary>
    public static WebApplicationBuilder UseGracefulStop(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ShutdownOptions>().Bind(builder.Configuration.GetSection(ShutdownOptions.Section))
            .ValidateDataAnnotations()
            .Validate(o => o.DrainDelay < o.Timeout, "Shutdown:DrainDelay must be shorter than Shutdown:Timeout, which includes it.")
            .ValidateOnStart();
        var timeout = (builder.Configuration.GetSection(ShutdownOptions.Section).Get<ShutdownOptions>() ?? new ShutdownOptions()).Timeout;
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = timeout);
        builder.Services.AddHostedService<StopDrain>();
        return builder;
    }
}
