using Dapper;
using Coordinator.Grains.Receipts;
using Npgsql;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// The hot transitions, group-committed (see <see cref="Batcher{TItem,TResult}"/>): concurrent submissions, claims,
/// starts and results each run as one statement (submissions: one transaction) per batch instead of one per job. A batch
/// of one is the plain single-job statement, so nothing waits for company.
/// </summary>
public sealed partial class JobStore
{
    /// <summary>Largest batch of one statement.</summary>
    internal const int MaxBatch = 500;

    /// <summary>Batches of one kind in flight at once, so that one slow commit does not stall every caller.</summary>
    internal const int BatchesInFlight = 2;

    private Batcher<(long AccountId, NewJob Job, long? HandTo), Outcome<SubmitResult>>? _submits;
    private Batcher<(long JobId, long WorkerId), ClaimedJob?>? _claims;
    private Batcher<(long WorkerId, long JobId), bool>? _starts;
    private Batcher<(long WorkerId, long JobId, JobResult Result), Ended?>? _results;

    private Batcher<(long AccountId, NewJob Job, long? HandTo), Outcome<SubmitResult>> Submits =>
        LazyInitializer.EnsureInitialized(ref _submits, () => new(SubmitBatchAsync, MaxBatch, BatchesInFlight));

    private Batcher<(long JobId, long WorkerId), ClaimedJob?> Claims =>
        LazyInitializer.EnsureInitialized(ref _claims, () => new(ClaimBatchAsync, MaxBatch, BatchesInFlight));

    private Batcher<(long WorkerId, long JobId), bool> Starts =>
        LazyInitializer.EnsureInitialized(ref _starts, () => new(StartBatchAsync, MaxBatch, BatchesInFlight));

    private Batcher<(long WorkerId, long JobId, JobResult Result), Ended?> Results =>
        LazyInitializer.EnsureInitialized(ref _results, () => new(CompleteBatchAsync, MaxBatch, BatchesInFlight));

