using System.Collections.Concurrent;
using Coordinator.Grains.Dispatch;
using Dapper;
using Npgsql;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// The hot worker transitions, group-committed (see <see cref="Batcher{TItem,TResult}"/>): concurrent claims with the
/// same capabilities, starts and results each run as one statement per batch instead of one per job. A batch of one
/// is the plain single-job statement, so nothing waits for company.
/// </summary>
public sealed partial class JobStore
{
    /// <summary>Largest batch of one statement.</summary>
    internal const int MaxBatch = 500;

    /// <summary>Batches of one kind in flight at once, so that one slow commit does not stall every caller.</summary>
    internal const int BatchesInFlight = 2;

    private readonly ConcurrentDictionary<string, Batcher<long, ClaimedJob?>> _claims = new(StringComparer.Ordinal);
    private Batcher<(long AccountId, NewJob Job, ParkedPoll? HandTo), Outcome<JobRow>>? _submits;

    /// <summary>Largest lease, and most leases in one statement: at most 1,600 jobs a statement.</summary>
    public const int MaxLease = 100;

    private const int LeasesPerBatch = 16;

    private const int LeasesInFlight = 1;

    private readonly ConcurrentDictionary<string, Batcher<(long, int), IReadOnlyList<ClaimedJob>>> _leases = new(StringComparer.Ordinal);

    /// <summary>Claim batchers alive now (one per capability set with claims queued or running).</summary>
    internal int ClaimBatchers => _claims.Count;

    private Batcher<(long WorkerId, long JobId), bool>? _starts;
    private Batcher<(long WorkerId, long JobId, JobResult Result), bool>? _results;

    private Batcher<(long AccountId, NewJob Job, ParkedPoll? HandTo), Outcome<JobRow>> Submits =>
        LazyInitializer.EnsureInitialized(ref _submits, () => new(SubmitBatchAsync, MaxBatch, BatchesInFlight));

    private Batcher<(long WorkerId, long JobId), bool> Starts =>
        LazyInitializer.EnsureInitialized(ref _starts, () => new(StartBatchAsync, MaxBatch, BatchesInFlight));

    private Batcher<(long WorkerId, long JobId, JobResult Result), bool> Results =>
        LazyInitializer.EnsureInitialized(ref _results, () => new(CompleteBatchAsync, MaxBatch, BatchesInFlight));

    /// <summary>
    /// Claims through the batcher of this capability set: only polls that could take the same jobs share a statement.
    /// </summary>
    private Task<ClaimedJob?> ClaimBatchedAsync(long workerId, Capabilities capabilities, CancellationToken cancellationToken) =>
        RunPerCapabilitiesAsync(_claims, capabilities, workerId,
            () => new Batcher<long, ClaimedJob?>(workers => ClaimBatchAsync(workers, capabilities), MaxBatch, BatchesInFlight), cancellationToken);

    /// <summary>
    /// Leases through the lease batcher of this capability set, as claims go through theirs: concurrent consumers'
    /// leases run as one statement, so they do not skip past each other's locked rows at the head of the index. For the
    /// same reason one lease statement runs at a time per capability set (claims allow two): with two, the second
    /// stepped over the first's locked rows, reading 544 index entries to lock 32 in the drain benchmark.
    /// </summary>
    private Task<IReadOnlyList<ClaimedJob>> LeaseBatchedAsync(long workerId, Capabilities capabilities, int max) =>
        RunPerCapabilitiesAsync(_leases, capabilities, (workerId, max),
            () => new Batcher<(long, int), IReadOnlyList<ClaimedJob>>(leases => LeaseBatchAsync(leases, capabilities), LeasesPerBatch, LeasesInFlight),
            CancellationToken.None);

    /// <summary>
    /// Runs an item through the batcher kept for its capability set. A batcher left idle is dropped, so worker-chosen
    /// capability sets cannot pile up in memory; a caller still holding a dropped one is unaffected (it just does not
    /// share with newcomers).
    /// </summary>
    private static async Task<TResult> RunPerCapabilitiesAsync<TItem, TResult>(ConcurrentDictionary<string, Batcher<TItem, TResult>> batchers,
        Capabilities capabilities, TItem item, Func<Batcher<TItem, TResult>> create, CancellationToken cancellationToken)
    {
        var key = string.Join('\n', capabilities.Models) + "\n\n" + string.Join('\n', capabilities.Families) + (capabilities.CatchAll ? "\n\n*" : "");
        var batcher = batchers.GetOrAdd(key, _ => create());
        try
        {
            return await batcher.RunAsync(item, cancellationToken);
        }
        finally
        {
            if (batcher.IsIdle) batchers.TryRemove(KeyValuePair.Create(key, batcher));
        }
    }

