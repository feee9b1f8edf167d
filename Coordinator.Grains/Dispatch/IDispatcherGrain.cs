using Coordinator.Grains.Jobs;
using Orleans.Runtime;

namespace Coordinator.Grains.Dispatch;

/// <summary>One worker poll as its dispatchers see it.</summary>
/// <param name="Id">The poll; a worker's concurrent polls have different ids.</param>
/// <param name="WorkerId">The polling worker, for whom a job is claimed.</param>
/// <param name="Capabilities">What the poll may take.</param>
/// <param name="Window">How long the worker waits; the dispatcher gives up on the poll a little after, in case its worker grain is gone.</param>
/// <param name="Silo">The silo of the worker grain that waits: a dispatcher hands nothing to a poll whose silo is dead.</param>
[GenerateSerializer, Immutable]
public sealed record PollTicket(
    [property: Id(0)] Guid Id,
    [property: Id(1)] long WorkerId,
    [property: Id(2)] Capabilities Capabilities,
    [property: Id(3)] TimeSpan Window,
    [property: Id(4)] SiloAddress? Silo);

/// <summary>What a dispatcher holds, for tests and the cluster view.</summary>
[GenerateSerializer, Immutable]
public sealed record DispatcherStats([property: Id(0)] string Silo, [property: Id(1)] int ParkedPolls, [property: Id(2)] int QueuedJobs);

/// <summary>What a submission through a dispatcher did.</summary>
/// <param name="Row">The job as the client sees it; null when <paramref name="KeyReused"/>.</param>
/// <param name="KeyReused">The idempotency key was used before with another request: nothing was inserted.</param>
[GenerateSerializer, Immutable]
public sealed record Submitted([property: Id(0)] JobRow? Row, [property: Id(1)] bool KeyReused);

/// <summary>
/// The dispatcher of one model family (key: the family, or <see cref="DispatchKeys.Any"/> for catch-all work): it holds
/// the family's dispatchable jobs in fetch order and the polls parked on it, and matches them, one turn at a time.
/// Its memory is a cache of the jobs table: a new activation reads it again.
/// </summary>
public interface IDispatcherGrain : IGrainWithStringKey
{
    /// <summary>
    /// Inserts a job of this family. When a poll is parked here that can take it, nothing ranks ahead of it for that poll
    /// (a poll parks only when it finds nothing), so the job is inserted already claimed for that worker and handed over:
    /// one write and one commit. Answers after the insert committed.
    /// </summary>
    Task<Submitted> SubmitAsync(long accountId, NewJob job);

    /// <summary>
    /// A worker's poll: answers a job claimed for the worker as soon as there is one, or null when the worker cancels
    /// the poll (<see cref="CancelWaitAsync"/>), when this activation goes away (the worker parks again), or, with
    /// <paramref name="mayPark"/> false, at once when there is none. A job claimed for a poll cancelled meanwhile goes
    /// back to pending.
    /// </summary>
    [ResponseTimeout("00:05:00")]
    Task<ClaimedJob?> WaitAsync(PollTicket ticket, bool mayPark);

    /// <summary>The best job this poll could take here now, without taking it (for a worker comparing its families).</summary>
    Task<QueuedJob?> PeekAsync(Capabilities capabilities);

    /// <summary>
    /// Claims this job for a worker that asked for it by id (an AITBC miner's claim), if it is still pending and not
    /// held: null when it was not. The claim counts a request against the job's account, as a poll's does.
    /// </summary>
    Task<ClaimedJob?> ClaimJobAsync(long workerId, QueuedJob job);

    /// <summary>Ends a poll: its <see cref="WaitAsync"/> answers null, or the job it was just given.</summary>
    Task CancelWaitAsync(Guid pollId);

    /// <summary>A job claimed for a worker that will not run it (its poll took another job, or is gone): pending again, not counted as an attempt.</summary>
    Task GiveBackAsync(long workerId, long jobId);

    /// <summary>These jobs became dispatchable, or changed priority (retry, requeue, release, a new priority).</summary>
    Task AddAsync(IReadOnlyList<QueuedJob> jobs);

    /// <summary>These jobs stopped being dispatchable (cancelled).</summary>
    Task RemoveAsync(IReadOnlyList<long> jobIds);

    /// <summary>An account's jobs are held (its quota is used up): drop them from memory.</summary>
    Task DropAccountAsync(long accountId);

    /// <summary>Forgets what is in memory and reads the table again, as a new activation would.</summary>
    Task ResetAsync();

    Task<DispatcherStats> StatsAsync();

    /// <summary>
    /// Jobs per second this activation handed to workers over the last <see cref="DispatchOptions.ThroughputWindow"/>
    /// (or since it started, if later) out of the sets that serve a pending job of this match and model: how fast such a
    /// job moves forward. 0 when none went out.
    /// </summary>
    Task<double> ThroughputAsync(string modelMatch, string? model);

    /// <summary>For each model, jobs per second handed out that named it (exact and family jobs), over the same window.</summary>
    Task<IReadOnlyList<double>> ModelThroughputAsync(IReadOnlyList<string> models);

    /// <summary>
    /// Its silo is stopping: parked polls answer nothing (their worker grains park again elsewhere), and the activation
    /// deactivates.
    /// </summary>
    Task LetGoAsync();
}
