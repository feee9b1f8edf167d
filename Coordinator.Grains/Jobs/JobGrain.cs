using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Orleans.Placement;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// One job's transitions after its submission (key: the job id): the worker's start, result and failure, the client's
/// cancel, priority change and retry, and a claim given back. Each is written through as one conditional update on
/// the expected state (see <see cref="JobStore"/>); what it changes for dispatch or quotas is told to the job's
/// dispatcher and account.
/// </summary>
public interface IJobGrain : IGrainWithIntegerKey
{
    /// <summary>claimed → running, by the worker that holds the job.</summary>
    Task<Transition<string>> StartAsync(long workerId);

    /// <summary>running → completed with the worker's result; the tokens count against the account's quota.</summary>
    Task<Transition<string>> CompleteAsync(long workerId, JobResult result);

    /// <summary>claimed or running → failed, with the worker's message.</summary>
    Task<Transition<string>> FailAsync(long workerId, string error);

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
public sealed class JobGrain(JobStore jobs, Dispatchers dispatchers, IGrainFactory grains) : Grain, IJobGrain
{
    private long JobId => this.GetPrimaryKeyLong();

    public Task<Transition<string>> StartAsync(long workerId) => jobs.StartAsync(workerId, JobId);

    public async Task<Transition<string>> CompleteAsync(long workerId, JobResult result)
    {
        var completed = await jobs.CompleteAsync(workerId, JobId, result);
        if (completed.Outcome != TransitionOutcome.Done) return Relay(completed);
        DeactivateOnIdle();
        await grains.GetGrain<IAccountGrain>(completed.Value).CountTokensAsync((result.InputTokens ?? 0) + (long)result.OutputTokens);
        return Transition<string>.Done(JobStatus.Completed);
    }

    public async Task<Transition<string>> FailAsync(long workerId, string error)
    {
        var failed = await jobs.FailAsync(workerId, JobId, error);
        if (failed.Outcome == TransitionOutcome.Done) DeactivateOnIdle();
        return failed;
    }

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

    private static Transition<string> Relay(Transition<long> failed) =>
        failed.Outcome == TransitionOutcome.NotFound ? Transition<string>.NotFound() : Transition<string>.WrongState(failed.CurrentStatus!);
}
