using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Logging;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Gives back the claims made for a worker's poll whose answer never reached the front end that took the poll: its call to
/// the worker grain failed (the grain's silo stopped or died with the answer in flight; Orleans drops the responses of a
/// stopping silo). Every claim for a poll names the poll (<c>jobs.poll_id</c>), so they are found however the answer was
/// lost, and go back to their dispatchers at once instead of after the claim lease.
/// </summary>
public sealed partial class PollClaims(JobStore jobs, Dispatchers dispatchers, DispatchMetrics metrics, TimeProvider time, ILogger<PollClaims> logger)
{
    /// <summary>
    /// When the claims of a lost poll are looked for a second time: a claim can still commit after its poll's call failed
    /// (a dispatcher on a third silo claiming for a poll parked there before the worker grain's silo was known dead).
    /// </summary>
    public static readonly TimeSpan LateClaimsAfter = TimeSpan.FromSeconds(2);

    /// <summary>Releases the claims still not started of every call of a poll slice (<see cref="PollIds"/>) and offers them to their dispatchers; answers how many.</summary>
    public Task<int> ReleaseAsync(long workerId, Guid slice) => ReleaseAsync(workerId, PollIds.All(slice));

    /// <summary>Releases the claims still not started of a range of calls (<see cref="PollIds"/>) and offers them to their dispatchers; answers how many.</summary>
    public async Task<int> ReleaseAsync(long workerId, (Guid First, Guid Last) calls)
    {
        var released = await jobs.ReleasePollClaimsAsync(workerId, calls.First, calls.Last);
        if (released.Count == 0) return 0;
        metrics.GivenBack.Add(released.Count);
        await dispatchers.AddAsync(released);
        return released.Count;
    }

    /// <summary>
    /// The answer of a poll slice was lost: its claims go back now, and those committed meanwhile once more after
    /// <see cref="LateClaimsAfter"/> (in the background; a failure is logged, and the claim lease stays the backstop).
    /// </summary>
    public Task AnswerLostAsync(long workerId, Guid slice) => AnswerLostAsync(workerId, PollIds.All(slice));

    /// <summary>
    /// The answers of a range of a slice's calls to a dispatcher were lost (<see cref="PollIds"/>): their claims go back
    /// now, and once more after <see cref="LateClaimsAfter"/>, as <see cref="AnswerLostAsync(long, Guid)"/> does.
    /// </summary>
    public async Task AnswerLostAsync(long workerId, (Guid First, Guid Last) calls)
    {
        await TryReleaseAsync(workerId, calls);
        _ = ReleaseLateClaimsAsync(workerId, calls);
    }

    private async Task ReleaseLateClaimsAsync(long workerId, (Guid First, Guid Last) calls)
    {
        await Task.Delay(LateClaimsAfter, time).ConfigureAwait(false);
        await TryReleaseAsync(workerId, calls).ConfigureAwait(false);
    }

    private async Task TryReleaseAsync(long workerId, (Guid First, Guid Last) calls)
    {
        try
        {
            var released = await ReleaseAsync(workerId, calls);
            if (released > 0) LogReleased(logger, released, workerId);
        }
        catch (Exception exception)
        {
            LogReleaseFailed(logger, workerId, exception.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Count} claims for a poll of worker {WorkerId} whose answer was lost given back")]
    private static partial void LogReleased(ILogger logger, int count, long workerId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not give back the claims for a lost poll of worker {WorkerId} (the claim lease will): {Reason}")]
    private static partial void LogReleaseFailed(ILogger logger, long workerId, string reason);
}
