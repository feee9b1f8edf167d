using Coordinator.Grains.Dispatch;
using Orleans.Placement;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// One job's transitions on the client's side (key: the job id): cancel, priority change and retry, and a claim given
/// back. Each is written through as one conditional update on the expected state (see <see cref="JobStore"/>); what it
/// changes for dispatch is told to the job's dispatcher. The worker's transitions of a job it holds (start, result,
/// failure) go through its <see cref="Workers.IWorkerGrain"/>.
/// </summary>
public interface IJobGrain : IGrainWithIntegerKey
{
    /// <summary>pending → cancelled, by the client.</summary>
    Task<Transition<JobRow>> CancelAsync(long accountId);

    /// <summary>A pending job's priority moves by a signed delta.</summary>
    Task<Transition<JobRow>> ChangePriorityAsync(long accountId, int delta);

    /// <summary>failed → pending, in place.</summary>
    Task<Transition<JobRow>> RetryAsync(long accountId);

    /// <summary>A claim whose poll went away before it was answered goes back to pending, not counted as an attempt.</summary>
    Task ReleaseClaimAsync(long workerId);
}

/// <summary>
/// Holds nothing between calls: the row is the state, and each transition's conditional update decides, so a transition
/// made by a sweep elsewhere (a timeout, a requeue) needs no telling. The grain is where one job's transitions meet,
/// activated on the silo that asked, and gone as soon as it is idle: a job at rest costs no memory.
/// </summary>
[PreferLocalPlacement, CollectionAgeLimit(Minutes = 2)]
public sealed class JobGrain(JobStore jobs, Dispatchers dispatchers) : Grain, IJobGrain
{
    private long JobId => this.GetPrimaryKeyLong();

    public async Task<Transition<JobRow>> CancelAsync(long accountId)
    {
        var cancelled = await jobs.CancelAsync(accountId, JobId);
        if (cancelled.Value is { } job) await dispatchers.RemoveAsync([QueuedJob.Of(job)]);
        DeactivateOnIdle();
        return cancelled;
    }

    public async Task<Transition<JobRow>> ChangePriorityAsync(long accountId, int delta)
    {
        var changed = await jobs.ChangePriorityAsync(accountId, JobId, delta);
        if (changed.Value is { Held: false } job) await dispatchers.AddAsync([QueuedJob.Of(job)]);
        DeactivateOnIdle();
        return changed;
    }

    public async Task<Transition<JobRow>> RetryAsync(long accountId)
    {
        var retried = await jobs.RetryAsync(accountId, JobId);
        if (retried.Value is { Held: false } job) await dispatchers.AddAsync([QueuedJob.Of(job)]);
        DeactivateOnIdle();
        return retried;
    }

    public async Task ReleaseClaimAsync(long workerId)
    {
        if (await jobs.ReleaseClaimAsync(workerId, JobId) is { } released) await dispatchers.AddAsync([released]);
        DeactivateOnIdle();
    }
}
