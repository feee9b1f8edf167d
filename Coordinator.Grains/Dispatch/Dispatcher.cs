using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Serves long-polls: claim now if a job is waiting, otherwise park in memory (no database connection held)
/// until woken or the window ends.
/// </summary>
/// <remarks>
/// The order is what keeps wake-ups from being missed: a poll registers as parked <em>before</em> it claims.
/// A job committed after the claim's snapshot then finds the poll parked and wakes it; a job committed before
/// is seen by the claim. A poll that leaves holding a wake it did not use passes the wake on.
/// </remarks>
public sealed class Dispatcher(
    JobStore jobs, WaiterRegistry registry, WorkSignals signals, ClusterWakes cluster, TimeProvider time, IOptions<DispatchOptions> options)
{
    /// <summary>Test seam: runs after a claim found nothing and before the poll waits — the window where a wake could be missed.</summary>
    internal Func<Task>? AfterEmptyClaim { get; set; }

    /// <summary>
    /// Waits up to the long-poll window for a job this worker can serve and claims it. Null when the window
    /// ends, when <paramref name="endWindow"/> fires (the node is shutting down), or when
    /// <paramref name="cancellationToken"/> fires (the worker went away) — then nothing stays claimed.
    /// </summary>
    public async Task<ClaimedJob?> NextJobAsync(long workerId, Capabilities capabilities, CancellationToken cancellationToken, CancellationToken endWindow = default)
    {
        var found = await NextAsync(workerId, capabilities, async () => await jobs.ClaimAsync(workerId, capabilities, CancellationToken.None) is { } job ? [job] : [],
            startsOnClaim: false, cancellationToken, endWindow);
        return found.Count == 0 ? null : found[0];
    }

    /// <summary>
    /// As <see cref="NextJobAsync"/>, for an in-process consumer that takes work in batches: leases up to
    /// <paramref name="max"/> jobs in one statement, already <c>running</c> (claim and start in one transition; see
    /// <see cref="JobStore.LeaseAsync"/>). Empty when the window ends with nothing to do. A hand-off brings one job,
    /// inserted running.
    /// </summary>
    public Task<IReadOnlyList<ClaimedJob>> NextJobsAsync(long workerId, Capabilities capabilities, int max, CancellationToken cancellationToken, CancellationToken endWindow = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(max, JobStore.MaxLease);
        return NextAsync(workerId, capabilities, () => jobs.LeaseAsync(workerId, capabilities, max), startsOnClaim: true, cancellationToken, endWindow);
    }

    private async Task<IReadOnlyList<ClaimedJob>> NextAsync(long workerId, Capabilities capabilities, Func<Task<IReadOnlyList<ClaimedJob>>> claim,
        bool startsOnClaim, CancellationToken cancellationToken, CancellationToken endWindow)
    {
        var keys = WakeKeys.ForCapabilities(capabilities);
        using var window = new CancellationTokenSource(options.Value.LongPollTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(window.Token, cancellationToken, endWindow);
        if (keys.Length == 0)
        {
            // Nothing can match; wait out the window so the worker does not spin.
            await WaitQuietlyAsync(Task.Delay(Timeout.Infinite, linked.Token));
            return [];
        }

        // Before the first claim, so that work that arrives on another silo after the claim's snapshot reaches this poll.
        await cluster.EnsureSubscribedAsync(keys);

        // UnansweredWakes as it stood before the latest claim; null until the first claim.
        long? unansweredBeforeClaim = null;
        var lostRace = false;
        while (true)
        {
            var poll = registry.Park(keys, workerId, capabilities, startsOnClaim);
            // Claim on arrival, after a lost race, and whenever some wake found no poll while this one was away.
            if (unansweredBeforeClaim is null || lostRace || registry.UnansweredWakes != unansweredBeforeClaim)
            {
                lostRace = false;
                unansweredBeforeClaim = registry.UnansweredWakes;
                IReadOnlyList<ClaimedJob> found;
                try
                {
                    found = await claim();
                }
                catch
                {
                    PassOn(registry.Unpark(poll));
                    throw;
                }
                if (found.Count > 0)
                {
                    // Woken while claiming: that wake was meant for a job this poll may not have taken.
                    PassOn(registry.Unpark(poll));
                    return await KeepOrReleaseAsync(workerId, found, cancellationToken);
                }
                if (AfterEmptyClaim is { } hook) await hook();
            }

            poll.Idle = true;
            await WaitQuietlyAsync(poll.Signalled.WaitAsync(linked.Token));
            // A poll reserved for a hand-off is resolved as soon as the submission's insert ends: wait for that.
            var wakeKey = registry.Unpark(poll) ?? (poll.Reserved ? await poll.Signalled : null);
            if (poll.HandedJob is { } handed)
            {
                return await KeepOrReleaseAsync(workerId, [handed], cancellationToken);
            }
            if (wakeKey is null)
            {
                return []; // the window ended or the worker went away, with no wake in hand
            }
            if (linked.IsCancellationRequested)
            {
                PassOn(wakeKey);
                return [];
            }

            unansweredBeforeClaim = registry.UnansweredWakes;
            var claimed = await claim();
            if (claimed.Count > 0)
            {
                // It took jobs of other buckets only: the one it was woken for still needs a poll.
                if (!claimed.Any(job => WakeKeys.ForJob(job.ModelMatch, job.Model, job.Family).Contains(wakeKey))) PassOn(wakeKey);
                return await KeepOrReleaseAsync(workerId, claimed, cancellationToken);
            }
            // Found nothing although woken. Either the job went to a poll that was not woken for it, or it was locked
            // by a concurrent claim (SKIP LOCKED) that took it while that claim's own job committed after this claim's
            // snapshot and is still pending: the wake for it went to the poll that took this one. So park again and
            // claim once more before waiting; without this, a burst of jobs could leave one waiting for a poll window.
            lostRace = true;
        }
    }

    private async Task<IReadOnlyList<ClaimedJob>> KeepOrReleaseAsync(long workerId, IReadOnlyList<ClaimedJob> found, CancellationToken cancellationToken)
    {
        if (!cancellationToken.IsCancellationRequested) return found;
        // The worker hung up while the claim ran: nobody will receive these jobs, so give them back at once.
        foreach (var job in found) await jobs.ReleaseClaimAsync(workerId, job);
        return [];
    }

    private void PassOn(string? wakeKey)
    {
        if (wakeKey is not null) signals.WorkAvailable([wakeKey]);
    }

    private static async Task WaitQuietlyAsync(Task task)
    {
        try
        {
            await task;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
