namespace Coordinator.Grid.Dispatch;

/// <summary>
/// One parked long-poll. It is signalled at most once, with the key it was woken for; a poll that parks
/// again after a lost race uses a new instance.
/// </summary>
public sealed class ParkedPoll
{
    private readonly TaskCompletionSource<string> _signal = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal ParkedPoll(string[] keys)
    {
        Keys = keys;
        Nodes = new LinkedListNode<ParkedPoll>?[keys.Length];
    }

    internal string[] Keys { get; }

    internal LinkedListNode<ParkedPoll>?[] Nodes { get; }

    /// <summary>Completes with the wake key when a job that this poll can serve may be waiting.</summary>
    public Task<string> Signalled => _signal.Task;

    internal void Signal(string key) => _signal.TrySetResult(key);
}

/// <summary>
/// The node's parked long-polls, queued per wake key, oldest first. It holds no database connection:
/// a parked poll costs a few objects. Wakes go to the longest-waiting poll of a key.
/// </summary>
public sealed class WaiterRegistry
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedList<ParkedPoll>> _queues = new(StringComparer.Ordinal);
    private long _unansweredWakes;
    private int _parked;

    /// <summary>Number of polls parked on this node right now.</summary>
    public int ParkedCount => Volatile.Read(ref _parked);

    /// <summary>
    /// Counts wakes that found no parked poll. A poll that lost a race compares it before and after it parks
    /// again: if it moved, a job may have arrived while the poll was not parked, so it must claim once more.
    /// </summary>
    public long UnansweredWakes => Interlocked.Read(ref _unansweredWakes);

    public ParkedPoll Park(string[] keys)
    {
        var poll = new ParkedPoll(keys);
        lock (_lock)
        {
            for (var i = 0; i < keys.Length; i++)
            {
                if (!_queues.TryGetValue(keys[i], out var queue)) _queues[keys[i]] = queue = new LinkedList<ParkedPoll>();
                poll.Nodes[i] = queue.AddLast(poll);
            }
            _parked++;
        }
        return poll;
    }

    /// <summary>
    /// Takes the poll out of every queue. Returns the key it was signalled with, or null if it was still parked
    /// (not signalled). A poll that leaves holding a signal it will not use must pass it on.
    /// </summary>
    public string? Unpark(ParkedPoll poll)
    {
        lock (_lock)
        {
            if (poll.Nodes.Length > 0 && poll.Nodes[0] is not null)
            {
                Remove(poll);
                return null;
            }
        }
        return poll.Signalled.IsCompletedSuccessfully ? poll.Signalled.Result : null;
    }

    /// <summary>Wakes up to <paramref name="count"/> polls parked under <paramref name="key"/>, oldest first.</summary>
    public int Wake(string key, int count = 1)
    {
        var woken = 0;
        lock (_lock)
        {
            if (_queues.TryGetValue(key, out var queue))
            {
                while (woken < count && queue.First is { } first)
                {
                    var poll = first.Value;
                    Remove(poll);
                    // Signalled inside the lock so that Unpark never sees a poll that is neither parked nor signalled.
                    // Continuations run asynchronously, so this is cheap.
                    poll.Signal(key);
                    woken++;
                }
            }
            if (woken < count) _unansweredWakes++;
        }
        return woken;
    }

    /// <summary>Wakes every parked poll, e.g. after the cross-node listener reconnects and may have missed notifications.</summary>
    public int WakeAll()
    {
        var woken = 0;
        lock (_lock)
        {
            foreach (var queue in _queues.Values.ToList())
            {
                while (queue.First is { } first)
                {
                    var poll = first.Value;
                    Remove(poll);
                    poll.Signal(poll.Keys[0]);
                    woken++;
                }
            }
            _unansweredWakes++;
        }
        return woken;
    }

    // Caller holds _lock.
    private void Remove(ParkedPoll poll)
    {
        for (var i = 0; i < poll.Keys.Length; i++)
        {
            var node = poll.Nodes[i];
            if (node is null) continue;
            var queue = node.List!;
            queue.Remove(node);
            if (queue.Count == 0) _queues.Remove(poll.Keys[i]);
            poll.Nodes[i] = null;
        }
        _parked--;
    }
}
