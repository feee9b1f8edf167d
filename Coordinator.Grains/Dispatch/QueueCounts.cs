using System.Collections.Concurrent;
using Coordinator.Grains.Jobs;
using Dapper;
using Npgsql;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// How many dispatchable jobs rank ahead of a pending job for the workers that can take it, and how many a model has
/// queued, read from the dispatch indexes. Exact up to <see cref="ExactUpTo"/>; above that an estimate, never below
/// <see cref="ExactUpTo"/> + 1.
/// </summary>
/// <remarks>
/// <para>
/// <b>What is ahead.</b> A pending job J is in one or two of its dispatcher's sets, each the slice of a dispatch index
/// that some workers take from in fetch order (priority DESC, id): an exact job is in its model's set (the exact and
/// family jobs of the model, <c>jobs_dispatch_model</c>), a family job also in its family's set (the family jobs of every
/// model of the family, <c>jobs_dispatch_family</c>), a catch-all job in the catch-all set (<c>jobs_dispatch_any</c>).
/// The jobs ahead of J are the dispatchable jobs of J's sets that rank before it, each counted once. Jobs that a worker
/// able to take J may also take from other sets (another model it declares) are not counted: they compete for the
/// worker, not for J's place.
/// </para>
/// <para>
/// <b>Exact while small.</b> One statement reads the ids of each set's index range before J (the priorities above J's,
/// then J's own priority up to J's id) with <c>LIMIT 1001</c>, from the index alone: if every range held at most
/// <see cref="ExactUpTo"/> entries, the count is exact. For a family job, the family jobs of its model are in both
/// ranges: they are the ids the two reads share, counted once.
/// </para>
/// <para>
/// <b>An estimate above.</b> For a range that held more, the same statement walks its priority levels from J's upwards
/// (one index probe each, at most <see cref="MaxLevels"/>; higher ones are left out) and reads <see cref="Window"/>
/// entries at each end of each level (a family job's model range looks up each of those rows, to count only the exact
/// jobs). A level that fits in its two windows is counted exactly. Otherwise the entries between the windows are
/// interpolated from the windows' density in id space: ids grow with submission time across the whole grid, and a set
/// is served in order within a level, so its pending jobs of a level are its submissions since the oldest of them, and
/// the density is the set's share of the grid's submissions. The estimate is exact when that share was steady; when it
/// changed while the backlog built up, the estimate is off by about the ratio of the windows' share to the mean one.
/// </para>
/// <para>
/// <b>Estimates are kept a moment.</b> A client waiting on a job deep in the queue asks for it again and again; a silo
/// keeps an estimate for <see cref="EstimateCacheDuration"/> (an exact count is read afresh every time), so a thousand
/// such clients polling every second cost a statement each every two seconds, not every second. The levels above a
/// priority are the same for every job of the sets at that priority, so their sum is kept as long, per match, model and
/// priority, once it is well past the bound (over twice <see cref="ExactUpTo"/>, so that no job it is used for could
/// have an exact count): another job there then costs only the windows of its own level
/// (<c>@estimateOnly</c> skips the bounded read and the walk).
/// </para>
/// <para>
/// Every read is a range of a dispatch index that needs nothing but the index (or, for a window's look at its rows, a
/// primary-key probe per row), so the generic plan cannot prefer the primary key: read in id order with a filter, which
/// orders rows alike once the priority is fixed, it would have to visit every row of the table it passes.
/// </para>
/// </remarks>
public sealed class QueueCounts(NpgsqlDataSource dataSource, TimeProvider time)
{
    /// <summary>How long a silo keeps an estimate (a count above <see cref="ExactUpTo"/>) of the jobs ahead of a job.</summary>
    public static readonly TimeSpan EstimateCacheDuration = TimeSpan.FromSeconds(2);

    private const int MaxCachedEstimates = 10_000;

    private readonly ConcurrentDictionary<(string ModelMatch, string? Model, int Priority, long Id), (long Count, DateTimeOffset Expires)> _estimates = new();

