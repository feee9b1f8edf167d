using Coordinator.Grains.Jobs;

namespace Coordinator.Grains.Dispatch;

/// <summary>Which dispatch index a <see cref="JobSet"/> mirrors.</summary>
internal enum SetKind
{
    /// <summary>Exact and family jobs of one model (<c>jobs_dispatch_model</c>): what a worker declaring that model may take.</summary>
    Model,
    /// <summary>Family jobs of the family (<c>jobs_dispatch_family</c>): what a worker declaring the family may take.</summary>
    Family,
    /// <summary>Catch-all jobs (<c>jobs_dispatch_any</c>).</summary>
    Any,
}

/// <summary>How much of its slice of the table a <see cref="JobSet"/> holds.</summary>
internal enum SetState
{
    /// <summary>Never read: the table alone knows what is dispatchable here.</summary>
    Unloaded,
    /// <summary>Holds exactly the dispatchable jobs that rank at or before <see cref="JobSet.Bound"/>; later ones are in the table only.</summary>
    Partial,
    /// <summary>Holds every dispatchable job of its slice.</summary>
    Complete,
}

/// <summary>
/// The dispatchable jobs along one dispatch index, in fetch order, or a bounded head of them: a million pending jobs of
/// one model cost one head in memory, and the rest is read from the index when the head runs low.
/// </summary>
internal sealed class JobSet(SetKind kind, string? name)
{
    public SetKind Kind { get; } = kind;

    /// <summary>The model (<see cref="SetKind.Model"/>) or family (<see cref="SetKind.Family"/>); null for catch-all.</summary>
    public string? Name { get; } = name;

    public SortedSet<QueuedJob> Entries { get; } = new(QueuedJob.Rank);

    public SetState State { get; set; }

    /// <summary>In <see cref="SetState.Partial"/>: the rank up to which <see cref="Entries"/> is exact.</summary>
    public QueuedJob? Bound { get; set; }

    /// <summary>The read in flight, if any; changes made meanwhile are recorded in <see cref="Changes"/> and replayed after it.</summary>
    public Task? Loading { get; set; }

    public List<(QueuedJob? Added, long Removed)>? Changes { get; set; }

    /// <summary>Whether a dispatchable job of this rank belongs in <see cref="Entries"/> (rather than only in the table).</summary>
    public bool Covers(QueuedJob job) => State switch
    {
        SetState.Complete => true,
        SetState.Partial => QueuedJob.Rank.Compare(job, Bound!) <= 0,
        _ => false,
    };

    /// <summary>Must be read before a poll can be matched against it: never read, or its head is used up.</summary>
    public bool NeedsLoad => State == SetState.Unloaded || (State == SetState.Partial && Entries.Count == 0);
}

/// <summary>What a poll is doing at a dispatcher.</summary>
internal enum PollState
{
    /// <summary>Being matched, or a job is being claimed for it.</summary>
    Serving,
    /// <summary>Waiting for work in the parked queues.</summary>
    Parked,
    /// <summary>Answered (a job, nothing, or cancelled).</summary>
    Done,
}

/// <summary>One worker's poll at one dispatcher.</summary>
internal sealed class Poll(PollTicket ticket, string[] keys, JobSet[] sets, bool mayPark)
{
    public PollTicket Ticket { get; } = ticket;

    /// <summary>The parked queues it waits in here: <c>m:&lt;model&gt;</c>, <c>f:&lt;family&gt;</c>, <c>any</c>.</summary>
    public string[] Keys { get; } = keys;

    /// <summary>The sets it may take from here.</summary>
    public JobSet[] Sets { get; } = sets;

    /// <summary>False for a poll that only takes what is there now (a worker comparing several families first).</summary>
    public bool MayPark { get; } = mayPark;

    public PollState State { get; set; }

    /// <summary>Its worker no longer wants an answer: a job claimed for it goes back.</summary>
    public bool Cancelled { get; set; }

    public long Sequence { get; set; }

