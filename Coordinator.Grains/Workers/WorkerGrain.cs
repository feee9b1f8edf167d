using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Runtime;

namespace Coordinator.Grains.Workers;

/// <summary>
/// One worker (key: the worker id): its liveness, what it registered, its polls, and the transitions of the jobs it holds.
/// A poll is one HTTP long-poll, answered with at most one job.
/// </summary>
public interface IWorkerGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// Waits up to <see cref="WorkerGrain.PollSlice"/> (or <see cref="DispatchOptions.LongPollTimeout"/>, when shorter) for a
    /// job this worker can serve, claimed for it; null when that ends or <see cref="CancelPollAsync"/> ends the poll first.
    /// Capabilities that declare nothing mean what the worker registered.
    /// </summary>
    [ResponseTimeout("00:05:00")]
    Task<ClaimedJob?> NextJobAsync(Guid pollId, Capabilities declared);

    /// <summary>
    /// Ends a poll at once (its client hung up, or this silo is stopping): it answers null, and a job claimed for it in the
    /// meantime goes back to pending.
    /// </summary>
    Task CancelPollAsync(Guid pollId);

    /// <summary>
    /// A heartbeat, a sign of life; answers the jobs this worker held that were cancelled in the last
    /// <see cref="WorkerGrain.CancelledJobsKept"/> (their client went away, or they timed out), so that it stops running them.
    /// </summary>
    Task<IReadOnlyList<long>> HeartbeatAsync();

    /// <summary>A job this worker held was cancelled: its next heartbeat is told (one-way: the canceller does not wait).</summary>
    [OneWay]
    Task JobCancelledAsync(long jobId);

    /// <summary>claimed → running, for a job this worker holds.</summary>
    Task<Transition<string>> StartAsync(long jobId);

    /// <summary>running → completed with this worker's result; the tokens count against the job's account's quota.</summary>
    Task<Transition<string>> CompleteAsync(long jobId, JobResult result);

    /// <summary>claimed or running → failed, with this worker's message.</summary>
    Task<Transition<string>> FailAsync(long jobId, string error);

    /// <summary>The best job this worker's registered models could take now, without taking it (an AITBC miner asking for available work).</summary>
    Task<QueuedJob?> PeekAsync();

    /// <summary>
    /// Claims a job this worker asked for by id (an AITBC miner's claim) and starts it: pending → claimed → running. A job
    /// already running for this worker is answered again; one another worker holds, one that ended, one held by its
    /// account's quota or one this worker's registered models cannot serve is refused with its status.
    /// </summary>
    Task<Transition<string>> ClaimJobAsync(long jobId);

    /// <summary>The worker changed its models: read them again when a poll needs them.</summary>
    Task ModelsChangedAsync();

    /// <summary>The worker registered (which wrote its last-seen time): read its models again when a poll needs them.</summary>
    Task RegisteredAsync();

    /// <summary>Its silo is stopping: open polls end now (the worker polls again, reaching an activation elsewhere), and the activation deactivates.</summary>
    Task LetGoAsync();
}

