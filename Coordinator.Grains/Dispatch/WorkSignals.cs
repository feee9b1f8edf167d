using System.Threading.Channels;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Tells parked polls that work may be waiting: on this silo directly, and on the other silos through
/// <see cref="ClusterWakes"/> and the family dispatchers.
/// </summary>
public sealed class WorkSignals(WaiterRegistry registry)
{
    private readonly Channel<string[]> _outgoing = Channel.CreateUnbounded<string[]>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>
    /// Wakes one parked poll here that can serve a job with these wake keys; only when none is parked here are the
    /// other silos told. Waking a poll on every silo for each job would have all but one of them claim nothing.
    /// A poll woken here that does not use its wake passes it on through this method again, so a wake reaches
    /// another silo whenever no poll here can take it.
    /// </summary>
    public void WorkAvailable(string[] jobKeys)
    {
        if (!WakeOneLocally(jobKeys)) _outgoing.Writer.TryWrite(jobKeys);
    }

    /// <summary>Wakes one parked poll on this silo for a job with these keys; true if one was woken.</summary>
    public bool WakeOneLocally(string[] jobKeys)
    {
        foreach (var key in jobKeys)
        {
            if (registry.Wake(key) > 0) return true;
        }
        return false;
    }

    /// <summary>An idle poll parked here that can serve a job with these keys, taken for a hand-off; see <see cref="WaiterRegistry.Reserve"/>.</summary>
    public ParkedPoll? ReserveIdlePoll(string[] jobKeys) => registry.Reserve(jobKeys);

    internal ChannelReader<string[]> Outgoing => _outgoing.Reader;
}
