using System.Diagnostics.Metrics;
using Coordinator.Grains.Telemetry;

namespace Coordinator.Api.Workers;

/// <summary>The worker polls this silo's front end holds open now: health's <c>parked_polls</c>, and a meter.</summary>
public sealed class PollsWaiting
{
    private int _count;

    public PollsWaiting(IMeterFactory meters)
    {
#pragma warning disable CA2000 // the factory owns its meters and disposes them with the container
        meters.Create(CoordinatorMetrics.MeterName).CreateObservableUpDownCounter("coordinator.dispatch.polls_waiting", () => Count, unit: "{poll}",
            description: "Worker polls waiting on this silo's front end for a job.");
#pragma warning restore CA2000
    }

    public int Count => Volatile.Read(ref _count);

    public void Enter() => Interlocked.Increment(ref _count);

    public void Leave() => Interlocked.Decrement(ref _count);
}
