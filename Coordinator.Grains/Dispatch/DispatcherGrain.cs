using Coordinator.Grains.Accounting;
using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Dispatch for one family (see <see cref="IDispatcherGrain"/>). The matching rules live in <see cref="DispatchQueue"/>,
/// which this grain changes only between awaits; what it awaits is PostgreSQL: reads of the dispatch indexes, claims
/// and inserts, each the conditional statement that decides (invariant 2), shared with other grains' statements by the
/// silo's group commit. Reentrant, so that a claim in flight does not hold up the next poll or submission.
/// </summary>
/// <remarks>
/// A job leaves memory before its claim is sent and comes back only if the claim failed for a reason other than the
/// row: a claim that finds the row no longer pending (cancelled, held, or taken by another activation of this grain
/// during membership churn) drops it, and the poll is matched again.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "_deactivating has no timer and no wait handle; disposing it could race the cancellation Orleans' deactivation event starts")]
[Reentrant]
public sealed partial class DispatcherGrain(
    JobStore jobs, QuotaCounting quotas, IClusterMembershipService membership, IHostApplicationLifetime lifetime, TimeProvider time,
    IOptions<DispatchOptions> options, DispatchMetrics metrics, Telemetry.CoordinatorMetrics gauges, DispatchInFlight inFlight, ILogger<DispatcherGrain> logger)
    : Grain, IDispatcherGrain, IEndsCallsOnDeactivation
{
    /// <summary>How long a cancellation that arrived before its poll is kept.</summary>
    private static readonly TimeSpan CancelledEarlyKept = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How much longer than its window a dispatcher holds a poll before answering it with nothing itself. Its worker
    /// grain ends it at the window's end (a cancellation); this bound is for an activation Orleans deactivates while it
    /// holds polls whose deactivation signal (<see cref="DeactivationSignals"/>) did not come: it takes no call, that
    /// cancellation included, until every call it runs has ended, so every submission and poll of the family waits as
    /// long as its polls do.
    /// </summary>
    private static readonly TimeSpan HoldBeyondWindow = TimeSpan.FromSeconds(1);

    /// <summary>How often parked polls are checked for a dead worker-grain silo, and early cancellations forgotten.</summary>
    private static readonly TimeSpan PurgeInterval = TimeSpan.FromSeconds(5);

    private readonly Dictionary<Guid, Poll> _polls = [];
    // Cancellations that arrived before their poll (two messages from one caller may be reordered).
    private readonly Dictionary<Guid, DateTimeOffset> _cancelledEarly = [];
    private DispatchQueue _queue = null!;
    private Throughput _throughput = null!;
    private CancellationTokenRegistration _stopping;
    private Func<(int Queued, int Parked)>? _gauges;
    // Cancelled when Orleans begins to deactivate this activation: its parked polls are answered at once.
    private readonly CancellationTokenSource _deactivating = new();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _queue = new DispatchQueue(this.GetPrimaryKeyString(), options.Value.QueueHead);
        _throughput = new Throughput(options.Value.ThroughputWindow, time.GetUtcNow());
        this.RegisterGrainTimer(PurgeAsync, new GrainTimerCreationOptions(PurgeInterval, PurgeInterval) { Interleave = true });
        var rescan = options.Value.RescanInterval;
        this.RegisterGrainTimer(RescanAsync, new GrainTimerCreationOptions(rescan, rescan) { Interleave = true });
        // A parked poll is a call in progress, and an activation deactivates only once its calls have ended: when the silo
        // stops, the polls are let go first, so that they park again on an activation elsewhere without waiting.
        var self = this.AsReference<IDispatcherGrain>();
        _stopping = lifetime.ApplicationStopping.Register(() => _ = self.LetGoAsync());
        // The same when Orleans deactivates it for another reason (the directory's, when a silo leaves): it runs no
        // submission until its polls have ended.
        DeactivationSignals.Watch();
        // The silo's gauges read the queue's two counts directly, so a metrics scrape costs no grain call.
        var queue = _queue;
        _gauges = () => (queue.KnownCount, queue.ParkedCount);
        gauges.Track(this.GetPrimaryKeyString(), _gauges);
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        await _stopping.DisposeAsync();
        ReleaseParkedPolls();
        if (_gauges is not null) gauges.Untrack(this.GetPrimaryKeyString(), _gauges);
    }

    // Runs the polls' ends on the thread pool: this is called under the activation's lock.
    public void DeactivationBegun() => _ = _deactivating.CancelAsync();

    public Task LetGoAsync()
    {
        // Sent by an activation on a stopping silo to itself, it can reach a newer activation instead, on a silo that is
        // not stopping (Orleans forwards the messages a deactivating activation had not run): that one stays.
        if (!Stopping) return Task.CompletedTask;
        ReleaseParkedPolls();
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    // Parked polls answer nothing; their worker grains park again on the next activation.
    private void ReleaseParkedPolls()
    {
        foreach (var poll in _queue.TakeAllParked(_ => true)) Finish(poll, null);
    }

    // The silo is stopping: no claim starts here any more (what is already in flight is waited for, DispatchInFlight).
    private bool Stopping => lifetime.ApplicationStopping.IsCancellationRequested;

    public async Task<Submitted> SubmitAsync(long accountId, NewJob job)
    {
        var family = job.Model is null ? null : ModelNames.FamilyOf(job.Model);
        var poll = Stopping ? null : _queue.TakePollFor(DispatchQueue.KeysOf(job.ModelMatch, job.Model, family), Usable);
        using var handing = poll is null ? null : inFlight.Enter();
        SubmitResult result;
        try
        {
            result = await jobs.SubmitAsync(accountId, job, poll is null ? null : new HandTo(poll.Ticket.WorkerId, poll.Ticket.Id));
        }
        catch
        {
            if (poll is not null) await ServeAsync(poll);
            throw;
        }
        if (poll is not null)
        {
            if (result.Handed is { } handed)
            {
                metrics.HandOffs.Add(1);
                await DeliverAsync(poll, handed);
            }
            else
            {
                await ServeAsync(poll);
            }
        }
        if (result.Queued is { } queued) Forget(OfferAsync([queued]));
        return new Submitted(result.Row, result.KeyReused);
    }

    public async Task<ClaimedJob?> WaitAsync(PollTicket ticket, bool mayPark)
    {
        if (_cancelledEarly.Remove(ticket.Id) || Stopping || _deactivating.IsCancellationRequested) return null;
        var (keys, sets) = _queue.Resolve(ticket.Capabilities);
        var poll = new Poll(ticket, keys, sets, mayPark);
        _polls[ticket.Id] = poll;
        try
        {
            await ServeAsync(poll);
            if (!poll.Result.Task.IsCompleted) await HoldAsync(poll);
            return await poll.Result.Task;
        }
        finally
        {
            _polls.Remove(ticket.Id);
        }
    }

    /// <summary>
    /// Waits for a parked poll's answer, at most <see cref="HoldBeyondWindow"/> past its window or until this activation
    /// begins to deactivate, then answers it with nothing.
    /// </summary>
    private async Task HoldAsync(Poll poll)
    {
        using var held = CancellationTokenSource.CreateLinkedTokenSource(_deactivating.Token);
        var bound = Task.Delay(poll.Ticket.Window + HoldBeyondWindow, time, held.Token);
        if (await Task.WhenAny(poll.Result.Task, bound) == bound && !poll.Result.Task.IsCompleted)
        {
            // As a cancellation: a claim for it still in flight goes back uncounted.
            poll.Cancelled = true;
            _queue.Unpark(poll);
            Finish(poll, null);
        }
        await held.CancelAsync();
    }

    public async Task<QueuedJob?> PeekAsync(Capabilities capabilities)
    {
        var (_, sets) = _queue.Resolve(capabilities);
        while (DispatchQueue.FirstToLoad(sets) is { } set) await LoadAsync(set);
        return DispatchQueue.Best(sets);
    }

    public async Task<ClaimedJob?> ClaimJobAsync(long workerId, QueuedJob job)
    {
        if (_queue.IsClaiming(job.Id)) return null; // a poll's claim of it is in flight, and decides
        using var claiming = inFlight.Enter();
        _queue.Take(job);
        ClaimedJob? claimed;
        try
        {
            claimed = await jobs.ClaimAsync(job.Id, workerId);
        }
        catch
        {
            // The database failed, not the row: the job stays queued.
            _queue.Settled(job.Id);
            _queue.Add(job);
            throw;
        }
        _queue.Settled(job.Id);
        if (claimed is null) return null;
        await quotas.CountRequestAsync(claimed.AccountId);
        CountDispatched(claimed);
        return claimed;
    }

    public Task CancelWaitAsync(Guid pollId)
    {
        if (_polls.TryGetValue(pollId, out var poll))
        {
            poll.Cancelled = true;
            _queue.Unpark(poll);
            Finish(poll, null);
        }
        else
        {
            _cancelledEarly[pollId] = time.GetUtcNow();
        }
        return Task.CompletedTask;
    }

    public async Task GiveBackAsync(long workerId, long jobId)
    {
        if (await jobs.ReleaseClaimAsync(workerId, jobId) is { } released)
        {
            metrics.GivenBack.Add(1);
            await OfferAsync([released]);
        }
    }

    public Task AddAsync(IReadOnlyList<QueuedJob> jobs) => OfferAsync(jobs);

    public Task RemoveAsync(IReadOnlyList<long> jobIds)
    {
        foreach (var id in jobIds) _queue.Remove(id);
        return Task.CompletedTask;
    }

    public Task DropAccountAsync(long accountId)
    {
        _queue.RemoveAccount(accountId);
        return Task.CompletedTask;
    }

    public Task ResetAsync() => Task.WhenAll(_queue.Reset().Select(ServeAsync));

    public Task<DispatcherStats> StatsAsync() => Task.FromResult(new DispatcherStats(RuntimeIdentity, _queue.ParkedCount, _queue.KnownCount));

    public Task<double> ThroughputAsync(string modelMatch, string? model) =>
        Task.FromResult(_throughput.PerSecond(modelMatch, model, time.GetUtcNow()));

    public Task<IReadOnlyList<double>> ModelThroughputAsync(IReadOnlyList<string> models)
    {
        var now = time.GetUtcNow();
        return Task.FromResult<IReadOnlyList<double>>(models.Select(model => _throughput.ModelPerSecond(model, now)).ToList());
    }

    /// <summary>
    /// Jobs that became dispatchable: each goes to the longest-parked poll that can take it, or into the queue. The
    /// claims start together, so the silo's group commit sends them as one statement.
    /// </summary>
    private Task OfferAsync(IReadOnlyList<QueuedJob> offered)
    {
        List<Task>? claims = null;
        foreach (var job in offered)
        {
            if (_queue.IsClaiming(job.Id)) continue; // its claim decides
            _queue.Remove(job.Id); // a new rank replaces the old
            var poll = Stopping ? null : _queue.TakePollFor(DispatchQueue.KeysOf(job.ModelMatch, job.Model, job.Family), Usable);
            if (poll is null)
            {
                _queue.Add(job);
                continue;
            }
            (claims ??= []).Add(ClaimForAsync(poll, job));
        }
        return claims is null ? Task.CompletedTask : Task.WhenAll(claims);
    }

    /// <summary>
    /// Serves a poll from memory, reading sets first where needed: claims the best job it may take, or parks it (or,
    /// for a poll that may not park, answers nothing).
    /// </summary>
    private async Task ServeAsync(Poll poll)
    {
        while (!poll.Cancelled && poll.State != PollState.Done)
        {
            if (Stopping)
            {
                // No claim starts on a stopping silo: one whose answer the stop overtook would reach no worker until
                // its lease ran out. The poll parks again on the next activation.
                Finish(poll, null);
                return;
            }
            if (DispatchQueue.FirstToLoad(poll.Sets) is { } set)
            {
                try
                {
                    await LoadAsync(set);
                }
                catch (Exception exception)
                {
                    poll.State = PollState.Done;
                    poll.Result.TrySetException(exception);
                    return;
                }
                continue;
            }
            if (DispatchQueue.Best(poll.Sets) is not { } job)
            {
                if (poll.MayPark) _queue.Park(poll);
                else Finish(poll, null);
                return;
            }
            await ClaimForAsync(poll, job);
            return;
        }
    }

    /// <summary>Claims a job for a poll that has been taken out of the queues; a lost claim serves the poll again.</summary>
    private async Task ClaimForAsync(Poll poll, QueuedJob job)
    {
        // Counted until the poll has its answer, so that a graceful stop lets it reach the worker first.
        using var claiming = inFlight.Enter();
        _queue.Take(job);
        foreach (var set in poll.Sets)
        {
            if (_queue.RunningLow(set)) Forget(LoadAsync(set));
        }
        ClaimedJob? claimed;
        try
        {
            claimed = await jobs.ClaimAsync(job.Id, poll.Ticket.WorkerId, poll.Ticket.Id);
        }
        catch (Exception exception)
        {
            // The database failed, not the row: the job stays queued and the worker hears of the failure.
            _queue.Settled(job.Id);
            _queue.Add(job);
            poll.State = PollState.Done;
            poll.Result.TrySetException(exception);
            return;
        }
        _queue.Settled(job.Id);
        if (claimed is null)
        {
            metrics.ClaimsLost.Add(1);
            await ServeAsync(poll);
            return;
        }
        await DeliverAsync(poll, claimed);
    }

    /// <summary>
    /// Hands a job claimed for a poll's worker to the poll, after counting the request (the limit it reaches is enforced
    /// before the worker hears of the job); a poll gone meanwhile gives it back.
    /// </summary>
    private async Task DeliverAsync(Poll poll, ClaimedJob claimed)
    {
        if (!poll.Cancelled) await quotas.CountRequestAsync(claimed.AccountId);
        if (poll.Cancelled || !Finish(poll, claimed))
        {
            await GiveBackAsync(poll.Ticket.WorkerId, claimed.Id);
        }
    }

    private bool Finish(Poll poll, ClaimedJob? job)
    {
        var answered = poll.Answer(job);
        if (answered && job is not null) CountDispatched(job);
        return answered;
    }

    private void CountDispatched(ClaimedJob job)
    {
        metrics.Dispatched.Add(1);
        _throughput.Count(job.ModelMatch, job.Model, time.GetUtcNow());
    }

    /// <summary>Reads a set from its dispatch index; concurrent callers share one read.</summary>
    private Task LoadAsync(JobSet set)
    {
        if (set.Loading is { } running) return running;
        var load = LoadCoreAsync(set);
        // A read can complete at once (the rows were already buffered): then there is nothing to share.
        if (load.IsCompleted) return load;
        set.Loading = load;
        return ForgetLoadWhenDoneAsync(set, load);
    }

    private static async Task ForgetLoadWhenDoneAsync(JobSet set, Task load)
    {
        try
        {
            await load;
        }
        finally
        {
            if (set.Loading == load) set.Loading = null;
        }
    }

    private async Task LoadCoreAsync(JobSet set)
    {
        var (after, limit) = _queue.BeginLoad(set);
        try
        {
            var rows = await jobs.DispatchableAsync(set.Kind, set.Name, after, limit);
            _queue.EndLoad(set, rows, limit);
        }
        catch
        {
            _queue.AbortLoad(set);
            throw;
        }
    }

    // A poll whose worker grain's silo is dead would never receive what is claimed for it.
    private bool Usable(Poll poll) =>
        poll.Ticket.Silo is not { } silo || membership.CurrentSnapshot.GetSiloStatus(silo) != SiloStatus.Dead;

    private Task PurgeAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        // A parked poll past its window is answered by its own hold (HoldAsync); here, those whose worker grain's silo is dead.
        foreach (var poll in _queue.TakeAllParked(poll => !Usable(poll))) Finish(poll, null);
        foreach (var (id, at) in _cancelledEarly.ToList())
        {
            if (now - at > CancelledEarlyKept) _cancelledEarly.Remove(id);
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// The backstop for a job this dispatcher was never told of (a notification lost with a failing call): a set that
    /// polls wait on and that holds nothing is read again, and what the read finds is offered to them.
    /// </summary>
    private async Task RescanAsync(CancellationToken cancellationToken)
    {
        foreach (var set in _queue.IdleSetsWithPolls())
        {
            try
            {
                var found = await jobs.DispatchableAsync(set.Kind, set.Name, null, _queue.HeadSize);
                if (found.Count > 0)
                {
                    metrics.Rescued.Add(found.Count);
                    await OfferAsync(found);
                }
            }
            catch (Exception exception)
            {
                LogRescanFailed(logger, _queue.Key, exception.Message);
            }
        }
    }

    private void Forget(Task task)
    {
        if (task.IsCompleted)
        {
            if (task.Exception is { } failed) LogBackgroundFailed(logger, _queue.Key, failed.GetBaseException().Message);
            return;
        }
        task.ContinueWith(t => LogBackgroundFailed(logger, _queue.Key, t.Exception!.GetBaseException().Message),
            CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Current);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatcher {Family} could not read the table again: {Reason}")]
    private static partial void LogRescanFailed(ILogger logger, string family, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatcher {Family}: background work failed: {Reason}")]
    private static partial void LogBackgroundFailed(ILogger logger, string family, string reason);
}
