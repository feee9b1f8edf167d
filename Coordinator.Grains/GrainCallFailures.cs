using Orleans.Runtime;

namespace Coordinator.Grains;

/// <summary>How a grain call fails when the silo of its target died or is leaving.</summary>
public static class GrainCallFailures
{
    /// <summary>
    /// The target's silo died or is leaving (or its answer was lost on the way): the call can be made again, to the next
    /// activation, and what the target did for it may not have reached the caller.
    /// </summary>
    /// <remarks><see cref="SiloUnavailableException"/> is one kind of <see cref="OrleansMessageRejectionException"/>.</remarks>
    public static bool IsTransient(Exception exception) =>
        exception is OrleansMessageRejectionException or TimeoutException or ClientNotAvailableException;
}