    // The estimated jobs of the levels above a priority, summed over the job's sets, when every set overflowed.
    private readonly ConcurrentDictionary<(string ModelMatch, string? Model, int Priority), (long Count, DateTimeOffset Expires)> _levelsAbove = new();

    /// <summary>Counts up to this are exact.</summary>
    public const int ExactUpTo = 1000;

    /// <summary>Entries read at each end of a priority level for an estimate.</summary>
    internal const int Window = 64;

    /// <summary>Priority levels an estimate walks, from the job's own upwards.</summary>
    internal const int MaxLevels = 32;

    /// <summary>
    /// One dispatch index range: its rows (the index's predicate and key); how many of the ids read before J count
    /// (an aggregate over <c>read_N</c>); and whether an entry of a window counts.
    /// </summary>
    private sealed record Slice(string Range, string ExactCount, string WindowCounted);

    private const string ModelRange = "j.status = 'pending' AND NOT j.held AND j.model_match <> 'any' AND j.model = @model";

    private static readonly Slice ModelSlice = new(ModelRange, "count(*)", "true");

    // For a family job, its model's range counts only the exact jobs: its family jobs are in the family's range too. The
    // exact read finds them as the ids in both ranges (when both were read whole, that is exact), so it reads no row; a
    // window looks at each of its rows instead.
    private static readonly Slice ModelExactJobsSlice = new(ModelRange,
        "count(*) - (SELECT count(*) FROM read_0 a JOIN read_1 b ON b.id = a.id)",
        "(SELECT k.model_match = 'exact' FROM jobs k WHERE k.id = j.id)");

    private static readonly Slice FamilySlice = new("j.status = 'pending' AND NOT j.held AND j.model_match = 'family' AND j.family = @family", "count(*)", "true");
    private static readonly Slice AnySlice = new("j.status = 'pending' AND NOT j.held AND j.model_match = 'any'", "count(*)", "true");

    private static readonly string ExactJobSql = Statement([ModelSlice]);
    private static readonly string FamilyJobSql = Statement([ModelExactJobsSlice, FamilySlice]);
    private static readonly string AnyJobSql = Statement([AnySlice]);

