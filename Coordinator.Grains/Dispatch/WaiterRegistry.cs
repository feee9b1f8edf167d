using Coordinator.Grains.Jobs;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// One parked long-poll. It is signalled at most once, with the key it was woken for, and sometimes with a job
/// inserted already claimed for it (a hand-off); a poll that parks again after a lost race uses a new instance.
/// </summary>
public sealed class ParkedPoll
{
    private readonly TaskCompletionSource<string> _signal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _idle;

    internal ParkedPoll(string[] keys, long workerId = 0, Capabilities? capabilities = null, bool startsOnClaim = false)
    {
        Keys = keys;
        WorkerId = workerId;
        Capabilities = capabilities;
        StartsOnClaim = startsOnClaim;
        Nodes = new LinkedListNode<ParkedPoll>?[keys.Length];
    }

    internal string[] Keys { get; }

    internal LinkedListNode<ParkedPoll>?[] Nodes { get; }

    /// <summary>The polling worker; with <see cref="Capabilities"/>, what a hand-off needs to claim a job for it.</summary>
    internal long WorkerId { get; }

    internal Capabilities? Capabilities { get; }

    /// <summary>A lease consumer's poll: a job handed over to it is inserted running (claimed and started), as a lease is.</summary>
    internal bool StartsOnClaim { get; }

    /// <summary>Taken out of the queues by a submission that may hand it a job; it is signalled once that insert ends.</summary>
    internal bool Reserved => _reservedKey is not null;

    private string? _reservedKey;
    private int _resolved;

    /// <summary>
    /// Past its claim and only waiting. Only such a poll may be handed a job: one still claiming could end up
    /// with two.
    /// </summary>
    internal bool Idle
    {
        get => _idle;
        set => _idle = value;
    }

    /// <summary>A job inserted already claimed by this poll's worker; set before the signal.</summary>
    public ClaimedJob? HandedJob { get; private set; }

    /// <summary>Completes with the wake key when a job that this poll can serve may be waiting.</summary>
    public Task<string> Signalled => _signal.Task;

    internal void Signal(string key) => _signal.TrySetResult(key);

    internal void Reserve(string key) => _reservedKey = key;

    /// <summary>
    /// Ends a reservation, once: with the job claimed for this worker, or with a plain wake (null) if the job went
    /// to the queue, was held, or was not inserted.
    /// </summary>
    internal void Resolve(ClaimedJob? job)
    {
        if (_reservedKey is null || Interlocked.Exchange(ref _resolved, 1) == 1) return;
        HandedJob = job;
        _signal.TrySetResult(_reservedKey);
    }
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

    /// <summary>Parked polls past their claim, only waiting (the ones a hand-off may take); for tests and diagnostics.</summary>
    internal int IdleCount
    {
        get
        {
            lock (_lock) return _queues.Values.SelectMany(queue => queue).Where(poll => poll.Idle).Distinct().Count();
        }
    }

    /// <summary>
    /// Counts wakes that found no parked poll. A poll that lost a race compares it before and after it parks
    /// again: if it moved, a job may have arrived while the poll was not parked, so it must claim once more.
    /// </summary>
    public long UnansweredWakes => Interlocked.Read(ref _unansweredWakes);

    public ParkedPoll Park(string[] keys) => Park(keys, 0, null, false);

    /// <summary>Parks a worker's poll; one with capabilities can be reserved for a hand-off once it is idle.</summary>
    public ParkedPoll Park(string[] keys, long workerId, Capabilities? capabilities, bool startsOnClaim)
    {
        var poll = new ParkedPoll(keys, workerId, capabilities, startsOnClaim);
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
    /// (not signalled) or is reserved for a hand-off (await <see cref="ParkedPoll.Signalled"/> then). A poll that
    /// leaves holding a signal it will not use must pass it on.
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

    /// <summary>
    /// Takes the longest-waiting idle poll parked under one of a new job's keys out of every queue, for a hand-off:
    /// the submission inserts the job already claimed for it, then resolves it. Null when no idle poll with
    /// capabilities is parked here.
    /// </summary>
    public ParkedPoll? Reserve(string[] jobKeys)
    {
        lock (_lock)
        {
            foreach (var key in jobKeys)
            {
                if (!_queues.TryGetValue(key, out var queue)) continue;
                for (var node = queue.First; node is not null; node = node.Next)
                {
                    var poll = node.Value;
                    if (!poll.Idle || poll.Capabilities is null) continue;
                    Remove(poll);
                    poll.Reserve(key);
                    return poll;
                }
            }
        }
        return null;
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
