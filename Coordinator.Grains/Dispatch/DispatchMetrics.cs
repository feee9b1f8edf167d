using System.Diagnostics.Metrics;

namespace Coordinator.Grains.Dispatch;

/// <summary>The dispatchers' counters, one set per silo, on the coordinator's meter (<see cref="Telemetry.CoordinatorMetrics.MeterName"/>).</summary>
public sealed class DispatchMetrics
{
    public const string MeterName = Telemetry.CoordinatorMetrics.MeterName;

    public DispatchMetrics(IMeterFactory meters)
    {
#pragma warning disable CA2000 // the factory owns its meters and disposes them with the container
        var meter = meters.Create(MeterName);
#pragma warning restore CA2000
        Dispatched = meter.CreateCounter<long>("coordinator.dispatch.jobs_dispatched", unit: "{job}",
            description: "Jobs claimed for a poll and handed to it.");
        HandOffs = meter.CreateCounter<long>("coordinator.dispatch.hand_offs", unit: "{job}",
            description: "Jobs inserted already claimed for a parked poll (one write instead of an insert and a claim).");
        ClaimsLost = meter.CreateCounter<long>("coordinator.dispatch.claims_lost", unit: "{job}",
            description: "Claims that found the job no longer pending (cancelled, held, or taken by another activation).");
        GivenBack = meter.CreateCounter<long>("coordinator.dispatch.jobs_given_back", unit: "{job}",
            description: "Jobs claimed for a poll that no longer wanted them, returned to pending without counting an attempt.");
        Rescued = meter.CreateCounter<long>("coordinator.dispatch.jobs_rescued", unit: "{job}",
            description: "Dispatchable jobs a dispatcher found in the table without having been told of them (its backstop read).");
    }

    public Counter<long> Dispatched { get; }

    public Counter<long> HandOffs { get; }

    public Counter<long> ClaimsLost { get; }

    public Counter<long> GivenBack { get; }

    public Counter<long> Rescued { get; }
}