    /// <summary>
    /// Dispatchable jobs that rank before a job of this match, model, priority and id for the workers that can take it
    /// (see the remarks). The job itself need not be dispatchable.
    /// </summary>
    public async Task<long> JobsAheadAsync(string modelMatch, string? model, int priority, long id, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var key = (modelMatch, model, priority, id);
        if (_estimates.TryGetValue(key, out var kept) && kept.Expires > now) return kept.Count;
        var sql = modelMatch switch
        {
            ModelMatch.Exact => ExactJobSql,
            ModelMatch.Family => FamilyJobSql,
            _ => AnyJobSql,
        };
        var family = model is null ? null : ModelNames.FamilyOf(model);
        var levelsKey = (modelMatch, model, priority);
        var estimateOnly = _levelsAbove.TryGetValue(levelsKey, out var above) && above.Expires > now;
        List<RangeRead> rows;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            rows = (await connection.QueryAsync<RangeRead>(new CommandDefinition(sql, new { model, family, priority, id, estimateOnly },
                cancellationToken: cancellationToken))).AsList();
        }
        long total;
        if (estimateOnly)
        {
            // The rows are the job's own level in each set.
            total = Math.Max(above.Count + rows.Where(row => row.Level is not null).Sum(EstimateLevel), ExactUpTo + 1);
        }
        else
        {
            total = Total(rows);
            if (LevelsAbove(rows, priority) is { } levelsAbove && levelsAbove > 2 * ExactUpTo)
            {
                if (_levelsAbove.Count > MaxCachedEstimates) _levelsAbove.Clear();
                _levelsAbove[levelsKey] = (levelsAbove, now + EstimateCacheDuration);
            }
        }
        if (total > ExactUpTo)
        {
            if (_estimates.Count > MaxCachedEstimates) _estimates.Clear();
            _estimates[key] = (total, now + EstimateCacheDuration);
        }
        return total;
    }

    /// <summary>The estimated jobs of the levels above <paramref name="priority"/> in all the job's sets, or null unless every set overflowed.</summary>
    private static long? LevelsAbove(List<RangeRead> rows, int priority)
    {
        long sum = 0;
        foreach (var slice in rows.GroupBy(row => row.Slice))
        {
            if (slice.First().Read <= ExactUpTo) return null;
            sum += slice.Where(row => row.Level is { } level && level != priority).Sum(EstimateLevel);
        }
        return sum;
    }

    /// <summary>Dispatchable jobs that name this model (exact and family jobs of it): what its workers have queued.</summary>
    public Task<long> DepthAsync(string model, CancellationToken cancellationToken = default) =>
        // Ahead of a job below every priority: the whole set.
        JobsAheadAsync(ModelMatch.Exact, model, int.MinValue, 0, cancellationToken);

    /// <summary>
    /// <see cref="DepthAsync"/> for several models: one bounded count each in one statement, and the estimate for those
    /// over <see cref="ExactUpTo"/>.
    /// </summary>
    public async Task<IReadOnlyList<long>> DepthsAsync(IReadOnlyList<string> models, CancellationToken cancellationToken = default)
    {
        if (models.Count == 0) return [];
        long[] depths;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            var rows = await connection.QueryAsync<long>(new CommandDefinition($"""
                SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs j WHERE {ModelRange.Replace("@model", "m.model", StringComparison.Ordinal)}
                                              ORDER BY j.priority DESC, j.id LIMIT {ExactUpTo + 1}) x)
                FROM unnest(@models) WITH ORDINALITY AS m (model, n)
                ORDER BY m.n
                """, new { models = models.ToArray() }, cancellationToken: cancellationToken));
            depths = rows.ToArray();
        }
        for (var i = 0; i < depths.Length; i++)
        {
            if (depths[i] > ExactUpTo) depths[i] = await DepthAsync(models[i], cancellationToken);
        }
        return depths;
    }

    /// <summary>
    /// The statement for a job whose sets are <paramref name="slices"/>: per slice, one row with the bounded count, or
    /// when that overflowed, one row per priority level with the windows read at its ends.
    /// </summary>
    private static string Statement(IReadOnlyList<Slice> slices)
    {
        var ctes = new List<string>();
        var selects = new List<string>();
        for (var i = 0; i < slices.Count; i++)
        {
            var (range, exactCount, windowCounted) = slices[i];
            // The level's bound: J's id on J's own priority, none above it.
            const string LevelBound = "CASE WHEN l.priority = @priority THEN @id ELSE 9223372036854775807 END";
            ctes.Add($"""
                read_{i} AS (
                    (SELECT j.id FROM jobs j WHERE NOT @estimateOnly AND {range} AND j.priority > @priority ORDER BY j.priority DESC, j.id LIMIT {ExactUpTo + 1})
                    UNION ALL
                    (SELECT j.id FROM jobs j WHERE NOT @estimateOnly AND {range} AND j.priority = @priority AND j.id < @id ORDER BY j.priority DESC, j.id LIMIT {ExactUpTo + 1})
                    LIMIT {ExactUpTo + 1}
                ),
                exact_{i} AS (SELECT count(*) AS read, {exactCount} AS counted FROM read_{i}),
                level_{i} (priority, depth) AS (
                    SELECT @priority, 1 FROM exact_{i} WHERE read > {ExactUpTo} OR @estimateOnly
                    UNION ALL
                    SELECT (SELECT j.priority FROM jobs j WHERE {range} AND j.priority > l.priority ORDER BY j.priority, j.id DESC LIMIT 1), l.depth + 1
                    FROM level_{i} l WHERE l.priority IS NOT NULL AND l.depth < {MaxLevels} AND NOT @estimateOnly
                )
                """);
            selects.Add($"""
                SELECT {i} AS slice, e.read, e.counted, w.*
                FROM exact_{i} e LEFT JOIN LATERAL (
                    SELECT l.priority AS level, f.*, b.*
                    FROM level_{i} l
                    CROSS JOIN LATERAL (
                        SELECT count(*) AS front_read, count(*) FILTER (WHERE x.counted) AS front_counted, min(x.id) AS front_first, max(x.id) AS front_last
                        FROM (SELECT j.id, {windowCounted} AS counted FROM jobs j
                              WHERE {range} AND j.priority = l.priority AND j.id < {LevelBound}
                              ORDER BY j.priority DESC, j.id LIMIT {Window}) x
                    ) f
                    CROSS JOIN LATERAL (
                        SELECT count(*) AS back_read, count(*) FILTER (WHERE x.counted) AS back_counted,
                               count(*) FILTER (WHERE x.counted AND x.id > f.front_last) AS back_counted_after_front,
                               min(x.id) AS back_first, max(x.id) AS back_last
                        FROM (SELECT j.id, {windowCounted} AS counted FROM jobs j
                              WHERE {range} AND j.priority = l.priority AND j.id < {LevelBound}
                              ORDER BY j.priority, j.id DESC LIMIT {Window}) x
                    ) b
                    WHERE l.priority IS NOT NULL
                ) w ON true
                """);
        }
        return "WITH RECURSIVE\n" + string.Join(",\n", ctes) + "\n" + string.Join("\nUNION ALL\n", selects);
    }

    /// <summary>The jobs ahead from a statement's rows: exact sums, estimated levels where a range overflowed.</summary>
    private static long Total(IReadOnlyList<RangeRead> rows)
    {
        long total = 0;
        var estimated = false;
        foreach (var slice in rows.GroupBy(row => row.Slice))
        {
            var first = slice.First();
            if (first.Read <= ExactUpTo)
            {
                total += first.Counted;
                continue;
            }
            estimated = true;
            total += slice.Where(row => row.Level is not null).Sum(EstimateLevel);
        }
        // A range that overflowed holds more than ExactUpTo of J's competitors (for a family job's model range, its
        // exact jobs plus the family jobs also in the family's range): the estimate never says less.
        return estimated ? Math.Max(total, ExactUpTo + 1) : total;
    }

    /// <summary>The counted jobs of one priority level, from the windows read at its two ends.</summary>
    internal static long EstimateLevel(RangeRead level)
    {
        // The level fits in the front window: counted whole.
        if (level.FrontRead < Window) return level.FrontCounted;
        var (frontFirst, frontLast, backFirst, backLast) = (level.FrontFirst!.Value, level.FrontLast!.Value, level.BackFirst!.Value, level.BackLast!.Value);
        // The windows meet: every entry is in one of them.
        if (backFirst <= frontLast) return level.FrontCounted + level.BackCountedAfterFront;
        var spanned = (frontLast - frontFirst + 1) + (backLast - backFirst + 1);
        var density = (double)(level.FrontCounted + level.BackCounted) / spanned;
        var between = backFirst - frontLast - 1;
        return level.FrontCounted + level.BackCounted + (long)Math.Round(density * between);
    }

    /// <summary>One row of the statement: a range's bounded count, and, when it overflowed, one priority level's windows.</summary>
    internal sealed class RangeRead
    {
        public int Slice { get; init; }
        public long Read { get; init; }
        public long Counted { get; init; }
        public int? Level { get; init; }
        public long FrontRead { get; init; }
        public long FrontCounted { get; init; }
        public long? FrontFirst { get; init; }
        public long? FrontLast { get; init; }
        public long BackRead { get; init; }
        public long BackCounted { get; init; }
        public long BackCountedAfterFront { get; init; }
        public long? BackFirst { get; init; }
        public long? BackLast { get; init; }
    }
}
