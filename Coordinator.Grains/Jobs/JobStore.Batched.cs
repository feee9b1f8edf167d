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

    private readonly ReceiptFactsCache _receiptFacts = new(metrics.ReceiptFactsTaken);
    private Batcher<(long AccountId, NewJob Job, HandTo? HandTo), Outcome<SubmitResult>>? _submits;
    private Batcher<(long JobId, long WorkerId, Guid? PollId), ClaimedJob?>? _claims;
    private Batcher<(long WorkerId, long JobId), bool>? _starts;
    private Batcher<(long WorkerId, long JobId, JobResult Result), Ended?>? _results;

    private Batcher<(long AccountId, NewJob Job, HandTo? HandTo), Outcome<SubmitResult>> Submits =>
        LazyInitializer.EnsureInitialized(ref _submits, () => new(SubmitBatchAsync, MaxBatch, BatchesInFlight));

    private Batcher<(long JobId, long WorkerId, Guid? PollId), ClaimedJob?> Claims =>
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
    internal async Task<IReadOnlyList<Outcome<SubmitResult>>> SubmitBatchAsync(IReadOnlyList<(long AccountId, NewJob Job, HandTo? HandTo)> items)
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
    /// pending → claimed for a batch of (job, worker, poll), in one statement; null where the job was no longer pending (or
    /// is held). If one job appears twice (two dispatcher activations raced for it), the row is updated once: one wins.
    /// </summary>
    internal async Task<IReadOnlyList<ClaimedJob?>> ClaimBatchAsync(IReadOnlyList<(long JobId, long WorkerId, Guid? PollId)> items)
    {
        var order = InJobOrder(items, i => i.JobId);
        var now = time.GetUtcNow();
        var rows = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return (await connection.QueryAsync<ClaimOrdinal, ClaimedJob, (ClaimOrdinal Claim, ClaimedJob Job)>(new CommandDefinition("""
                WITH claimed AS (
                    UPDATE jobs j SET status = 'claimed', worker_id = u.worker_id, claimed_at = @now, attempts = j.attempts + 1, poll_id = u.poll_id
                    FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @pollIds::uuid[], @expected::text[])
                         AS u(ord, job_id, worker_id, poll_id, expected)
                    WHERE j.id = u.job_id AND j.status = u.expected AND NOT j.held
                    RETURNING u.ord, j.created_at, j.id, j.model, j.family, j.model_match, j.prompt, j.priority, j.timeout_seconds, j.attempts,
                              j.params::text AS params, j.account_id
                )
                SELECT c.*, EXISTS (SELECT 1 FROM job_blobs jb WHERE jb.job_id = c.id) AS has_blobs FROM claimed c
                """,
                new
                {
                    ords = order, jobIds = order.Select(o => items[o - 1].JobId).ToArray(), workerIds = order.Select(o => items[o - 1].WorkerId).ToArray(),
                    pollIds = order.Select(o => items[o - 1].PollId).ToArray(), now, expected = Enumerable.Repeat(JobStatus.Pending, order.Length).ToArray(),
                }), (ordinal, job) => (ordinal, job), splitOn: "id")).AsList();
        });
        var claimed = new ClaimedJob?[items.Count];
        foreach (var (claim, job) in rows)
        {
            var ord = claim.Ord;
            claimed[ord - 1] = job;
            // Submission to first claim; a requeued job's later claims would measure its earlier attempts too.
            if (job.Attempts == 1) metrics.DispatchLatency.Record(Math.Max(0, (now.UtcDateTime - claim.CreatedAt).TotalSeconds), metrics.FamilyTag(job.Family));
            if (receipts.Enabled) _receiptFacts.Claimed(job.Id, job.AccountId, items[(int)ord - 1].WorkerId, job.Model, now);
        }
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
        var now = time.GetUtcNow();
        var updated = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return await connection.QueryAsync<int>(new CommandDefinition("""
                UPDATE jobs j SET status = 'running', started_at = @now
                FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @expected::text[]) AS u(ord, job_id, worker_id, expected)
                WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
                RETURNING u.ord
                """,
                new { ords = order, jobIds = order.Select(o => items[o - 1].JobId).ToArray(), workerIds = order.Select(o => items[o - 1].WorkerId).ToArray(), now,
                      expected = Enumerable.Repeat(JobStatus.Claimed, order.Length).ToArray() }));
        });
        if (receipts.Enabled)
        {
            foreach (var ord in updated) _receiptFacts.Started(items[ord - 1].JobId, now);
        }
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
        var ended = new Ended?[items.Count];
        if (!receipts.Enabled)
        {
            var done = await RetryOnDeadlockAsync(async () =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                return await CompleteAsync(connection, items, order, now);
            });
            foreach (var (ord, accountId, watched, family) in done) ended[ord - 1] = new Ended(accountId, watched, family);
            return ended;
        }

        // A completion commits with its receipt or not at all: one statement completes the jobs, only if they are still as
        // their receipts say, and inserts the receipts. What the receipts say comes from what this silo remembers of the
        // claim and the start, else from a read of the jobs; a remembered job the statement did not complete (the memory
        // was stale) is read and tried once more. An item still not completed (not running for its worker, or a job's
        // second item in the batch) is not completed here; the caller says why.
        var remembered = new List<RunningForReceipt>();
        var toRead = new List<int>();
        foreach (var ord in order)
        {
            var (workerId, jobId, result) = items[ord - 1];
            if (_receiptFacts.TryTake(jobId, workerId, out var facts, out var provider))
            {
                remembered.Add(new RunningForReceipt
                {
                    Ord = ord, JobId = jobId, AccountId = facts.AccountId, WorkerId = workerId, StartedAt = facts.StartedAt ?? facts.ClaimedAt,
                    Model = result.ModelUsed ?? facts.Model, Provider = provider,
                });
            }
            else
            {
                toRead.Add(ord);
            }
        }
        if (remembered.Count > 0)
        {
            var completed = await CompleteWithReceiptsAsync(items, remembered, now, ended);
            toRead.AddRange(remembered.Where(r => !completed.Contains(r.Ord)).Select(r => r.Ord));
        }
        if (toRead.Count > 0)
        {
            var readOrder = InJobOrder(toRead, ord => items[ord - 1].JobId).Select(i => toRead[i - 1]).ToArray();
            var running = await RetryOnDeadlockAsync(async () =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                return await ReadRunningAsync(connection, items, readOrder);
            });
            foreach (var job in running) _receiptFacts.Provider(job.WorkerId, job.Provider);
            if (running.Count > 0) await CompleteWithReceiptsAsync(items, running, now, ended);
        }
        return ended;
    }

    /// <summary>
    /// Signs the receipts of <paramref name="running"/> (in job order) and completes those jobs with them in one
    /// statement; sets <paramref name="ended"/> for each completed item and answers their ordinals. Tells the listener.
    /// </summary>
    private async Task<HashSet<int>> CompleteWithReceiptsAsync(
        IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items, List<RunningForReceipt> running, DateTimeOffset now, Ended?[] ended)
    {
        var signed = await receipts.SignAsync(running.Select(r => new CompletedJob(r.JobId, r.AccountId, r.WorkerId, r.StartedAt, r.Model, r.Provider)).ToList(), now);
        var done = await RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return await CompleteAsync(connection, items, running, signed, now);
        });
        receipts.Announce(done.ConvertAll(d => new IssuedReceipt(d.ReceiptId, d.JobId)));
        var completed = new HashSet<int>();
        foreach (var (ord, accountId, watched, _, _, family) in done)
        {
            ended[ord - 1] = new Ended(accountId, watched, family);
            completed.Add(ord);
        }
        return completed;
    }

    /// <summary>The completion statement's planner settings, for its transaction only (see <see cref="CompleteAsync(NpgsqlConnection, IReadOnlyList{ValueTuple{long, long, JobResult}}, List{RunningForReceipt}, ReceiptRows, DateTimeOffset)"/>).</summary>
    private const string PrimaryKeyPlanOnly = """
        SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)
        """;

    /// <summary>
    /// running → completed for the <paramref name="running"/> jobs, each only if it is still as its receipt in
    /// <paramref name="signed"/> (same order) says (account, start, model, provider), and in the same statement their
    /// receipts (each job names its own: <c>jobs.receipt_seq</c>), queued for the ledger. Answers each completed job's ordinal, account, whether it is watched, and its
    /// receipt. Plain Npgsql with positional parameters: this statement runs once per completion batch, and its many
    /// array parameters are where a general mapper spends its time.
    /// </summary>
    /// <remarks>
    /// Left to itself, the plan cache soon gave this statement a generic plan made while <c>jobs</c> was nearly empty: a
    /// hash join over a seq scan of <c>jobs</c>, kept while the table grew, and the benchmark's completions took 3 to
    /// 10 ms instead of 0.3. (The plain completion stays on custom plans: with fewer tables its planning looks cheap.)
    /// Planning every execution (<c>force_custom_plan</c>) fixed the plan but cost 0.2 ms of database CPU each time, more
    /// than the execution. So the transaction of this one statement turns seq scans, hash and merge joins off
    /// (<see cref="PrimaryKeyPlanOnly"/>): the one plan left is a nested loop that probes <c>jobs_pkey</c> for each
    /// result, and it is cached. The receipt's conditions are one row comparison checked on the row found.
    /// </remarks>
    private async Task<List<(int Ord, long AccountId, bool Watched, string ReceiptId, long JobId, string? Family)>> CompleteAsync(NpgsqlConnection connection,
        IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items, List<RunningForReceipt> running, ReceiptRows signed, DateTimeOffset now)
    {
        var results = running.ConvertAll(r => items[r.Ord - 1].Result);
        var command = new NpgsqlBatchCommand("""
            WITH done AS (
                UPDATE jobs j SET status = 'completed', output = u.output, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
                    duration_ms = u.duration_ms, model_used = u.model_used, completed_at = $1, credits = round(u.output_tokens / 1000.0 * $2, 4),
                    receipt_seq = nextval('receipts_seq_seq')
                FROM unnest($3::integer[], $4::bigint[], $5::bigint[], $6::text[], $7::integer[], $8::integer[], $9::integer[], $10::text[],
                            $11::text[], $12::timestamptz[], $13::bigint[], $14::text[], $15::text[],
                            $16::text[], $17::text[], $18::numeric[], $19::text[], $20::text[])
                     AS u(ord, job_id, worker_id, output, input_tokens, output_tokens, duration_ms, model_used,
                          expected, started_at, account_id, model, provider,
                          receipt_id, client, price, key_id, body)
                WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
                  AND (j.account_id, coalesce(j.started_at, j.claimed_at), coalesce(u.model_used, j.model),
                       (SELECT coalesce(w.miner_id, 'worker-' || w.id) FROM workers w WHERE w.id = j.worker_id))
                      IS NOT DISTINCT FROM (u.account_id, u.started_at, u.model, u.provider)
                RETURNING u.ord, j.id AS job_id, j.account_id, j.worker_id, j.watched, j.receipt_seq, u.receipt_id, u.client, u.provider, u.price, u.key_id, u.body, j.family
            ), issued AS (
                INSERT INTO receipts (seq, receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at)
                OVERRIDING SYSTEM VALUE
                SELECT receipt_seq, receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, sha256(convert_to(body, 'UTF8')), $1
                FROM done
                RETURNING seq, hash
            ), queued AS (
                INSERT INTO unsealed_receipts (seq, hash) SELECT seq, hash FROM issued
            )
            SELECT ord, account_id, watched, receipt_id, job_id, family FROM done
            """)
        {
            Parameters =
            {
                new NpgsqlParameter<DateTimeOffset> { TypedValue = now },
                new NpgsqlParameter<decimal> { TypedValue = accounting.Value.CreditsPerThousandOutputTokens },
                new NpgsqlParameter<int[]> { TypedValue = running.ConvertAll(r => r.Ord).ToArray() },
                new NpgsqlParameter<long[]> { TypedValue = running.ConvertAll(r => r.JobId).ToArray() },
                new NpgsqlParameter<long[]> { TypedValue = running.ConvertAll(r => r.WorkerId).ToArray() },
                new NpgsqlParameter<string[]> { TypedValue = results.ConvertAll(r => r.Output).ToArray() },
                new NpgsqlParameter<int?[]> { TypedValue = results.ConvertAll(r => r.InputTokens).ToArray() },
                new NpgsqlParameter<int[]> { TypedValue = results.ConvertAll(r => r.OutputTokens).ToArray() },
                new NpgsqlParameter<int[]> { TypedValue = results.ConvertAll(r => r.DurationMs).ToArray() },
                new NpgsqlParameter<string?[]> { TypedValue = results.ConvertAll(r => r.ModelUsed).ToArray() },
                new NpgsqlParameter<string[]> { TypedValue = Enumerable.Repeat(JobStatus.Running, running.Count).ToArray() },
                new NpgsqlParameter<DateTime?[]> { TypedValue = running.ConvertAll(r => r.StartedAt).ToArray() },
                new NpgsqlParameter<long[]> { TypedValue = running.ConvertAll(r => r.AccountId).ToArray() },
                new NpgsqlParameter<string?[]> { TypedValue = running.ConvertAll(r => r.Model).ToArray() },
                new NpgsqlParameter<string[]> { TypedValue = running.ConvertAll(r => r.Provider).ToArray() },
                new NpgsqlParameter<string[]> { TypedValue = signed.ReceiptIds },
                new NpgsqlParameter<string[]> { TypedValue = signed.Clients },
                new NpgsqlParameter<decimal[]> { TypedValue = signed.Prices },
                new NpgsqlParameter<string[]> { TypedValue = signed.KeyIds },
                new NpgsqlParameter<string[]> { TypedValue = signed.Bodies },
            },
        };
        // The job is reached by its primary key whatever the table's statistics said when the plan was cached (see the
        // remarks): set for this statement's implicit transaction only, in the same round trip.
        await using var batch = new NpgsqlBatch(connection) { BatchCommands = { new(PrimaryKeyPlanOnly), command } };
        var completed = new List<(int, long, bool, string, long, string?)>(running.Count);
        await using var reader = await batch.ExecuteReaderAsync();
        await reader.NextResultAsync();
        while (await reader.ReadAsync()) completed.Add((reader.GetInt32(0), reader.GetInt64(1), reader.GetBoolean(2), reader.GetString(3), reader.GetInt64(4), await reader.IsDBNullAsync(5) ? null : reader.GetString(5)));
        return completed;
    }

    /// <summary>What the receipts of the items at <paramref name="order"/> (in job order) say, for those running for their worker.</summary>
    private static async Task<List<RunningForReceipt>> ReadRunningAsync(NpgsqlConnection connection,
        IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items, int[] order) =>
        (await connection.QueryAsync<RunningForReceipt>(new CommandDefinition("""
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

    private sealed class ClaimOrdinal
    {
        public long Ord { get; init; }

        public DateTime CreatedAt { get; init; }
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
    /// running → completed for the items at <paramref name="order"/> (1-based, in job order), in one statement, without
    /// receipts. Answers (ord, account, watched, family) of each completed job.
    /// </summary>
    private async Task<List<(int Ord, long AccountId, bool Watched, string? Family)>> CompleteAsync(NpgsqlConnection connection,
        IReadOnlyList<(long WorkerId, long JobId, JobResult Result)> items, int[] order, DateTimeOffset now)
    {
        var sorted = order.Select(o => items[o - 1]).ToList();
        return (await connection.QueryAsync<(int, long, bool, string?)>(new CommandDefinition("""
            UPDATE jobs j SET status = 'completed', output = u.output, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
                duration_ms = u.duration_ms, model_used = u.model_used, completed_at = @now,
                credits = round(u.output_tokens / 1000.0 * @rate, 4)
            FROM unnest(@ords::integer[], @jobIds::bigint[], @workerIds::bigint[], @outputs::text[], @inputTokens::integer[],
                        @outputTokens::integer[], @durations::integer[], @modelsUsed::text[], @expected::text[])
                 AS u(ord, job_id, worker_id, output, input_tokens, output_tokens, duration_ms, model_used, expected)
            WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
            RETURNING u.ord, j.account_id, j.watched, j.family
            """, new
            {
                ords = order, jobIds = sorted.Select(i => i.JobId).ToArray(), workerIds = sorted.Select(i => i.WorkerId).ToArray(),
                outputs = sorted.Select(i => i.Result.Output).ToArray(),
                inputTokens = sorted.Select(i => i.Result.InputTokens).ToArray(), outputTokens = sorted.Select(i => i.Result.OutputTokens).ToArray(),
                durations = sorted.Select(i => i.Result.DurationMs).ToArray(), modelsUsed = sorted.Select(i => i.Result.ModelUsed).ToArray(),
                now, rate = accounting.Value.CreditsPerThousandOutputTokens,
                expected = Enumerable.Repeat(JobStatus.Running, sorted.Count).ToArray(),
            }))).AsList();
    }
}