    /// <summary>
    /// Inserts a batch of submissions in one transaction: each keeps its own statement (plan priority, held when
    /// exhausted, the signing-key copy, a hand-off), but they share one commit. If any of them fails, the transaction
    /// is rolled back and each is inserted on its own, so one bad submission fails only its own caller. A submission whose
    /// idempotency key was used with another request inserts nothing and fails only its caller, without a rollback.
    /// </summary>
    internal async Task<IReadOnlyList<Outcome<SubmitResult>>> SubmitBatchAsync(IReadOnlyList<(long AccountId, NewJob Job, long? HandTo)> items)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        if (items.Count > 1)
        {
            try
            {
                var inserted = new List<Outcome<SubmitResult>>(items.Count);
                await using var transaction = await connection.BeginTransactionAsync();
                foreach (var (accountId, job, handTo) in items) inserted.Add(Outcome<SubmitResult>.Of(await InsertAsync(connection, transaction, accountId, job, handTo)));
                await transaction.CommitAsync();
                return inserted;
            }
            catch (Exception) when (connection.State == System.Data.ConnectionState.Open)
            {
                // Fall through: one at a time.
            }
        }
        var outcomes = new Outcome<SubmitResult>[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            try
            {
                outcomes[i] = Outcome<SubmitResult>.Of(await InsertAsync(connection, null, items[i].AccountId, items[i].Job, items[i].HandTo));
            }
            catch (Exception exception)
            {
                outcomes[i] = Outcome<SubmitResult>.Failed(exception);
            }
        }
        return outcomes;
    }

    /// <summary>
    /// pending → claimed for a batch of (job, worker), in one statement; null where the job was no longer pending (or is
    /// held). If one job appears twice (two dispatcher activations raced for it), the row is updated once: one wins.
    /// </summary>
    internal async Task<IReadOnlyList<ClaimedJob?>> ClaimBatchAsync(IReadOnlyList<(long JobId, long WorkerId)> items)
    {
        var order = InJobOrder(items, i => i.JobId);
        var rows = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return (await connection.QueryAsync<BatchOrdinal, ClaimedJob, (long Ord, ClaimedJob Job)>(new CommandDefinition("""
                WITH claimed AS (
                    UPDATE jobs j SET status = 'claimed', worker_id = u.worker_id, claimed_at = @now, attempts = j.attempts + 1
                    FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @expected::text[]) AS u(ord, job_id, worker_id, expected)
                    WHERE j.id = u.job_id AND j.status = u.expected AND NOT j.held
                    RETURNING u.ord, j.id, j.model, j.family, j.model_match, j.prompt, j.priority, j.timeout_seconds, j.attempts,
                              j.params::text AS params, j.account_id
                )
                SELECT c.*, EXISTS (SELECT 1 FROM job_blobs jb WHERE jb.job_id = c.id) AS has_blobs FROM claimed c
                """,
                new
                {
                    ords = order, jobIds = order.Select(o => items[o - 1].JobId).ToArray(), workerIds = order.Select(o => items[o - 1].WorkerId).ToArray(),
                    now = time.GetUtcNow(), expected = Enumerable.Repeat(JobStatus.Pending, order.Length).ToArray(),
                }), (ordinal, job) => (ordinal.Ord, job), splitOn: "id")).AsList();
        });
        var claimed = new ClaimedJob?[items.Count];
        foreach (var (ord, job) in rows) claimed[ord - 1] = job;
        return claimed;
    }

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
    /// running → completed for a batch of results; where it applied, the job's account and whether it is watched. The job
    /// row carries its usage and the worker's credits, so each result is one row update. With receipts on, the same
    /// transaction inserts a signed receipt for each job completed (one statement for the batch): a completion and its
    /// receipt commit together or not at all.
    /// </summary>
    internal async Task<IReadOnlyList<Ended?>> CompleteBatchAsync(IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items)
    {
        var order = InJobOrder(items, i => i.JobId);
        var now = time.GetUtcNow();
        var (done, issued) = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            if (!receipts.Enabled) return (await CompleteAsync(connection, items, order, now, null), (IReadOnlyList<IssuedReceipt>)[]);

            // What the receipts say is read first and signed; then one statement completes the jobs that were read, only
            // if they are still as read, and inserts their receipts: a completion commits with its receipt or not at all.
            // An item not read (not running for its worker, or a job's second item in the batch) is not completed here; the
            // caller says why.
            var running = (await connection.QueryAsync<RunningForReceipt>(new CommandDefinition("""
                SELECT DISTINCT ON (j.id) u.ord, j.id AS job_id, j.account_id, j.worker_id, coalesce(j.started_at, j.claimed_at) AS started_at,
                       coalesce(u.model_used, j.model) AS model, coalesce(w.miner_id, 'worker-' || w.id) AS provider
                FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @modelsUsed::text[], @expected::text[])
                     AS u(ord, job_id, worker_id, model_used, expected)
                JOIN jobs j ON j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
                JOIN workers w ON w.id = j.worker_id
                ORDER BY j.id, u.ord
                """, new
                {
                    ords = order, jobIds = order.Select(o => items[o - 1].JobId).ToArray(), workerIds = order.Select(o => items[o - 1].WorkerId).ToArray(),
                    modelsUsed = order.Select(o => items[o - 1].Result.ModelUsed).ToArray(), expected = Enumerable.Repeat(JobStatus.Running, order.Length).ToArray(),
                }))).AsList();
            if (running.Count == 0) return ([], []);
            var signed = await receipts.SignAsync(running.Select(r => new CompletedJob(r.JobId, r.AccountId, r.WorkerId, r.StartedAt, r.Model, r.Provider)).ToList(), now);
            var readOrder = running.Select(r => r.Ord).ToArray();
            var issuedNow = new List<IssuedReceipt>();
            var completed = await CompleteAsync(connection, items, readOrder, now, (signed, running.Select(r => r.StartedAt).ToArray(), issuedNow));
            return (completed, issuedNow);
        });
        receipts.Announce(issued);
        var ended = new Ended?[items.Count];
        foreach (var (ord, accountId, watched) in done) ended[ord - 1] = new Ended(accountId, watched);
        return ended;
    }

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
    internal static async Task<T> RetryOnDeadlockAsync<T>(Func<Task<T>> statement)
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

    /// <summary>A running job of the batch, with what its receipt says.</summary>
    private sealed class RunningForReceipt
    {
        public int Ord { get; init; }
        public long JobId { get; init; }
        public long AccountId { get; init; }
        public long WorkerId { get; init; }
        public DateTime? StartedAt { get; init; }
        public string? Model { get; init; }
        public string Provider { get; init; } = "";
    }

    /// <summary>
    /// running → completed for the items at <paramref name="order"/> (1-based, in job order), in one statement; with
    /// <paramref name="withReceipts"/>, only where the job still started when it was read, and the same statement inserts
    /// the completed jobs' signed receipts (collected into its list). Answers (ord, account, watched) of each completed job.
    /// </summary>
    private async Task<List<(int Ord, long AccountId, bool Watched)>> CompleteAsync(NpgsqlConnection connection,
        IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items, int[] order, DateTimeOffset now,
        (ReceiptRows Rows, DateTime?[] StartedAt, List<IssuedReceipt> Issued)? withReceipts)
    {
        var sorted = order.Select(o => items[o - 1]).ToList();
        var parameters = new DynamicParameters(new
        {
            ords = order, jobIds = sorted.Select(i => i.JobId).ToArray(), workerIds = sorted.Select(i => i.WorkerId).ToArray(),
            outputs = sorted.Select(i => i.Result.Output).ToArray(),
            inputTokens = sorted.Select(i => i.Result.InputTokens).ToArray(), outputTokens = sorted.Select(i => i.Result.OutputTokens).ToArray(),
            durations = sorted.Select(i => i.Result.DurationMs).ToArray(), modelsUsed = sorted.Select(i => i.Result.ModelUsed).ToArray(),
            now, rate = accounting.Value.CreditsPerThousandOutputTokens,
            expected = Enumerable.Repeat(JobStatus.Running, sorted.Count).ToArray(),
            startedAts = withReceipts?.StartedAt ?? new DateTime?[sorted.Count],
        });
        var update = $"""
            UPDATE jobs j SET status = 'completed', output = u.output, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
                duration_ms = u.duration_ms, model_used = u.model_used, completed_at = @now,
                credits = round(u.output_tokens / 1000.0 * @rate, 4)
            FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @outputs::text[], @inputTokens::integer[],
                        @outputTokens::integer[], @durations::integer[], @modelsUsed::text[], @expected::text[], @startedAts::timestamptz[])
                 AS u(ord, job_id, worker_id, output, input_tokens, output_tokens, duration_ms, model_used, expected, started_at)
            WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
              {(withReceipts is null ? "" : "AND coalesce(j.started_at, j.claimed_at) IS NOT DISTINCT FROM u.started_at")}
            RETURNING u.ord, j.id AS job_id, j.account_id, j.watched
            """;
        if (withReceipts is not { } receiptsToWrite)
        {
            return (await connection.QueryAsync<(int, long, long, bool)>(new CommandDefinition(update, parameters)))
                .Select(r => (r.Item1, r.Item3, r.Item4)).ToList();
        }
        receiptsToWrite.Rows.AddParameters(parameters);
        using var results = await connection.QueryMultipleAsync(new CommandDefinition($"""
            WITH done AS ({update}), issued AS ({ReceiptRows.InsertSql("done")})
            SELECT 0 AS kind, d.ord, d.account_id, d.watched, NULL::text AS receipt_id, d.job_id FROM done d
            UNION ALL
            SELECT 1, 0, 0, false, i.receipt_id, i.job_id FROM issued i
            """, parameters));
        var rows = (await results.ReadAsync<(int Kind, int Ord, long AccountId, bool Watched, string? ReceiptId, long JobId)>()).AsList();
        var completed = rows.Where(r => r.Kind == 0).Select(r => (r.Ord, r.AccountId, r.Watched)).ToList();
        receiptsToWrite.Issued.AddRange(rows.Where(r => r.Kind == 1).Select(r => new IssuedReceipt(r.ReceiptId!, r.JobId)));
        if (receiptsToWrite.Issued.Count != completed.Count)
        {
            throw new InvalidOperationException($"{completed.Count} jobs completed but {receiptsToWrite.Issued.Count} receipts issued");
        }
        return completed;
    }
}
