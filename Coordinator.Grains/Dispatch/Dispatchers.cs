using Microsoft.Extensions.Logging;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Tells the dispatchers of the families concerned what a statement elsewhere changed in the jobs table: jobs that
/// became dispatchable (requeued, released from a hold, retried) or stopped being so (cancelled, held). A notice that
/// cannot be delivered is logged and dropped: the table is the record, a stale entry fails its claim, and a dispatcher
/// reads the table again for polls that wait on an empty set (<see cref="DispatchOptions.RescanInterval"/>).
/// </summary>
public sealed partial class Dispatchers(IGrainFactory grains, ILogger<Dispatchers> logger)
{
    /// <summary>More jobs than this for one dispatcher and it reads the table again instead of being sent them.</summary>
    public const int ResetAbove = 10_000;

    public IDispatcherGrain Of(string key) => grains.GetGrain<IDispatcherGrain>(key);

    public Task AddAsync(IEnumerable<QueuedJob> jobs) => EachAsync(jobs, (dispatcher, group) =>
        group.Count > ResetAbove ? dispatcher.ResetAsync() : dispatcher.AddAsync(group));

    public Task RemoveAsync(IEnumerable<QueuedJob> jobs) => EachAsync(jobs, (dispatcher, group) =>
        dispatcher.RemoveAsync(group.Select(job => job.Id).ToList()));

    /// <summary>An account's pending jobs in these dispatchers are held now.</summary>
    public Task DropAccountAsync(long accountId, IEnumerable<string> keys) =>
        Task.WhenAll(keys.Distinct(StringComparer.Ordinal).Select(key => TryAsync(key, Of(key).DropAccountAsync(accountId))));

    private Task EachAsync(IEnumerable<QueuedJob> jobs, Func<IDispatcherGrain, IReadOnlyList<QueuedJob>, Task> send) =>
        Task.WhenAll(jobs.GroupBy(job => job.DispatcherKey, StringComparer.Ordinal)
            .Select(group => TryAsync(group.Key, send(Of(group.Key), group.ToList()))));

    private async Task TryAsync(string key, Task call)
    {
        try
        {
            await call;
        }
        catch (Exception exception)
        {
            LogNoticeFailed(logger, key, exception.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not tell the dispatcher of {Family} of a change (its backstop read will find it): {Reason}")]
    private static partial void LogNoticeFailed(ILogger logger, string family, string reason);
}
