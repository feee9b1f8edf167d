using System.Diagnostics.Metrics;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Coordinator.Grains.Telemetry;

/// <summary>
/// The grid's pending jobs and the age of the oldest, by dispatcher family, as the gauges <c>coordinator.jobs.pending</c>
/// and <c>coordinator.jobs.oldest_pending_age</c>. The dispatchers hold only the head of each queue, so these come from
/// the table: one statement over the dispatch indexes, at most every <see cref="ReadInterval"/>, started by a scrape that
/// finds the last answer older than that and answered by the next one (a scrape never waits for the database).
/// </summary>
/// <remarks>Every silo reports the same cluster-wide values: aggregate them with max, not sum.</remarks>
public sealed partial class PendingJobsGauges
{
    /// <summary>How old the last read may be before a scrape starts another.</summary>
    public static readonly TimeSpan ReadInterval = TimeSpan.FromSeconds(15);

    private readonly NpgsqlDataSource _dataSource;
    private readonly TimeProvider _time;
    private readonly CoordinatorMetrics _metrics;
    private readonly ILogger<PendingJobsGauges> _logger;
    private readonly Lock _lock = new();
    private IReadOnlyList<(string Family, long Pending, DateTimeOffset Oldest)> _last = [];
    private DateTimeOffset _readAt = DateTimeOffset.MinValue;
    private Task? _reading;

    public PendingJobsGauges(IMeterFactory meters, NpgsqlDataSource dataSource, TimeProvider time, CoordinatorMetrics metrics, ILogger<PendingJobsGauges> logger)
    {
        _dataSource = dataSource;
        _time = time;
        _metrics = metrics;
        _logger = logger;
#pragma warning disable CA2000 // the factory owns its meters and disposes them with the container
        var meter = meters.Create(CoordinatorMetrics.MeterName);
#pragma warning restore CA2000
        meter.CreateObservableGauge("coordinator.jobs.pending", () => Observe().Select(f => new Measurement<long>(f.Pending, _metrics.FamilyTag(f.Family))),
            unit: "{job}", description: "Dispatchable (pending, not held) jobs in the grid, by family (\"any\": jobs any worker may take); read at most every 15 s.");
        meter.CreateObservableGauge("coordinator.jobs.oldest_pending_age",
            () => Observe().Select(f => new Measurement<double>(Math.Max(0, (_time.GetUtcNow() - f.Oldest).TotalSeconds), _metrics.FamilyTag(f.Family))),
            unit: "s", description: "Age of the oldest dispatchable job in the grid, by family; read at most every 15 s.");
    }

    private IReadOnlyList<(string Family, long Pending, DateTimeOffset Oldest)> Observe()
    {
        lock (_lock)
        {
            if (_reading is null && _time.GetUtcNow() - _readAt >= ReadInterval) _reading = ReadAsync();
            return _last;
        }
    }

    /// <summary>Reads the counts now (the next scrape reports them).</summary>
    public async Task ReadAsync()
    {
        try
        {
            await Task.Yield();
            await using var connection = await _dataSource.OpenConnectionAsync();
            // Each branch is a range of a dispatch index (jobs_dispatch_model, jobs_dispatch_any); the oldest job of each
            // model is the one with the lowest id (ids grow with submission time), looked up by primary key.
            var rows = await connection.QueryAsync<(string? Model, long Pending, DateTime Oldest)>("""
                WITH counted AS (
                    SELECT model, count(*) AS pending, min(id) AS oldest_id FROM jobs
                    WHERE status = 'pending' AND NOT held AND model_match <> 'any' GROUP BY model
                    UNION ALL
                    SELECT NULL, count(*), min(id) FROM jobs
                    WHERE status = 'pending' AND NOT held AND model_match = 'any' HAVING count(*) > 0
                )
                SELECT c.model, c.pending, j.created_at FROM counted c JOIN jobs j ON j.id = c.oldest_id
                """);
            var families = rows
                .GroupBy(row => row.Model is null ? CoordinatorMetrics.AnyFamily : ModelNames.FamilyOf(row.Model), StringComparer.Ordinal)
                .Select(family => (family.Key, family.Sum(row => row.Pending), new DateTimeOffset(family.Min(row => row.Oldest), TimeSpan.Zero)))
                .ToList();
            lock (_lock) _last = families;
        }
        catch (Exception exception) when (exception is NpgsqlException or TimeoutException)
        {
            LogReadFailed(_logger, exception);
        }
        finally
        {
            lock (_lock)
            {
                _readAt = _time.GetUtcNow();
                _reading = null;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not read the pending jobs for the queue gauges; the last values stand")]
    private static partial void LogReadFailed(ILogger logger, Exception exception);
}
