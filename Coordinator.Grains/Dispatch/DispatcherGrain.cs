using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace Coordinator.Grains.Dispatch;

/// <summary>The parked polls of one silo, as the dispatchers reach them (a grain observer, one per silo).</summary>
public interface ISiloPolls : IGrainObserver
{
    /// <summary>Wakes up to <paramref name="count"/> polls parked on this silo under one of <paramref name="keys"/>; answers how many.</summary>
    Task<int> WakeAsync(string[] keys, int count);
}

/// <summary>
/// The dispatcher of one model family (key: the family, or <see cref="WakeKeys.AnyFamily"/>): it knows which silos have
/// polls parked for the family and passes them work that the silo where it arrived could not place.
/// </summary>
public interface IDispatcherGrain : IGrainWithStringKey
{
    /// <summary>Adds or refreshes a silo's parked polls as a destination for this family's work.</summary>
    Task SubscribeAsync(string silo, ISiloPolls polls);

    /// <summary>
    /// <paramref name="count"/> jobs with these wake keys became dispatchable on <paramref name="fromSilo"/>, which had no
    /// parked poll for them: wake that many polls on the other silos, longest-subscribed first.
    /// </summary>
    Task<int> WorkAvailableAsync(string fromSilo, string[] keys, int count);
}

/// <summary>
/// Routes wake-ups between silos for one family, replacing PostgreSQL NOTIFY: a silo subscribes once it has a poll
/// for the family, and a wake goes to the subscribed silos in turn until enough polls are woken. Subscriptions live only
/// in memory: after this grain's silo dies, the silos subscribe again when membership tells them of the death (see
/// <see cref="ClusterWakes"/>). Reentrant, so that one slow silo does not hold up wakes for the others.
/// </summary>
[Reentrant]
public sealed partial class DispatcherGrain(ILogger<DispatcherGrain> logger) : Grain, IDispatcherGrain
{
    /// <summary>How long a silo may take to answer a wake before it counts as gone (it subscribes again later).</summary>
    private static readonly TimeSpan WakeTimeout = TimeSpan.FromSeconds(2);

    private readonly List<(string Silo, ISiloPolls Polls)> _silos = [];
    private int _next;

    public Task SubscribeAsync(string silo, ISiloPolls polls)
    {
        var index = _silos.FindIndex(s => s.Silo == silo);
        if (index >= 0) _silos[index] = (silo, polls);
        else _silos.Add((silo, polls));
        return Task.CompletedTask;
    }

    public async Task<int> WorkAvailableAsync(string fromSilo, string[] keys, int count)
    {
        var woken = 0;
        // Start where the last wake stopped, so that one silo does not take every wake of a family.
        var targets = Enumerable.Range(0, _silos.Count).Select(i => _silos[(_next + i) % _silos.Count]).Where(s => s.Silo != fromSilo).ToList();
        _next = _silos.Count == 0 ? 0 : (_next + 1) % _silos.Count;
        foreach (var (silo, polls) in targets)
        {
            if (woken == count) break;
            try
            {
                woken += await polls.WakeAsync(keys, count - woken).WaitAsync(WakeTimeout);
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                // Its silo is gone or stuck: forget it until it subscribes again.
                _silos.RemoveAll(s => s.Silo == silo);
                LogSiloDropped(logger, silo, this.GetPrimaryKeyString(), exception.Message);
            }
        }
        return woken;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropped silo {Silo} from the dispatcher of {Family}: {Reason}")]
    private static partial void LogSiloDropped(ILogger logger, string silo, string family, string reason);
}
