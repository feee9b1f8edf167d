using Coordinator.Grains.Jobs;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// How many jobs a dispatcher handed to workers over a sliding window, by the sets they left: the rate at which a
/// pending job of those sets moves forward. Counting a hand-out is an increment in a ring of time buckets (and a lookup
/// of its model); nothing is read or written elsewhere. Single-threaded: the grain uses it between awaits only.
/// </summary>
/// <remarks>
/// A job of model <c>m</c> leaves <c>m</c>'s set, and a family job also the family's set; so a pending exact job of
/// <c>m</c> moves with the exact and family jobs of <c>m</c> handed out, a family job with the exact jobs of <c>m</c> and
/// every family job of the family (each job counted once), a catch-all job with the catch-all jobs. The counts start
/// with the activation: a new activation knows the rate only from then on.
/// </remarks>
internal sealed class Throughput(TimeSpan window, DateTimeOffset since)
{
    /// <summary>The window is this many buckets; the oldest is dropped whole as time moves on.</summary>
    private const int Buckets = 30;

    private readonly long _bucketTicks = Math.Max(1, window.Ticks / Buckets);
    private readonly Dictionary<string, Ring> _exact = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Ring> _familyByModel = new(StringComparer.Ordinal);
    private readonly Ring _family = new();
    private readonly Ring _any = new();

    /// <summary>A job was handed to a worker.</summary>
    public void Count(string modelMatch, string? model, DateTimeOffset now)
    {
        var bucket = BucketOf(now);
        switch (modelMatch)
        {
            case ModelMatch.Any:
                _any.Add(bucket);
                break;
            case ModelMatch.Family:
                _family.Add(bucket);
                RingOf(_familyByModel, model!).Add(bucket);
                break;
            default:
                RingOf(_exact, model!).Add(bucket);
                break;
        }
    }

    /// <summary>Jobs per second handed out of the sets that serve a pending job of this match and model (see the remarks).</summary>
    public double PerSecond(string modelMatch, string? model, DateTimeOffset now)
    {
        var bucket = BucketOf(now);
        var count = modelMatch switch
        {
            ModelMatch.Any => _any.Sum(bucket),
            ModelMatch.Family => SumOf(_exact, model, bucket) + _family.Sum(bucket),
            _ => SumOf(_exact, model, bucket) + SumOf(_familyByModel, model, bucket),
        };
        return count / Covered(bucket, now).TotalSeconds;
    }

    /// <summary>Jobs per second handed out that named this model (exact and family jobs of it).</summary>
    public double ModelPerSecond(string model, DateTimeOffset now) => PerSecond(ModelMatch.Exact, model, now);

    private long BucketOf(DateTimeOffset now) => now.UtcTicks / _bucketTicks;

    // The time the counted buckets span: from the oldest one's start (or the activation, if later) to now, and never
    // less than a bucket, so that a job or two handed out in the first moments do not make a rate of hundreds a second.
    private TimeSpan Covered(long bucket, DateTimeOffset now)
    {
        var oldest = new DateTimeOffset((bucket - Buckets + 1) * _bucketTicks, TimeSpan.Zero);
        var from = oldest > since ? oldest : since;
        var covered = now - from;
        var floor = TimeSpan.FromTicks(_bucketTicks);
        return covered > floor ? covered : floor;
    }

    private static Ring RingOf(Dictionary<string, Ring> rings, string model)
    {
        if (!rings.TryGetValue(model, out var ring)) rings[model] = ring = new Ring();
        return ring;
    }

    private static long SumOf(Dictionary<string, Ring> rings, string? model, long bucket) =>
        model is not null && rings.TryGetValue(model, out var ring) ? ring.Sum(bucket) : 0;

    /// <summary>Counts per bucket for the last <see cref="Buckets"/> buckets; a slot holds the count of the bucket it last saw.</summary>
    private sealed class Ring
    {
        private readonly long[] _counts = new long[Buckets];
        private readonly long[] _buckets = new long[Buckets];

        public void Add(long bucket)
        {
            var slot = (int)(bucket % Buckets);
            if (_buckets[slot] != bucket)
            {
                _buckets[slot] = bucket;
                _counts[slot] = 0;
            }
            _counts[slot]++;
        }

        public long Sum(long bucket)
        {
            long sum = 0;
            for (var slot = 0; slot < Buckets; slot++)
            {
                if (_buckets[slot] > bucket - Buckets && _buckets[slot] <= bucket) sum += _counts[slot];
            }
            return sum;
        }
    }
}