    public LinkedListNode<Poll>?[] Nodes { get; } = new LinkedListNode<Poll>?[keys.Length];

    public TaskCompletionSource<ClaimedJob?> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool Answer(ClaimedJob? job)
    {
        State = PollState.Done;
        return Result.TrySetResult(job);
    }
}

/// <summary>
/// A dispatcher's memory: the dispatchable jobs of one family (or of catch-all work) in fetch order, and the polls
/// parked on it, oldest first. Single-threaded: the grain calls it between awaits only. It does no I/O; the grain reads
/// sets from the table and claims.
/// </summary>
/// <remarks>
/// Its invariant is that no parked poll could take a job held here: a job that arrives goes to the oldest parked poll
/// that can take it, and a poll parks only when every set it reads is complete and empty. So matching happens only when
/// a job or a poll arrives, never by scanning.
/// </remarks>
internal sealed class DispatchQueue(string key, int headSize)
{
    private readonly Dictionary<string, JobSet> _models = new(StringComparer.Ordinal);
    private readonly Dictionary<long, QueuedJob> _known = [];
    private readonly HashSet<long> _claiming = [];
    private readonly HashSet<JobSet> _loading = [];
    private readonly Dictionary<string, LinkedList<Poll>> _parked = new(StringComparer.Ordinal);
    private JobSet? _family;
    private JobSet? _any;
    private long _sequence;

    public string Key { get; } = key;

    public int HeadSize { get; } = headSize;

    public int ParkedCount { get; private set; }

    /// <summary>Jobs held in memory.</summary>
    public int KnownCount => _known.Count;

    private const string AnyKey = "any";

    private static string ModelKey(string model) => "m:" + model;

    private static string FamilyKey(string family) => "f:" + family;

    /// <summary>The parked queues and the sets a poll with these capabilities uses here.</summary>
    public (string[] Keys, JobSet[] Sets) Resolve(Capabilities capabilities)
    {
        if (Key == DispatchKeys.Any)
        {
            return capabilities.CatchAll ? ([AnyKey], [_any ??= new JobSet(SetKind.Any, null)]) : ([], []);
        }
        var keys = new List<string>();
        var sets = new List<JobSet>();
        foreach (var model in capabilities.Models.Distinct(StringComparer.Ordinal))
        {
            if (ModelNames.FamilyOf(model) != Key) continue;
            keys.Add(ModelKey(model));
            sets.Add(ModelSet(model));
        }
        if (capabilities.Families.Contains(Key, StringComparer.Ordinal))
        {
            keys.Add(FamilyKey(Key));
            sets.Add(_family ??= new JobSet(SetKind.Family, Key));
        }
        return ([.. keys], [.. sets]);
    }

    /// <summary>The parked queues whose polls can take a job (the spec's matching rule).</summary>
    public static string[] KeysOf(string modelMatch, string? model, string? family) => modelMatch switch
    {
        ModelMatch.Exact => [ModelKey(model!)],
        ModelMatch.Family => [ModelKey(model!), FamilyKey(family!)],
        _ => [AnyKey],
    };

    private JobSet ModelSet(string model)
    {
        if (!_models.TryGetValue(model, out var set)) _models[model] = set = new JobSet(SetKind.Model, model);
        return set;
    }

    // The sets a job belongs to that exist here; a job is in its model's set and, for a family job, the family's.
    private IEnumerable<JobSet> SetsOf(QueuedJob job)
    {
        if (job.ModelMatch == ModelMatch.Any)
        {
            if (_any is not null) yield return _any;
            yield break;
        }
        if (job.Model is not null && _models.TryGetValue(job.Model, out var model)) yield return model;
        if (job.ModelMatch == ModelMatch.Family && _family is not null) yield return _family;
    }

    private IEnumerable<JobSet> AllSets()
    {
        foreach (var set in _models.Values) yield return set;
        if (_family is not null) yield return _family;
        if (_any is not null) yield return _any;
    }