/// <summary>
/// Turns a poll into calls on the dispatchers of the families it can serve (see <see cref="IDispatcherGrain.WaitAsync"/>):
/// a call that completes when a job was claimed for the worker. With one family that is one call. With several it first
/// asks each dispatcher for its best job without taking it, takes the best of those, and only if there is none parks on
/// all of them; the first job to arrive wins and the others' polls are cancelled, a job one of them claimed in the same
/// moment going back.
/// </summary>
/// <remarks>
/// Calls rather than grain observers, because a call fails when the silo of its dispatcher dies (the failure detector
/// declares it dead): the poll then parks again on the new activation, which has read the table again. An observer would
/// wait silently on a dispatcher that no longer exists. Reentrant: a worker runs several polls at once, and a poll's
/// cancellation must reach it while it waits.
/// <para>
/// The worker's start, result and failure of the jobs it holds are calls on this grain, which is already active for its
/// polls, rather than on a grain per job that each job would activate. Liveness is kept in memory; the row's <c>last_seen_at</c> is written at most once per
/// <see cref="DispatchOptions.HeartbeatWriteInterval"/> for the offline sweep, which runs once in the cluster and also
/// covers workers whose grain died with its silo.
/// </para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "_deactivating has no timer and no wait handle; disposing it could race the cancellation Orleans' deactivation event starts")]
[Reentrant, PreferLocalPlacement]
public sealed partial class WorkerGrain(WorkerStore workers, JobStore jobs, QuotaCounting quotas, IGrainFactory grains, ILocalSiloDetails silo,
    PollClaims pollClaims, IHostApplicationLifetime lifetime, TimeProvider time, IOptions<DispatchOptions> options, DispatchInFlight inFlight, ILogger<WorkerGrain> logger) : Grain, IWorkerGrain, IEndsCallsOnDeactivation
{
    /// <summary>How long a poll waits before parking again on a dispatcher whose activation went away.</summary>
    private static readonly TimeSpan ParkAgainAfter = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// The longest one call of <see cref="IWorkerGrain.NextJobAsync"/> waits: the front end calls again until the HTTP
    /// poll's window (<see cref="DispatchOptions.LongPollTimeout"/>) ends. An activation Orleans deactivates (its directory
    /// entry was on a silo that left) runs no other call, a result or a heartbeat included, until the calls it runs have
    /// ended: a slice bounds that wait, and the dispatcher's hold of the poll with it.
    /// </summary>
    public static readonly TimeSpan PollSlice = TimeSpan.FromSeconds(5);

    /// <summary>How long an ending poll waits for a dispatcher to answer its cancellation.</summary>
    private static readonly TimeSpan EndWaitBound = TimeSpan.FromSeconds(2);

    /// <summary>Cancellations kept for polls that have not arrived (two calls from one caller may be reordered), at most this many.</summary>
    private const int MaxCancelledEarly = 1000;

    /// <summary>How long a heartbeat keeps telling the worker of a job of its that was cancelled.</summary>
    public static readonly TimeSpan CancelledJobsKept = TimeSpan.FromMinutes(5);

    /// <summary>At most this many cancelled jobs are kept (the oldest go first).</summary>
    private const int MaxCancelledJobs = 1000;

    private readonly Dictionary<Guid, TaskCompletionSource<PollEnd>> _polls = [];
    private readonly HashSet<Guid> _cancelledEarly = [];
    // In memory only: the chunk and result answers (422) are the record, a heartbeat only tells the worker sooner. A job
    // cancelled while this activation did not exist (its silo died) is heard at the next chunk or result.
    private readonly Dictionary<long, DateTimeOffset> _cancelledJobs = [];
    private Capabilities? _registered;
    private DateTimeOffset? _seenWritten;
    private Task? _writingSeen;
    private CancellationTokenRegistration _stopping;
    // Cancelled when Orleans begins to deactivate this activation: its polls end at once.
    private readonly CancellationTokenSource _deactivating = new();

    private long WorkerId => this.GetPrimaryKeyLong();

    /// <summary>Why a poll stopped waiting.</summary>
    private enum PollEnd
    {
        /// <summary>Its window ended: a job that arrives as it ends is still the worker's.</summary>
        WindowEnded,
        /// <summary>Its client is gone: a job that arrives now goes back.</summary>
        Cancelled,
    }

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // A poll is a call in progress, and an activation deactivates only once its calls have ended: when the silo stops,
        // its polls end first.
        var self = this.AsReference<IWorkerGrain>();
        _stopping = lifetime.ApplicationStopping.Register(() => _ = self.LetGoAsync());
        // The same when Orleans deactivates it for another reason (the directory's, when a silo leaves): it runs no
        // result or heartbeat until its polls have ended.
        DeactivationSignals.Watch();
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) => await _stopping.DisposeAsync();

    // Runs the polls' ends on the thread pool: this is called under the activation's lock.
    public void DeactivationBegun() => _ = _deactivating.CancelAsync();

    public Task LetGoAsync()
    {
        // Forwarded to a newer activation on a silo that is not stopping (see DispatcherGrain.LetGoAsync): it stays.
        if (!lifetime.ApplicationStopping.IsCancellationRequested) return Task.CompletedTask;
        foreach (var end in _polls.Values) end.TrySetResult(PollEnd.WindowEnded);
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public async Task<ClaimedJob?> NextJobAsync(Guid pollId, Capabilities declared)
    {
        // A silo whose stop has begun takes no poll, even in an activation made since (it is still in the cluster until
        // Orleans' own stop): a job claimed for it could be answered after the silo stops sending, and be lost to the caller.
        if (lifetime.ApplicationStopping.IsCancellationRequested || _deactivating.IsCancellationRequested || _cancelledEarly.Remove(pollId)) return null;
        // Counted until it answers: a graceful stop waits for it (it ends when this grain lets go), so that a job
        // claimed for it reaches the caller on another silo before this silo leaves.
        using var polling = inFlight.Enter();
        // Registered before anything is awaited, so that a cancellation or a stopping silo reaches the poll from the start.
        var end = new TaskCompletionSource<PollEnd>(TaskCreationOptions.RunContinuationsAsynchronously);
        _polls[pollId] = end;
        var window = options.Value.LongPollTimeout < PollSlice ? options.Value.LongPollTimeout : PollSlice;
        using var timer = new CancellationTokenSource(window, time);
        using var registration = timer.Token.Register(static state => ((TaskCompletionSource<PollEnd>)state!).TrySetResult(PollEnd.WindowEnded), end);
        using var deactivating = _deactivating.Token.Register(static state => ((TaskCompletionSource<PollEnd>)state!).TrySetResult(PollEnd.WindowEnded), end);
        try
        {
            await SeenAsync();
            var capabilities = declared.IsEmpty ? _registered ??= await workers.RegisteredCapabilitiesAsync(WorkerId) : declared;
            var ticket = new PollTicket(pollId, WorkerId, capabilities, window, silo.SiloAddress);
            var families = DispatchKeys.For(capabilities);
            var job = families.Count switch
            {
                _ when end.Task.IsCompleted => null,
                0 => await NothingAsync(end.Task),
                1 => await WaitAtAsync(families[0], ticket, end.Task),
                _ => await WaitAtSeveralAsync(families, ticket, end.Task),
            };
            // A claim is a sign of life: the worker waited silently for it.
            if (job is not null) await SeenAsync();
            return job;
        }
        finally
        {
            _polls.Remove(pollId);
        }
    }

    public Task CancelPollAsync(Guid pollId)
    {
        if (_polls.TryGetValue(pollId, out var end)) end.TrySetResult(PollEnd.Cancelled);
        else
        {
            // Most are cancellations of polls that already ended, which never come: forget them in bulk.
            if (_cancelledEarly.Count >= MaxCancelledEarly) _cancelledEarly.Clear();
            _cancelledEarly.Add(pollId);
        }
        return Task.CompletedTask;
    }

    public async Task<IReadOnlyList<long>> HeartbeatAsync()
    {
        await SeenAsync();
        if (_cancelledJobs.Count == 0) return [];
        var since = time.GetUtcNow() - CancelledJobsKept;
        foreach (var (jobId, at) in _cancelledJobs.Where(job => job.Value < since).ToList()) _cancelledJobs.Remove(jobId);
        return [.. _cancelledJobs.Keys.Order()];
    }

    public Task JobCancelledAsync(long jobId)
    {
        if (_cancelledJobs.Count >= MaxCancelledJobs) _cancelledJobs.Remove(_cancelledJobs.MinBy(job => job.Value).Key);
        _cancelledJobs[jobId] = time.GetUtcNow();
        return Task.CompletedTask;
    }

    public async Task<QueuedJob?> PeekAsync()
    {
        await SeenAsync();
        var capabilities = _registered ??= await workers.RegisteredCapabilitiesAsync(WorkerId);
        var peeks = await Task.WhenAll(DispatchKeys.For(capabilities).Select(family => PeekAsync(family, capabilities)));
        return peeks.Where(job => job is not null).OrderBy(job => job!, QueuedJob.Rank).FirstOrDefault();
    }

    public async Task<Transition<string>> ClaimJobAsync(long jobId)
    {
        await SeenAsync();
        var capabilities = _registered ??= await workers.RegisteredCapabilitiesAsync(WorkerId);
        var (job, status, holder) = await jobs.DispatchStateAsync(jobId);
        if (status is null) return Transition<string>.NotFound();
        if (holder == WorkerId && status is JobStatus.Claimed or JobStatus.Running) return await StartHeldAsync(jobId, status);
        if (job is null) return Transition<string>.WrongState(status == JobStatus.Pending ? "held" : status);
        if (!CanServe(capabilities, job)) return Transition<string>.WrongState("not_served");
        if (await grains.GetGrain<IDispatcherGrain>(job.DispatcherKey).ClaimJobAsync(WorkerId, job) is null)
        {
            var (_, now, by) = await jobs.DispatchStateAsync(jobId);
            return by == WorkerId && now is JobStatus.Claimed or JobStatus.Running
                ? await StartHeldAsync(jobId, now)
                : Transition<string>.WrongState(now ?? JobStatus.Cancelled);
        }
        return await StartHeldAsync(jobId, JobStatus.Claimed);
    }

    // Claimed by this worker: running from now, which is when its receipt's work starts.
    private async Task<Transition<string>> StartHeldAsync(long jobId, string status) =>
        status == JobStatus.Running ? Transition<string>.Done(JobStatus.Running) : await jobs.StartAsync(WorkerId, jobId);

    /// <summary>The dispatch rule: an exact job needs its model, a family job its model or its family, a catch-all job a catch-all worker.</summary>
    private static bool CanServe(Capabilities capabilities, QueuedJob job) => job.ModelMatch switch
    {
        ModelMatch.Exact => capabilities.Models.Contains(job.Model!, StringComparer.Ordinal),
        ModelMatch.Family => capabilities.Models.Contains(job.Model!, StringComparer.Ordinal) || capabilities.Families.Contains(job.Family!, StringComparer.Ordinal),
        _ => capabilities.CatchAll,
    };

    // Each transition is the conditional update that decides (on the worker holding the job and on its state), so a job
    // that a sweep took away meanwhile is refused as the spec says. The worker's calls are signs of life too.
    public async Task<Transition<string>> StartAsync(long jobId)
    {
        await SeenAsync();
        return await jobs.StartAsync(WorkerId, jobId);
    }

    public async Task<Transition<string>> CompleteAsync(long jobId, JobResult result)
    {
        await SeenAsync();
        var completed = await jobs.CompleteAsync(WorkerId, jobId, result);
        if (completed.Outcome != TransitionOutcome.Done) return AsStatus(completed);
        TellIfWatched(jobId, completed.Value);
        await quotas.CountTokensAsync(completed.Value.AccountId, (result.InputTokens ?? 0) + (long)result.OutputTokens);
        return Transition<string>.Done(JobStatus.Completed);
    }

    public async Task<Transition<string>> FailAsync(long jobId, string error)
    {
        await SeenAsync();
        var failed = await jobs.FailAsync(WorkerId, jobId, error);
        if (failed.Outcome != TransitionOutcome.Done) return AsStatus(failed);
        TellIfWatched(jobId, failed.Value);
        return Transition<string>.Done(JobStatus.Failed);
    }

    // Someone follows the job's stream: its grain hears that it ended (a one-way call: the answer to the worker does not wait).
    private void TellIfWatched(long jobId, Ended ended)
    {
        if (ended.Watched) _ = grains.GetGrain<IJobGrain>(jobId).EndedAsync();
    }

    private static Transition<string> AsStatus(Transition<Ended> refused) =>
        refused.Outcome == TransitionOutcome.NotFound ? Transition<string>.NotFound() : Transition<string>.WrongState(refused.CurrentStatus!);

    public Task ModelsChangedAsync()
    {
        _registered = null;
        return Task.CompletedTask;
    }

    public Task RegisteredAsync()
    {
        _registered = null;
        _seenWritten = time.GetUtcNow();
        return Task.CompletedTask;
    }

    // Nothing can match a poll that declares nothing and registered nothing: it waits out its window, so the worker does not spin.
    private static async Task<ClaimedJob?> NothingAsync(Task<PollEnd> end)
    {
        await end;
        return null;
    }

    private IDispatcherGrain Dispatcher(string family) => grains.GetGrain<IDispatcherGrain>(family);

    /// <summary>Parks on one dispatcher until it hands over a job or the poll ends; parks again if the dispatcher's activation went away.</summary>
    private async Task<ClaimedJob?> WaitAtAsync(string family, PollTicket ticket, Task<PollEnd> end)
    {
        var calls = new DispatcherCalls(ticket, family, 0);
        var dispatcher = Dispatcher(family);
        try
        {
            while (true)
            {
                var wait = dispatcher.WaitAsync(calls.Ticket, mayPark: true);
                if (await Task.WhenAny(wait, end) == wait)
                {
                    if (await SettledAsync(wait, calls) is { } job) return job;
                    // The activation went away (its silo died or is stopping): park on the next one, after a moment for the
                    // cluster to place it.
                    await Task.WhenAny(Task.Delay(ParkAgainAfter, time), end);
                    if (end.IsCompleted) return null;
                    continue;
                }
                return await EndWaitAsync(dispatcher, calls, wait, await end, keep: true);
            }
        }
        finally
        {
            GiveBackLost(calls);
        }
    }

    private async Task<ClaimedJob?> WaitAtSeveralAsync(IReadOnlyList<string> families, PollTicket ticket, Task<PollEnd> end)
    {
        var calls = families.Select((family, index) => new DispatcherCalls(ticket, family, index)).ToDictionary(c => c.Family, StringComparer.Ordinal);
        try
        {
            // The best job across the families first, so that priority and age order hold across them.
            for (var round = 0; round < 3 && !end.IsCompleted; round++)
            {
                var peeks = await Task.WhenAll(families.Select(async family => (Family: family, Best: await PeekAsync(family, ticket.Capabilities))));
                var best = peeks.Where(p => p.Best is not null).OrderBy(p => p.Best!, QueuedJob.Rank).FirstOrDefault();
                if (best.Best is null) break;
                var at = calls[best.Family];
                if (await SettledAsync(Dispatcher(best.Family).WaitAsync(at.Ticket, mayPark: false), at) is { } taken) return taken;
            }

            // Nothing anywhere: park on all of them; the first job wins.
            var waits = calls.Values.ToDictionary(c => c.Family, c => Dispatcher(c.Family).WaitAsync(c.Ticket, mayPark: true), StringComparer.Ordinal);
            ClaimedJob? winner = null;
            while (winner is null && !end.IsCompleted)
            {
                var done = await Task.WhenAny(waits.Values.Append<Task>(end));
                if (done == end) break;
                var (family, wait) = waits.First(w => w.Value == done);
                winner = await SettledAsync(wait, calls[family]);
                // A dispatcher that answered nothing lost its activation: park there again, after a moment for the cluster to place it.
                if (winner is null && !end.IsCompleted) waits[family] = ParkAgainAsync(calls[family], end);
                else waits.Remove(family);
            }

            var how = end.IsCompleted ? await end : PollEnd.WindowEnded;
            var rest = await Task.WhenAll(waits.Select(w => EndWaitAsync(Dispatcher(w.Key), calls[w.Key], w.Value, how, keep: winner is null)));
            foreach (var late in rest.Where(job => job is not null))
            {
                // One job per poll: the first is kept, a second claimed in the same moment goes back.
                if (winner is null) winner = late;
                else await GiveBackAsync(late!);
            }
            return how == PollEnd.Cancelled && winner is not null ? await GiveBackAsync(winner) : winner;
        }
        finally
        {
            foreach (var at in calls.Values) GiveBackLost(at);
        }
    }

    private async Task<ClaimedJob?> ParkAgainAsync(DispatcherCalls calls, Task<PollEnd> end)
    {
        await Task.WhenAny(Task.Delay(ParkAgainAfter, time), end);
        return end.IsCompleted ? null : await Dispatcher(calls.Family).WaitAsync(calls.Ticket, mayPark: true);
    }

    /// <summary>
    /// Cancels a dispatcher's poll and collects what it answers; a job it claimed meanwhile is kept or given back. A
    /// dispatcher that does not answer within <see cref="EndWaitBound"/> (its silo is stopping or gone) is not waited for:
    /// a job it claims for the poll later goes back when it arrives.
    /// </summary>
    private async Task<ClaimedJob?> EndWaitAsync(IDispatcherGrain dispatcher, DispatcherCalls calls, Task<ClaimedJob?> wait, PollEnd how, bool keep)
    {
        if (!wait.IsCompleted) _ = CancelAtAsync(dispatcher, calls.Family, calls.Ticket.Id);
        if (await Task.WhenAny(wait, Task.Delay(EndWaitBound, time)) != wait)
        {
            _ = GiveBackWhenAnsweredAsync(wait, calls.Ticket.Id);
            return null;
        }
        var late = await SettledAsync(wait, calls);
        if (late is null) return null;
        return keep && how == PollEnd.WindowEnded ? late : await GiveBackAsync(late);
    }

    private async Task CancelAtAsync(IDispatcherGrain dispatcher, string family, Guid pollId)
    {
        try
        {
            await dispatcher.CancelWaitAsync(pollId);
        }
        catch (Exception exception)
        {
            LogDispatcherUnreachable(logger, family, exception.Message);
        }
    }

    // Runs off the grain's scheduler: this activation may be gone by the time the dispatcher answers.
    private Task GiveBackWhenAnsweredAsync(Task<ClaimedJob?> wait, Guid callId)
    {
        var (factory, claims, workerId) = (grains, pollClaims, WorkerId);
        return Task.Run(async () =>
        {
            try
            {
                if (await wait is { } job) await factory.GetGrain<IJobGrain>(job.Id).ReleaseClaimAsync(workerId);
            }
            catch (Exception exception) when (GrainCallFailures.IsTransient(exception))
            {
                // No answer came: a job claimed for the call never reached this poll.
                await claims.AnswerLostAsync(workerId, (callId, callId));
            }
        });
    }

    private async Task<QueuedJob?> PeekAsync(string family, Capabilities capabilities)
    {
        try
        {
            return await Dispatcher(family).PeekAsync(capabilities);
        }
        catch (Exception exception) when (GrainCallFailures.IsTransient(exception))
        {
            LogDispatcherUnreachable(logger, family, exception.Message);
            return null;
        }
    }

    /// <summary>
    /// The outcome of a dispatcher call; null when its activation went away (the caller parks again). A call that failed
    /// may have had a job claimed for it whose answer was lost: the next call gets a new id, and the first failure of a
    /// slice gives back what was claimed for the failed calls at once (the rest go back when the slice ends, so that a
    /// dispatcher failing call after call while its silo is declared dead costs no statement each time).
    /// </summary>
    private async Task<ClaimedJob?> SettledAsync(Task<ClaimedJob?> wait, DispatcherCalls calls)
    {
        try
        {
            return await wait;
        }
        catch (Exception exception) when (GrainCallFailures.IsTransient(exception))
        {
            LogDispatcherUnreachable(logger, calls.Family, exception.Message);
            var firstFailure = !calls.AnyFailed;
            calls.Failed();
            if (firstFailure) GiveBackLost(calls);
            return null;
        }
    }

    /// <summary>
    /// Gives back the claims of the failed calls not given back yet (<see cref="PollClaims"/>), off the grain's scheduler
    /// and without waiting: the poll parks again meanwhile, and a call with a new id is outside the range given back.
    /// </summary>
    private void GiveBackLost(DispatcherCalls calls)
    {
        if (calls.TakeLost() is not { } lost) return;
        var (claims, workerId) = (pollClaims, WorkerId);
        _ = Task.Run(() => claims.AnswerLostAsync(workerId, lost));
    }

    /// <summary>
    /// A slice's calls to one family's dispatcher: each has its own id (<see cref="PollIds"/>), so that the claims of the
    /// calls that failed go back without touching the call made after them.
    /// </summary>
    private sealed class DispatcherCalls(PollTicket slice, string family, int index)
    {
        private int _call;
        private int _lostFrom;

        public string Family => family;

        /// <summary>The ticket of the call to make now.</summary>
        public PollTicket Ticket { get; private set; } = slice with { Id = PollIds.Of(slice.Id, index, 0) };

        public bool AnyFailed => _call > 0;

        /// <summary>The current call failed: the next one has a new id.</summary>
        public void Failed()
        {
            _call++;
            Ticket = slice with { Id = PollIds.Of(slice.Id, index, _call) };
        }

        /// <summary>The ids of the failed calls not taken yet, as a range; null when there are none.</summary>
        public (Guid First, Guid Last)? TakeLost()
        {
            if (_lostFrom == _call) return null;
            var lost = PollIds.Calls(slice.Id, index, _lostFrom, _call - 1);
            _lostFrom = _call;
            return lost;
        }
    }

    private async Task<ClaimedJob?> GiveBackAsync(ClaimedJob job)
    {
        await grains.GetGrain<IJobGrain>(job.Id).ReleaseClaimAsync(WorkerId);
        return null;
    }


    /// <summary>Notes a sign of life; the row is written when the last write is older than the heartbeat write interval.</summary>
    private Task SeenAsync()
    {
        if (_writingSeen is { IsCompleted: false } writing) return writing;
        var now = time.GetUtcNow();
        if (_seenWritten is { } written && now - written < options.Value.HeartbeatWriteInterval) return Task.CompletedTask;
        return _writingSeen = WriteSeenAsync(now);
    }

    private async Task WriteSeenAsync(DateTimeOffset now)
    {
        await workers.HeartbeatAsync(WorkerId);
        _seenWritten = now;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "The dispatcher of {Family} is moving ({Reason}); the poll parks on its next activation")]
    private static partial void LogDispatcherUnreachable(ILogger logger, string family, string reason);
}
