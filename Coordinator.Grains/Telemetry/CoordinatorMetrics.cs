using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Coordinator.Grains.Telemetry;

/// <summary>
/// The coordinator's instruments (meter <see cref="MeterName"/>), created once per silo. Tags are bounded: a job's model
/// is reported as its family through <see cref="FamilyTag"/>, never as the free-form model name, and no job id, key,
/// account or prompt is ever a tag.
/// </summary>
public sealed class CoordinatorMetrics
{
    /// <summary>The one meter of the coordinator's own instruments.</summary>
    public const string MeterName = "Coordinator";

    /// <summary>The tag value of jobs for any model (no model named) and of the catch-all dispatcher.</summary>
    public const string AnyFamily = "any";

    /// <summary>The tag value of every family past <see cref="MaxFamilies"/>, and of families too long to be a model's.</summary>
    public const string OtherFamily = "other";

    /// <summary>Distinct family tag values one silo reports before it reports the rest as <see cref="OtherFamily"/>.</summary>
    public const int MaxFamilies = 100;

    /// <summary>A family longer than this is reported as <see cref="OtherFamily"/>.</summary>
    public const int MaxFamilyLength = 64;

    private readonly ConcurrentDictionary<string, string> _families = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Func<(int Queued, int Parked)>> _dispatchers = new(StringComparer.Ordinal);

    public CoordinatorMetrics(IMeterFactory meters)
    {
#pragma warning disable CA2000 // the factory owns its meters and disposes them with the container
        var meter = meters.Create(MeterName);
#pragma warning restore CA2000
        JobsSubmitted = meter.CreateCounter<long>("coordinator.jobs.submitted", unit: "{job}",
            description: "Jobs inserted (an idempotent replay is not counted), by family.");
        JobsCompleted = meter.CreateCounter<long>("coordinator.jobs.completed", unit: "{job}",
            description: "Jobs a worker completed, by family.");
        JobsFailed = meter.CreateCounter<long>("coordinator.jobs.failed", unit: "{job}",
            description: "Jobs a worker reported failed, by family.");
        DispatchLatency = meter.CreateHistogram<double>("coordinator.jobs.dispatch_latency", unit: "s",
            description: "From a job's submission to its first claim by a worker, by family.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        TimeToFirstToken = meter.CreateHistogram<double>("coordinator.jobs.time_to_first_token", unit: "s",
            description: "From a job's submission to the first chunk its worker streamed, by family.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        WebhookAttempts = meter.CreateCounter<long>("coordinator.webhooks.attempts", unit: "{attempt}",
            description: "Webhook delivery attempts, by outcome: delivered, retry (it will be tried again) or failed (given up).");
        QuotaHolds = meter.CreateCounter<long>("coordinator.quota.holds", unit: "{account}",
            description: "Accounts whose daily quota ran out, holding their pending jobs.");
        JobsHeld = meter.CreateCounter<long>("coordinator.quota.jobs_held", unit: "{job}",
            description: "Pending jobs held because their account's quota ran out.");
        ReceiptFactsTaken = meter.CreateCounter<long>("coordinator.receipts.signed_from_memory", unit: "{receipt}",
            description: "Completions that signed their receipt from what this silo remembered of the claim, without reading the job first (whether or not the row still agreed).");
        meter.CreateObservableGauge("coordinator.dispatch.queued_jobs", () => ObserveDispatchers(queued: true), unit: "{job}",
            description: "Dispatchable jobs a dispatcher of this silo holds in memory (at most Dispatch:QueueHead per set), by family.");
        meter.CreateObservableGauge("coordinator.dispatch.parked_polls", () => ObserveDispatchers(queued: false), unit: "{poll}",
            description: "Worker polls parked on a dispatcher of this silo, by family.");
    }

    /// <summary>Bucket bounds (seconds) of the latency histograms: 5 ms to 10 minutes.</summary>
    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

    public Counter<long> JobsSubmitted { get; }

    public Counter<long> JobsCompleted { get; }

    public Counter<long> JobsFailed { get; }

    public Histogram<double> DispatchLatency { get; }

    public Histogram<double> TimeToFirstToken { get; }

    public Counter<long> WebhookAttempts { get; }

    public Counter<long> QuotaHolds { get; }

    public Counter<long> JobsHeld { get; }

    public Counter<long> ReceiptFactsTaken { get; }

    /// <summary>
    /// The <c>family</c> tag of a job or dispatcher: <see cref="AnyFamily"/> for none; the family itself for the first
    /// <see cref="MaxFamilies"/> distinct families this silo has seen; <see cref="OtherFamily"/> after that (and for a
    /// name longer than <see cref="MaxFamilyLength"/>). Clients name models freely, so this caps what they can add to
    /// a metrics store: at most <see cref="MaxFamilies"/> + 2 values per silo.
    /// </summary>
    public KeyValuePair<string, object?> FamilyTag(string? family)
    {
        if (string.IsNullOrEmpty(family) || family == Dispatch.DispatchKeys.Any) return new("family", AnyFamily);
        if (family.Length > MaxFamilyLength) return new("family", OtherFamily);
        if (_families.TryGetValue(family, out var known)) return new("family", known);
        // A race past the limit may admit a few more: the bound is approximate by that many, never unbounded.
        var value = _families.Count < MaxFamilies ? family : OtherFamily;
        return new("family", _families.GetOrAdd(family, value));
    }

    /// <summary>The <c>family</c> tag of a model name (see <see cref="FamilyTag"/>).</summary>
    public KeyValuePair<string, object?> ModelFamilyTag(string? model) => FamilyTag(model is null ? null : ModelNames.FamilyOf(model));

    /// <summary>A dispatcher activation of this silo reports what it holds through <paramref name="read"/> until <see cref="Untrack"/>.</summary>
    public void Track(string dispatcherKey, Func<(int Queued, int Parked)> read) => _dispatchers[dispatcherKey] = read;

    /// <summary>The activation that reported through <paramref name="read"/> is going away.</summary>
    public void Untrack(string dispatcherKey, Func<(int Queued, int Parked)> read) =>
        _dispatchers.TryRemove(new KeyValuePair<string, Func<(int Queued, int Parked)>>(dispatcherKey, read));

    // Reads the dispatchers' counts without a grain call: two integers each, read from the scrape's thread (at worst a
    // moment stale, never torn). Families that fall into "other" are summed.
    private IEnumerable<Measurement<int>> ObserveDispatchers(bool queued)
    {
        var sums = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (key, read) in _dispatchers)
        {
            var (queuedJobs, parkedPolls) = read();
            var family = (string)FamilyTag(key).Value!;
            sums[family] = sums.GetValueOrDefault(family) + (queued ? queuedJobs : parkedPolls);
        }
        return sums.Select(sum => new Measurement<int>(sum.Value, new KeyValuePair<string, object?>("family", sum.Key)));
    }
}
