using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;

namespace Coordinator.Api.Jobs;

/// <summary>Where a pending job stands: the jobs ahead of it, when it may start, and what stands in its way.</summary>
/// <param name="Position">Dispatchable jobs ahead of it (<see cref="QueueCounts.JobsAheadAsync"/>): exact up to <see cref="QueueCounts.ExactUpTo"/>, an estimate above.</param>
/// <param name="EtaSeconds">Seconds until a worker takes it at the recent rate, or null when there is no rate to go on (or it is held).</param>
/// <param name="Warnings">What the client should know, e.g. <see cref="QueueStandings.NoOnlineWorker"/>.</param>
public sealed record QueueStanding(long Position, long? EtaSeconds, IReadOnlyList<string> Warnings);

/// <summary>Works out a pending job's <see cref="QueueStanding"/> for <c>GET /jobs/{id}</c>, and its warnings for <c>POST /jobs</c>.</summary>
public sealed class QueueStandings(QueueCounts counts, WorkerStore workers, Dispatchers dispatchers)
{
    /// <summary>The warning a pending job carries while no online worker would take it.</summary>
    public const string NoOnlineWorker = "no online worker serves this model";

    /// <summary>
    /// The warnings alone, or null when the job is not pending: what <c>POST /jobs</c> answers, so that a submission
    /// costs no statement beyond its own (the availability is cached per node).
    /// </summary>
    public async Task<IReadOnlyList<string>?> WarningsAsync(JobRow job, CancellationToken cancellationToken) =>
        job.Status != JobStatus.Pending ? null : WarningsFor(await workers.AvailabilityAsync(job.ModelMatch, job.Model, cancellationToken));

    /// <summary>The job's standing, or null when it is not pending (only a pending job has a place in the queue).</summary>
    public async Task<QueueStanding?> OfAsync(JobRow job, CancellationToken cancellationToken)
    {
        if (job.Status != JobStatus.Pending) return null;
        // Three independent reads: the index ranges ahead of the job, the cached availability, the dispatcher's rate. A held
        // job waits for its account's quota to reset, not for the queue: no rate says when that is, so none is asked.
        var ahead = counts.JobsAheadAsync(job.ModelMatch, job.Model, job.Priority, job.Id, cancellationToken);
        var availability = workers.AvailabilityAsync(job.ModelMatch, job.Model, cancellationToken);
        var rate = job.Held ? Task.FromResult(0d) : dispatchers.Of(DispatchKeys.Of(job.ModelMatch, job.Family)).ThroughputAsync(job.ModelMatch, job.Model);

        var position = await ahead;
        var perSecond = await rate;
        long? eta = perSecond <= 0 ? null : (long)Math.Ceiling((position + 1) / perSecond);
        return new QueueStanding(position, eta, WarningsFor(await availability));
    }

    private static IReadOnlyList<string> WarningsFor(ModelAvailability availability) =>
        availability == ModelAvailability.Online ? [] : [NoOnlineWorker];
}
