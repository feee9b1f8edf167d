using System.Collections.Concurrent;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// What this silo saw of a job it claimed and started, so that its completion can sign the job's receipt without reading
/// the job first: the account and model from the claim, the claim's and the start's times, and each worker's name on
/// receipts. Only a hint: the completion statement completes a job with a receipt signed from these facts only if the row
/// still says the same (account, start, model, provider), and a job it does not complete that way is read and signed
/// again. A job claimed or started on another silo, or forgotten, is simply read.
/// </summary>
internal sealed class ReceiptFactsCache(System.Diagnostics.Metrics.Counter<long> taken)
{
    /// <summary>
    /// Most jobs remembered. Jobs that fail, time out or are cancelled are never completed here and would stay: past this
    /// many, everything is forgotten (their completions are read instead, which is only slower).
    /// </summary>
    internal const int Capacity = 50_000;

    private readonly ConcurrentDictionary<long, JobFacts> _jobs = new();
    private readonly ConcurrentDictionary<long, string> _providers = new();

    /// <summary>A job claimed by <paramref name="workerId"/> at <paramref name="claimedAt"/>.</summary>
    public void Claimed(long jobId, long accountId, long workerId, string? model, DateTimeOffset claimedAt)
    {
        if (_jobs.Count >= Capacity) _jobs.Clear();
        _jobs[jobId] = new JobFacts(accountId, workerId, model, AsStored(claimedAt), null);
    }

    /// <summary>The job's claim was given back: nothing of it is known any more.</summary>
    public void Forget(long jobId) => _jobs.TryRemove(jobId, out _);

    /// <summary>The job started at <paramref name="startedAt"/>, if it is remembered.</summary>
    public void Started(long jobId, DateTimeOffset startedAt)
    {
        if (_jobs.TryGetValue(jobId, out var facts)) _jobs.TryUpdate(jobId, facts with { StartedAt = AsStored(startedAt) }, facts);
    }

    /// <summary>Takes (and forgets) what is known of the job as <paramref name="workerId"/>'s, with that worker's receipt name.</summary>
    public bool TryTake(long jobId, long workerId, out JobFacts facts, out string provider)
    {
        provider = "";
        if (!_jobs.TryRemove(jobId, out facts!) || facts.WorkerId != workerId || !_providers.TryGetValue(workerId, out var name)) return false;
        provider = name;
        taken.Add(1);
        return true;
    }

    /// <summary>A worker's name on receipts, as the job rows last said.</summary>
    public void Provider(long workerId, string provider)
    {
        if (_providers.Count >= Capacity) _providers.Clear();
        _providers[workerId] = provider;
    }

    /// <summary>The time as PostgreSQL keeps it (whole microseconds), so that it compares equal with the row's.</summary>
    private static DateTime AsStored(DateTimeOffset time)
    {
        var ticks = time.UtcDateTime.Ticks;
        return new DateTime(ticks - ticks % 10, DateTimeKind.Utc);
    }

    /// <summary>A claimed job: its account, worker and requested model, when it was claimed and (once it is) started.</summary>
    internal sealed record JobFacts(long AccountId, long WorkerId, string? Model, DateTime ClaimedAt, DateTime? StartedAt);
}