    /// <summary>
    /// A job became dispatchable (or changed rank): it goes into each set that covers its rank. A job being claimed is
    /// left out; the claim's outcome decides about it.
    /// </summary>
    public void Add(QueuedJob job)
    {
        if (_claiming.Contains(job.Id)) return;
        if (_known.TryGetValue(job.Id, out var old) && old != job) Remove(job.Id);
        foreach (var set in SetsOf(job))
        {
            set.Changes?.Add((job, 0));
            Insert(set, job);
        }
    }

    private void Insert(JobSet set, QueuedJob job)
    {
        if (!set.Covers(job) || _claiming.Contains(job.Id)) return;
        if (_known.TryGetValue(job.Id, out var known)) job = known; // one instance per job, so that both sets remove the same
        set.Entries.Add(job);
        _known[job.Id] = job;
        Trim(set);
    }

    // A head past its size gives up its last entries to the table: it becomes exact up to its new last entry.
    private void Trim(JobSet set)
    {
        while (set.Entries.Count > HeadSize)
        {
            var last = set.Entries.Max!;
            set.Entries.Remove(last);
            if (!SetsOf(last).Any(other => other.Entries.Contains(last))) _known.Remove(last.Id);
            set.State = SetState.Partial;
            set.Bound = set.Entries.Max;
        }
    }

    /// <summary>A job is no longer dispatchable (cancelled, held, taken); true if it was held here.</summary>
    public bool Remove(long id)
    {
        foreach (var set in _loading) set.Changes!.Add((null, id));
        if (!_known.Remove(id, out var job)) return false;
        foreach (var set in SetsOf(job)) set.Entries.Remove(job);
        return true;
    }

    /// <summary>Removes every job of an account (it is held now); answers how many were here.</summary>
    public int RemoveAccount(long accountId)
    {
        var ids = _known.Values.Where(job => job.AccountId == accountId).Select(job => job.Id).ToList();
        foreach (var id in ids) Remove(id);
        return ids.Count;
    }

    /// <summary>Takes a job out for a claim; until <see cref="Settled"/> it is not added again.</summary>
    public void Take(QueuedJob job)
    {
        Remove(job.Id);
        _claiming.Add(job.Id);
    }

    /// <summary>The claim of a taken job ended (won, lost, or failed: then the caller adds it again).</summary>
    public void Settled(long id) => _claiming.Remove(id);

    /// <summary>Whether a claim of this job is in flight.</summary>
    public bool IsClaiming(long id) => _claiming.Contains(id);

    /// <summary>The best job among these sets, or null.</summary>
    public static QueuedJob? Best(JobSet[] sets)
    {
        QueuedJob? best = null;
        foreach (var set in sets)
        {
            var first = set.Entries.Min;
            if (first is not null && (best is null || QueuedJob.Rank.Compare(first, best) < 0)) best = first;
        }
        return best;
    }

    /// <summary>A set among these that must be read before a poll is matched against them.</summary>
    public static JobSet? FirstToLoad(JobSet[] sets) => sets.FirstOrDefault(set => set.NeedsLoad);

    /// <summary>Whether a set's head is low enough to read ahead.</summary>
    public bool RunningLow(JobSet set) => set.State == SetState.Partial && set.Loading is null && set.Entries.Count < HeadSize / 4;

    /// <summary>Starts a read of the set: the rank to read after (null: from the start), and how many rows at most.</summary>
    public (QueuedJob? After, int Limit) BeginLoad(JobSet set)
    {
        set.Changes = [];
        _loading.Add(set);
        return (set.State == SetState.Partial ? set.Bound : null, HeadSize);
    }