    /// <summary>Claims and starts jobs for a batch of leases in one statement: each lease's slots are consecutive, so the first lease gets the best jobs.</summary>
    private async Task<IReadOnlyList<IReadOnlyList<ClaimedJob>>> LeaseBatchAsync(IReadOnlyList<(long WorkerId, int Max)> leases, Capabilities capabilities)
    {
        var owner = leases.SelectMany((lease, i) => Enumerable.Repeat(i, lease.Max)).ToArray();
        var claimed = await ClaimBatchAsync(owner.Select(i => leases[i].WorkerId).ToArray(), capabilities, start: true);
        var taken = leases.Select(_ => new List<ClaimedJob>()).ToArray();
        for (var slot = 0; slot < owner.Length; slot++)
        {
            if (claimed[slot] is { } job) taken[owner[slot]].Add(job);
        }
        return taken;
    }

    /// <summary>
    /// Inserts a batch of submissions in one transaction: each keeps its own statement (plan priority, held when
    /// exhausted, the signing-key copy, a hand-off), but they share one commit. If any of them fails, the transaction
    /// is rolled back and each is inserted on its own, so one bad submission fails only its own caller. A submission whose
    /// idempotency key was used with another request inserts nothing and fails only its caller, without a rollback.
    /// </summary>
    /// <remarks>
    /// Every poll reserved for a hand-off is resolved here, once its job's insert has committed or failed, and not by
    /// the caller: a caller that stops waiting must not leave a job claimed for a poll that never hears of it.
    /// </remarks>
    internal async Task<IReadOnlyList<Outcome<JobRow>>> SubmitBatchAsync(IReadOnlyList<(long AccountId, NewJob Job, ParkedPoll? HandTo)> items)
    {
        var inserted = new Inserted?[items.Count];
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            if (items.Count > 1)
            {
                try
                {
                    await using var transaction = await connection.BeginTransactionAsync();
                    for (var i = 0; i < items.Count; i++) inserted[i] = await InsertAsync(connection, transaction, items[i].AccountId, items[i].Job, items[i].HandTo);
                    await transaction.CommitAsync();
                    return await HandOverAsync(items, inserted, null);
                }
                catch (Exception) when (connection.State == System.Data.ConnectionState.Open)
                {
                    // Fall through: one at a time.
                    Array.Clear(inserted);
                }
            }
            var errors = new Exception?[items.Count];
            for (var i = 0; i < items.Count; i++)
            {
                try
                {
                    inserted[i] = await InsertAsync(connection, null, items[i].AccountId, items[i].Job, items[i].HandTo);
                }
                catch (Exception exception)
                {
                    errors[i] = exception;
                }
            }
            return await HandOverAsync(items, inserted, errors);
        }
        finally
        {
            // Whatever did not commit: its poll gets a plain wake and claims as usual.
            foreach (var (_, _, poll) in items) poll?.Resolve(null);
        }
    }

    /// <summary>Gives each reserved poll its job (or a plain wake), then enforces a limit a hand-off reached.</summary>
    private async Task<IReadOnlyList<Outcome<JobRow>>> HandOverAsync(
        IReadOnlyList<(long AccountId, NewJob Job, ParkedPoll? HandTo)> items, Inserted?[] inserted, Exception?[]? errors)
    {
        var outcomes = new Outcome<JobRow>[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            items[i].HandTo?.Resolve(inserted[i]?.Handed);
            outcomes[i] = inserted[i] switch
            {
                { Outcome: SubmitOutcome.KeyReused } => Outcome<JobRow>.Failed(new IdempotencyKeyReusedException()),
                { } done => Outcome<JobRow>.Of(done.Row),
                null => Outcome<JobRow>.Failed(errors?[i] ?? new InvalidOperationException("not inserted")),
            };
        }
        foreach (var accountId in inserted.Where(r => r?.Handed is { QuotaReached: true }).Select(r => r!.Value.Row.AccountId).Distinct())
        {
            await quotas.EnforceAsync(accountId, CancellationToken.None);
        }
        return outcomes;
    }

    /// <summary>
    /// Claims the best jobs for a batch of polls: the i-th best dispatchable job goes to the i-th poll in the batch.
    /// With <paramref name="start"/> they are claimed and started in one transition (<c>running</c> at once).
    /// </summary>
    internal async Task<IReadOnlyList<ClaimedJob?>> ClaimBatchAsync(IReadOnlyList<long> workers, Capabilities capabilities, bool start = false)
    {
        var limit = ProbeLimit(workers.Count);
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync();
        var rows = await connection.QueryAsync<BatchOrdinal, ClaimedJob, (long Ord, ClaimedJob Job)>(new CommandDefinition($"""
            WITH candidates AS (
                SELECT c.id, c.priority FROM unnest(@models::text[]) AS m(name)
                CROSS JOIN LATERAL ({Probe("model_match <> 'any' AND model = m.name", limit)}) c
                UNION ALL
                SELECT c.id, c.priority FROM unnest(@families::text[]) AS f(name)
                CROSS JOIN LATERAL ({Probe("model_match = 'family' AND family = f.name", limit)}) c
                UNION ALL
                SELECT c.id, c.priority FROM ({Probe("@catchAll AND model_match = 'any'", limit)}) c
            ), ranked AS (
                -- A job can come from two probes (its model and its family): rank each once.
                SELECT id, row_number() OVER (ORDER BY priority DESC, id) AS rank
                FROM (SELECT DISTINCT id, priority FROM candidates) d
            ), paired AS (
                SELECT r.id, w.worker_id, w.shard, w.ord
                FROM ranked r JOIN unnest(@workers::bigint[], @shards::smallint[]) WITH ORDINALITY AS w(worker_id, shard, ord) ON w.ord = r.rank
            ), claimed AS (
                UPDATE jobs j SET status = @status, worker_id = p.worker_id, claimed_at = @now, started_at = CASE WHEN @start THEN @now END, attempts = j.attempts + 1
                FROM paired p
                WHERE j.id = p.id
                RETURNING p.ord, p.shard, j.worker_id, j.id, j.model, j.family, j.model_match, j.prompt, j.priority, j.timeout_seconds, j.attempts, j.params::text AS params, j.account_id
            ), counted AS (
                -- A request counts when its job is claimed. One row per counter (ON CONFLICT touches a row once per
                -- statement), taken in key order so that concurrent batches lock counters in the same order.
                INSERT INTO quota_usage (account_id, day, shard, requests)
                SELECT account_id, @today, shard, count(*) FROM claimed GROUP BY account_id, shard ORDER BY account_id, shard
                ON CONFLICT (account_id, day, shard) DO UPDATE SET requests = quota_usage.requests + EXCLUDED.requests
                RETURNING account_id, shard, requests
            ), reached AS MATERIALIZED (
                {ReachedSql("counted", "requests", "daily_requests", "claimed")}
            ), {SeenCte("claimed")}
            SELECT c.ord, c.id, c.model, c.family, c.model_match, c.prompt, c.priority, c.timeout_seconds, c.attempts, c.params, c.account_id, r.reached AS quota_reached,
                   EXISTS (SELECT 1 FROM job_blobs jb WHERE jb.job_id = c.id) AS has_blobs, @start AS started
            FROM claimed c JOIN reached r ON r.account_id = c.account_id
            """,
            new
            {
                models = capabilities.Models.ToArray(), families = capabilities.Families.ToArray(), catchAll = capabilities.CatchAll,
                workers = workers.ToArray(), shards = Enumerable.Repeat(quotas.NextShard(), workers.Count).ToArray(),
                now, seenBefore = now - dispatch.Value.HeartbeatWriteInterval, today = quotas.Today,
                status = start ? JobStatus.Running : JobStatus.Claimed, start,
            }),
            (ordinal, job) => (ordinal.Ord, job), splitOn: "id");
        var claimed = new ClaimedJob?[workers.Count];
        foreach (var (ord, job) in rows) claimed[ord - 1] = job;
        // Only an account whose limit this batch reached pays for enforcement (once). Concurrent claims can overshoot a
        // request limit by at most the claims in flight when it is reached (each sees the others' counts only once committed).
        foreach (var accountId in claimed.Where(j => j is { QuotaReached: true }).Select(j => j!.AccountId).Distinct())
        {
            await quotas.EnforceAsync(accountId, CancellationToken.None);
        }
        return claimed;
    }

    /// <summary>
    /// A claim is a sign of life: the workers of <paramref name="claimed"/> (a CTE with a <c>worker_id</c> column) are seen
    /// now, and online. A worker waits silently in a long poll; without this, one whose last heartbeat had aged past the
    /// offline window while it waited was taken offline by the next sweep, and the job just claimed for it requeued.
    /// </summary>
    /// <remarks>
    /// As for a poll's heartbeat, only a row not written for <see cref="DispatchOptions.HeartbeatWriteInterval"/>
    /// (<c>@seenBefore</c>) is written, so a busy worker's row is not rewritten by every claim. A row locked by another
    /// statement is skipped, so claims neither wait on each other nor deadlock over it: the holder is a claim, a heartbeat
    /// or a registration writing the same, or an offline sweep taking the worker offline at that very moment, and then
    /// the claim goes the way of any job of a worker gone silent.
    /// </remarks>
    private static string SeenCte(string claimed) => $"""
        seen AS (
            UPDATE workers w SET last_seen_at = @now, online = true
            FROM (SELECT id FROM workers
                  WHERE id IN (SELECT worker_id FROM {claimed}) AND (last_seen_at < @seenBefore OR NOT online)
                  FOR UPDATE SKIP LOCKED) stale
            WHERE w.id = stale.id
        )
        """;

    /// <summary>claimed → running for a batch of (worker, job); true where the worker held the job and it was claimed.</summary>
    /// <remarks>
    /// The expected status comes with each item (a column of the unnest), not as a literal, in this and the result
    /// statement: with a literal or a plain parameter the planner can prove the in-flight partial indexes usable and,
    /// since few jobs are in flight, read a whole one — dead entries of every job finished since the last vacuum
    /// included — instead of one primary-key probe per job. The engine benchmark caught it: results cost ~100 µs a job,
    /// growing with the batch.
    /// </remarks>
    internal async Task<IReadOnlyList<bool>> StartBatchAsync(IReadOnlyList<(long WorkerId, long JobId)> items)
    {
        var order = InJobOrder(items, i => i.JobId);
        var updated = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return await connection.QueryAsync<int>(new CommandDefinition("""
                UPDATE jobs j SET status = 'running', started_at = @now
                FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @expected::text[]) AS u(ord, job_id, worker_id, expected)
                WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
                RETURNING u.ord
                """,
                new { ords = order, jobIds = order.Select(o => items[o - 1].JobId).ToArray(), workerIds = order.Select(o => items[o - 1].WorkerId).ToArray(), now = time.GetUtcNow(),
                      expected = Enumerable.Repeat(JobStatus.Claimed, order.Length).ToArray() }));
        });
        return Flags(items.Count, updated);
    }

    /// <summary>
    /// running → completed for a batch of results; true where it applied. The job row carries its usage and the worker's
    /// credits, so each result is one row update; the same statement adds the tokens to the account's counters, one upsert
    /// per counter row.
    /// </summary>
    internal async Task<IReadOnlyList<bool>> CompleteBatchAsync(IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items)
    {
        var order = InJobOrder(items, i => i.JobId);
        var sorted = order.Select(o => items[o - 1]).ToList();
        var done = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return (await connection.QueryAsync<(int Ord, long AccountId, bool TokenLimitReached)>(new CommandDefinition($"""
            WITH done AS (
                UPDATE jobs j SET status = 'completed', output = u.output, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
                    duration_ms = u.duration_ms, model_used = u.model_used, completed_at = @now,
                    credits = round(u.output_tokens / 1000.0 * @rate, 4)
                FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @shards::smallint[], @outputs::text[], @inputTokens::integer[],
                            @outputTokens::integer[], @durations::integer[], @modelsUsed::text[], @expected::text[])
                     AS u(ord, job_id, worker_id, shard, output, input_tokens, output_tokens, duration_ms, model_used, expected)
                WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
                RETURNING u.ord, u.shard, j.account_id, u.input_tokens, u.output_tokens
            ), tokens AS (
                -- Tokens count when results arrive: one upsert per counter row, in key order (see the claim).
                INSERT INTO quota_usage (account_id, day, shard, tokens)
                SELECT account_id, @today, shard, sum(COALESCE(input_tokens, 0) + output_tokens) FROM done
                GROUP BY account_id, shard ORDER BY account_id, shard
                ON CONFLICT (account_id, day, shard) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens
                RETURNING account_id, shard, tokens
            ), reached AS MATERIALIZED (
                {ReachedSql("tokens", "tokens", "daily_tokens", "done")}
            )
            SELECT d.ord, d.account_id, r.reached FROM done d JOIN reached r ON r.account_id = d.account_id
            """,
            new
            {
                ords = order, jobIds = sorted.Select(i => i.JobId).ToArray(), workerIds = sorted.Select(i => i.WorkerId).ToArray(),
                shards = Enumerable.Repeat(quotas.NextShard(), sorted.Count).ToArray(), outputs = sorted.Select(i => i.Result.Output).ToArray(),
                inputTokens = sorted.Select(i => i.Result.InputTokens).ToArray(), outputTokens = sorted.Select(i => i.Result.OutputTokens).ToArray(),
                durations = sorted.Select(i => i.Result.DurationMs).ToArray(), modelsUsed = sorted.Select(i => i.Result.ModelUsed).ToArray(),
                now = time.GetUtcNow(), today = quotas.Today, rate = accounting.Value.CreditsPerThousandOutputTokens,
                expected = Enumerable.Repeat(JobStatus.Running, sorted.Count).ToArray(),
            }))).AsList();
        });
        foreach (var accountId in done.Where(d => d.TokenLimitReached).Select(d => d.AccountId).Distinct())
        {
            await quotas.EnforceAsync(accountId, CancellationToken.None);
        }
        return Flags(items.Count, done.Select(d => d.Ord));
    }

    /// <summary>
    /// One probe along a dispatch index (<c>jobs_dispatch_model</c>, <c>_family</c> or <c>_any</c>, as
    /// <paramref name="match"/> selects): the best pending jobs in fetch order, skipping rows other claims hold.
    /// </summary>
    private static string Probe(string match, int limit) => $"""
        SELECT id, priority FROM jobs
        WHERE status = 'pending' AND NOT held AND {match}
        ORDER BY priority DESC, id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED
        """;

    /// <summary>
    /// The probes' LIMIT for a batch of <paramref name="count"/>: a literal (the next power of two), not a parameter.
    /// With <c>LIMIT @count</c> the generic plan assumes a tenth of the index and looks dearer than any custom plan, so
    /// PostgreSQL re-planned every claim (0.6 ms, more than the claim itself); a literal gives at most ten statement
    /// texts, each planned once per connection. A probe may lock up to twice the rows it needs for the length of one
    /// statement; the unpaired ones stay pending.
    /// </summary>
    private static int ProbeLimit(int count) => (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(count, 1));

    /// <summary>
    /// Per account of the batch's <paramref name="jobs"/>: whether it reached its plan's <paramref name="limit"/> — the
    /// counter rows this batch touched, as the upsert <paramref name="counted"/> returned them, plus the account's other
    /// rows as committed. Reached means enforce now.
    /// </summary>
    /// <remarks>
    /// Callers name it <c>reached AS MATERIALIZED</c>: it has one row per account. Inlined, PostgreSQL joined it to
    /// every job of the batch and looked up the account, its plan and the batch again per job (~1,000 index probes for
    /// a result batch of 350, a fifth of the statement).
    /// </remarks>
    private static string ReachedSql(string counted, string column, string limit, string jobs) => $"""
        SELECT a.id AS account_id,
            p.{limit} IS NOT NULL AND
                (SELECT sum(k.{column}) FROM {counted} k WHERE k.account_id = a.id) + (
                    SELECT coalesce(sum(q.{column}), 0) FROM quota_usage q
                    WHERE q.account_id = a.id AND q.day = @today
                      AND q.shard NOT IN (SELECT k.shard FROM {counted} k WHERE k.account_id = a.id)) >= p.{limit} AS reached
        FROM accounts a JOIN plans p ON p.id = a.plan
        WHERE a.id IN (SELECT account_id FROM {jobs})
        """;

    /// <summary>
    /// The 1-based positions of the items, ordered by job id: a batch locks its job rows in id order, so two batches
    /// that share rows (a duplicate request) take them in the same order.
    /// </summary>
    private static int[] InJobOrder<T>(IReadOnlyList<T> items, Func<T, long> jobId) =>
        Enumerable.Range(1, items.Count).OrderBy(o => jobId(items[o - 1])).ToArray();

    /// <summary>
    /// Runs a batch statement, again if PostgreSQL chose it as a deadlock victim (it rolled back, so a retry is safe).
    /// A batch locks several job rows; a sweep over the same rows in another order can deadlock with it, which a single
    /// job's statement never could.
    /// </summary>
    private static async Task<T> RetryOnDeadlockAsync<T>(Func<Task<T>> statement)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await statement();
            }
            catch (PostgresException exception) when (exception.SqlState == PostgresErrorCodes.DeadlockDetected && attempt < 3)
            {
            }
        }
    }

    /// <summary>Which of <paramref name="count"/> batch items a statement applied, from their 1-based ordinals.</summary>
    private static bool[] Flags(int count, IEnumerable<int> ordinals)
    {
        var flags = new bool[count];
        foreach (var ord in ordinals) flags[ord - 1] = true;
        return flags;
    }

    private sealed class BatchOrdinal
    {
        public long Ord { get; init; }
    }
}
