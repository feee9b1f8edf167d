using Orleans.Runtime.Diagnostics;

namespace Coordinator.Grains;

/// <summary>A grain that holds calls open (parked polls) and ends them once Orleans begins to deactivate its activation.</summary>
public interface IEndsCallsOnDeactivation
{
    /// <summary>Orleans began to deactivate this activation. Called on an Orleans thread, under the activation's lock: only signal.</summary>
    void DeactivationBegun();
}

/// <summary>
/// Tells the grains that hold calls open when Orleans begins to deactivate their activation. Orleans runs no new call on a
/// deactivating activation until every call it runs has ended, and calls <c>OnDeactivateAsync</c> only after that, so a
/// deactivation Orleans decides itself (the directory's, when a silo that held the grain's directory entry leaves) would
/// wait for every parked poll, and every submission and result sent to the grain meanwhile with it. The only earlier sign
/// is Orleans' grain lifecycle diagnostic event (<see cref="GrainLifecycleEvents.Deactivating"/>, public but marked as
/// changeable between minor versions; <c>DeactivationSignalTests</c> pins the behaviour relied on).
/// </summary>
public static class DeactivationSignals
{
    // The event source is static: one subscription serves every silo of the process.
    private static readonly Lazy<IDisposable> Subscription = new(() => GrainLifecycleEvents.AllEvents.Subscribe(new Observer()));

    /// <summary>Makes sure the signals are watched (once per process; cheap after the first call).</summary>
    public static void Watch() => _ = Subscription.Value;

    private sealed class Observer : IObserver<GrainLifecycleEvents.LifecycleEvent>
    {
        public void OnNext(GrainLifecycleEvents.LifecycleEvent value)
        {
            if (value is GrainLifecycleEvents.Deactivating && value.GrainContext.GrainInstance is IEndsCallsOnDeactivation grain) grain.DeactivationBegun();
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }
    }
}