    /// <summary>
    /// Merges what a read found. Rows are a snapshot from before some of the changes made meanwhile, so those are
    /// replayed: a job removed during the read stays out, and one added during it that ranks after the old bound (and so
    /// was left to the table, where the snapshot may not have had it yet) goes in if the new bound covers it.
    /// </summary>
    public void EndLoad(JobSet set, IReadOnlyList<QueuedJob> rows, int limit)
    {
        var changes = set.Changes!;
        set.Changes = null;
        _loading.Remove(set);
        var removed = changes.Where(c => c.Added is null).Select(c => c.Removed).ToHashSet();
        var complete = rows.Count < limit;
        set.State = complete ? SetState.Complete : SetState.Partial;
        set.Bound = complete ? null : rows[^1];
        foreach (var row in rows)
        {
            if (!removed.Contains(row.Id)) Insert(set, row);
        }
        foreach (var (added, removedId) in changes)
        {
            if (added is not null) Insert(set, added);
            else if (_known.TryGetValue(removedId, out var job) && set.Entries.Remove(job) && !SetsOf(job).Any(other => other.Entries.Contains(job)))
            {
                _known.Remove(removedId);
            }
        }
        Trim(set);
    }

    /// <summary>A read failed: the set stays as it was.</summary>
    public void AbortLoad(JobSet set)
    {
        set.Changes = null;
        _loading.Remove(set);
    }

    /// <summary>Forgets every set (they are read again when next needed); answers the parked polls, taken out to be served again.</summary>
    public IReadOnlyList<Poll> Reset()
    {
        foreach (var set in AllSets())
        {
            set.Entries.Clear();
            set.State = SetState.Unloaded;
            set.Bound = null;
        }
        _known.Clear();
        return TakeAllParked(_ => true);
    }

    /// <summary>Complete sets with polls parked on them that hold nothing: where a job the dispatcher was never told of would wait.</summary>
    public IReadOnlyList<JobSet> IdleSetsWithPolls() =>
        AllSets().Where(set => set.State == SetState.Complete && set.Entries.Count == 0 && set.Loading is null
            && _parked.Values.Any(queue => queue.Any(poll => poll.Sets.Contains(set)))).ToList();

    public void Park(Poll poll)
    {
        poll.State = PollState.Parked;
        poll.Sequence = ++_sequence;
        for (var i = 0; i < poll.Keys.Length; i++)
        {
            if (!_parked.TryGetValue(poll.Keys[i], out var queue)) _parked[poll.Keys[i]] = queue = new LinkedList<Poll>();
            poll.Nodes[i] = queue.AddLast(poll);
        }
        ParkedCount++;
    }

    public void Unpark(Poll poll)
    {
        if (poll.State != PollState.Parked) return;
        for (var i = 0; i < poll.Keys.Length; i++)
        {
            var node = poll.Nodes[i];
            if (node is null) continue;
            var queue = node.List!;
            queue.Remove(node);
            if (queue.Count == 0) _parked.Remove(poll.Keys[i]);
            poll.Nodes[i] = null;
        }
        poll.State = PollState.Serving;
        ParkedCount--;
    }

    /// <summary>
    /// The longest-parked poll that can take a job with these queue keys, taken out of every queue; null if none.
    /// Polls that fail <paramref name="usable"/> (their worker's silo is dead) are skipped.
    /// </summary>
    public Poll? TakePollFor(string[] jobKeys, Func<Poll, bool> usable)
    {
        Poll? oldest = null;
        foreach (var jobKey in jobKeys)
        {
            if (!_parked.TryGetValue(jobKey, out var queue)) continue;
            for (var node = queue.First; node is not null; node = node.Next)
            {
                if (!usable(node.Value)) continue;
                if (oldest is null || node.Value.Sequence < oldest.Sequence) oldest = node.Value;
                break;
            }
        }
        if (oldest is not null) Unpark(oldest);
        return oldest;
    }

    /// <summary>Takes out the parked polls that match <paramref name="which"/>.</summary>
    public IReadOnlyList<Poll> TakeAllParked(Func<Poll, bool> which)
    {
        var polls = _parked.Values.SelectMany(queue => queue).Distinct().Where(which).OrderBy(poll => poll.Sequence).ToList();
        foreach (var poll in polls) Unpark(poll);
        return polls;
    }
}
