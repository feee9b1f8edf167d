using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Receipts;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// The jobs table: inserts, client operations and worker transitions. Every transition is one conditional
/// UPDATE on the expected state; zero rows means the caller lost a race or is not entitled to the job.
/// </summary>
public sealed partial class JobStore(
    NpgsqlDataSource dataSource, TimeProvider time, IOptions<AccountingOptions> accounting, ReceiptIssuer receipts, Telemetry.CoordinatorMetrics metrics)
{
    // What clients see of a job: everything but the prompt, which can be large and which they sent themselves.
    private const string ClientColumns = """
        id, account_id, status, model, family, model_match, priority, timeout_seconds, tag, webhook_url,
        output, input_tokens, output_tokens, duration_ms, model_used, error, worker_id, attempts, held, boost_status, boost_error, params::text AS params,
        created_at, claimed_at, started_at, completed_at, watched
        """;


    /// <summary>
    /// Inserts a job: pending, or with <paramref name="handTo"/> already claimed by that worker for that poll (a hand-off,
    /// which its dispatcher decides). Without a priority it takes the plan's priority boost; if the account has reached a daily
    /// limit it is held until the quota resets, and then it is not handed off. Concurrent submissions share one commit.
    /// </summary>
    /// <remarks>
    /// With <see cref="NewJob.Idempotency"/>, a key the account used within <see cref="IdempotencyKeyLifetime"/> inserts
    /// nothing and hands nothing off: the answer is the job that key made, as it is now. The primary key of
    /// <c>idempotency_keys</c> decides, so this holds for submissions racing on several silos.
    /// </remarks>
    public async Task<SubmitResult> SubmitAsync(long accountId, NewJob job, HandTo? handTo)
    {
        var result = (await Submits.RunAsync((accountId, job, handTo))).Value;
        if (result.Inserted)
        {
            var family = metrics.ModelFamilyTag(job.Model);
            metrics.JobsSubmitted.Add(1, family);
            // Inserted already claimed for a parked poll: its claim is its submission.
            if (result.Handed is not null) metrics.DispatchLatency.Record(0, family);
        }
        return result;
    }

    /// <summary>How long an idempotency key answers the job it made (Stripe's 24 hours); after that it makes a new one.</summary>
    public static readonly TimeSpan IdempotencyKeyLifetime = TimeSpan.FromHours(24);

    /// <summary>
    /// The job that a live idempotency key of the account made, as it is now; null if the key is unused or expired.
    /// For a caller with a side effect before the insert (a paid priority boost), so that a retry finds its job without
    /// repeating it. It decides nothing by itself: <see cref="SubmitAsync"/> enforces the key on its own.
    /// </summary>
    /// <exception cref="IdempotencyKeyReusedException">The key is live but was used with a different request.</exception>
    public async Task<JobRow?> FindByIdempotencyKeyAsync(long accountId, IdempotencyKey key, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await EarlierJobAsync(connection, null, accountId, key, time.GetUtcNow() - IdempotencyKeyLifetime, cancellationToken) switch
        {
            null => null,
            { KeyReused: true } => throw new IdempotencyKeyReusedException(),
            { } earlier => earlier.Row,
        };
    }

    private async Task<SubmitResult> InsertAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, long accountId, NewJob job, HandTo? handTo)
    {
        var family = job.Model is null ? null : ModelNames.FamilyOf(job.Model);
        var now = time.GetUtcNow();
        var parameters = new DynamicParameters(new
        {
            accountId, model = job.Model, family, modelMatch = job.ModelMatch, prompt = job.Prompt, priority = job.Priority,
            timeoutSeconds = job.TimeoutSeconds, tag = job.Tag, webhookUrl = job.WebhookUrl, now, today = DateOnly.FromDateTime(now.UtcDateTime),
            boostDelta = job.Boost is { Status: "charged" } boost ? boost.Delta : 0, boostStatus = job.Boost?.Status,
            boostError = job.Boost?.Error, boostPaymentIntent = job.Boost?.PaymentIntent,
            @params = job.ParamsJson, keyId = job.SubmittedByKeyId, protectedKey = job.ProtectedKey, blobIds = job.BlobIds.ToArray(),
            workerId = handTo?.WorkerId, pollId = handTo?.PollId, watched = job.Watched,
        });
        var idempotency = job.Idempotency;
        var keyExpiredBefore = now - IdempotencyKeyLifetime;
        if (idempotency is not null)
        {
            parameters.AddDynamicParams(new { idempotencyKey = idempotency.Key, requestHash = idempotency.RequestHash, keyExpiredBefore });
        }
        // A held job is never handed off: it is not dispatchable. Nothing else is checked: the dispatcher hands a job only
        // to a poll that found nothing it could take, so nothing ranks ahead of the job for that worker.
        var hand = handTo is null ? "false" : "NOT d.held";
        var rows = await connection.QueryAsync<JobRow, HandOff, (JobRow Row, HandOff HandOff)>(new CommandDefinition($"""
            WITH {SigningKeyCte}{(idempotency is null ? "" : IdempotencyCte)}, decided AS (
                SELECT a.id AS account_id, COALESCE(@priority, p.priority_boost) + @boostDelta AS priority,
                       a.quota_exhausted_on IS NOT DISTINCT FROM @today AS held
                FROM accounts a JOIN plans p ON p.id = a.plan
                WHERE a.id = @accountId
            ), decision AS (
                SELECT d.*, {hand} AS hand FROM decided d
            ), job AS (
                INSERT INTO jobs ({(idempotency is null ? "" : "id, ")}account_id, status, model, family, model_match, prompt, priority, timeout_seconds, tag, webhook_url, held,
                                  boost_status, boost_error, boost_payment_intent, params, submitted_by_key_id, created_at,
                                  worker_id, claimed_at, attempts, poll_id, watched)
                {(idempotency is null ? "" : "OVERRIDING SYSTEM VALUE ")}SELECT {(idempotency is null ? "" : "i.job_id, ")}d.account_id, CASE WHEN d.hand THEN 'claimed' ELSE 'pending' END, @model, @family, @modelMatch, @prompt, d.priority,
                       @timeoutSeconds, @tag, @webhookUrl, d.held, @boostStatus, @boostError, @boostPaymentIntent, @params::jsonb, @keyId, @now,
                       CASE WHEN d.hand THEN @workerId END, CASE WHEN d.hand THEN @now END, CASE WHEN d.hand THEN 1 ELSE 0 END,
                       CASE WHEN d.hand THEN @pollId::uuid END, @watched
                FROM decision d{(idempotency is null ? "" : " CROSS JOIN idempotency i")}
                RETURNING {ClientColumns}, CASE WHEN status = 'claimed' THEN prompt END AS handed_prompt
            ), {AttachedCte}
            SELECT job.*, EXISTS (SELECT 1 FROM attached) AS has_blobs FROM job
            """, parameters, transaction), (row, handOff) => (row, handOff), splitOn: "handed_prompt");
        if (rows.AsList() is not [var (inserted, extra)])
        {
            // The idempotency key was live: no job was inserted, and the answer is the one the key made.
            if (idempotency is null) throw new InvalidOperationException("the insert made no job");
            return await EarlierJobAsync(connection, transaction, accountId, idempotency, keyExpiredBefore, CancellationToken.None)
                ?? throw new InvalidOperationException("an idempotency key stopped the insert but names no job");
        }
        if (inserted.Status == JobStatus.Pending) return new SubmitResult(inserted, null, KeyReused: false, Inserted: true);
        if (receipts.Enabled) _receiptFacts.Claimed(inserted.Id, inserted.AccountId, handTo!.WorkerId, inserted.Model, now);
        return new SubmitResult(inserted, new ClaimedJob
        {
            Id = inserted.Id, Model = inserted.Model, Family = inserted.Family, ModelMatch = inserted.ModelMatch, Prompt = extra.HandedPrompt!,
            Priority = inserted.Priority, TimeoutSeconds = inserted.TimeoutSeconds, Attempts = inserted.Attempts, Params = inserted.Params,
            AccountId = inserted.AccountId, HasBlobs = extra.HasBlobs,
        }, KeyReused: false, Inserted: true);
    }

    // The key goes in first and the job only under the id the key took, so the job exists only if the key row was
    // written. Of two submissions with one key, on any nodes, the second waits on the first's uncommitted key row and then
    // inserts nothing (no job, no hand-off, no request counted). A key past its lifetime is taken over for the new job.
    private const string IdempotencyCte = """
        , idempotency AS (
            INSERT INTO idempotency_keys AS k (account_id, idempotency_key, request_hash, job_id, created_at)
            VALUES (@accountId, @idempotencyKey, @requestHash, nextval('jobs_id_seq'), @now)
            ON CONFLICT (account_id, idempotency_key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at
                WHERE k.created_at <= @keyExpiredBefore
            RETURNING job_id
        )
        """;

    /// <summary>The job a live idempotency key made, and whether this request is the one it was made for; null if none.</summary>
    private static async Task<SubmitResult?> EarlierJobAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, long accountId,
        IdempotencyKey key, DateTimeOffset keyExpiredBefore, CancellationToken cancellationToken)
    {
        var rows = await connection.QueryAsync<JobRow, KeyMatch, SubmitResult>(new CommandDefinition($"""
            SELECT {ClientColumns}, k.request_hash = @requestHash AS same_request
            FROM (SELECT job_id, request_hash FROM idempotency_keys
                  WHERE account_id = @accountId AND idempotency_key = @idempotencyKey AND created_at > @keyExpiredBefore) k
            JOIN jobs ON jobs.id = k.job_id
            """, new { accountId, idempotencyKey = key.Key, requestHash = key.RequestHash, keyExpiredBefore }, transaction, cancellationToken: cancellationToken),
            (row, match) => new SubmitResult(match.SameRequest ? row : null, null, KeyReused: !match.SameRequest, Inserted: false), splitOn: "same_request");
        return rows.AsList() is [var earlier] ? earlier : null;
    }

    private sealed class KeyMatch
    {
        public bool SameRequest { get; init; }
    }

    // The first webhook job of a key keeps an encrypted copy of it, to sign that key's webhooks.
    private const string SigningKeyCte = """
        signing_key AS (
            UPDATE api_keys SET key_protected = @protectedKey
            WHERE @protectedKey::text IS NOT NULL AND id = @keyId AND account_id = @accountId AND key_protected IS NULL
        )
        """;

    // The caller checked blob_ids; this join attaches only confirmed blobs of the same account regardless.
    private const string AttachedCte = """
        attached AS (
            INSERT INTO job_blobs (job_id, blob_id, position)
            SELECT job.id, b.id, given.position
            FROM job, unnest(@blobIds::bigint[]) WITH ORDINALITY AS given(blob_id, position)
            JOIN blobs b ON b.id = given.blob_id AND b.account_id = @accountId AND b.status = 'confirmed'
            RETURNING job_id
        )
        """;

    private sealed class HandOff
    {
        public string? HandedPrompt { get; init; }
        public bool HasBlobs { get; init; }
    }

    // The job's receipt (issued with its completion, which names it in receipt_seq), for the reads that show a job to its
    // client: one probe of receipts' primary key per job within the same statement, and none on the paths that write jobs.
    private const string ReceiptColumn = "(SELECT r.receipt_id FROM receipts r WHERE r.seq = jobs.receipt_seq) AS receipt_id";

    /// <summary>The account's job with its latest receipt id (<see cref="JobRow.ReceiptId"/>), as <c>GET /jobs/{id}</c>, the dashboard and webhooks show it.</summary>
    public async Task<JobRow?> GetAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<JobRow>(new CommandDefinition(
            $"SELECT {ClientColumns}, {ReceiptColumn} FROM jobs WHERE id = @jobId AND account_id = @accountId",
            new { jobId, accountId }, cancellationToken: cancellationToken));
    }

    /// <summary>The account's jobs, newest first, each with its latest receipt id.</summary>
    public async Task<IReadOnlyList<JobRow>> ListAsync(long accountId, JobQuery query, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<JobRow>(new CommandDefinition($"""
            SELECT {ClientColumns}, {ReceiptColumn} FROM jobs
            WHERE account_id = @accountId
              AND (@status::text IS NULL OR status = @status)
              AND (@model::text IS NULL OR model = @model)
              AND (@tag::text IS NULL OR tag = @tag)
              AND (@from::timestamptz IS NULL OR created_at >= @from)
              AND (@to::timestamptz IS NULL OR created_at <= @to)
            ORDER BY id DESC
            OFFSET @offset LIMIT @limit
            """,
            new { accountId, status = query.Status, model = query.Model, tag = query.Tag, from = query.From, to = query.To, offset = query.Offset, limit = query.Limit },
            cancellationToken: cancellationToken));
        return rows.AsList();
    }

    /// <summary>Cancels a pending job (DELETE /jobs/{id}).</summary>
    public Task<Transition<JobRow>> CancelAsync(long accountId, long jobId, CancellationToken cancellationToken = default) =>
        ClientTransitionAsync(accountId, jobId, [JobStatus.Pending], """
            status = 'cancelled', error = 'cancelled by the client', completed_at = @now
            """, null, cancellationToken);

    /// <summary>Moves a pending job's priority by a signed delta, clamped to ±1,000,000,000.</summary>
    public Task<Transition<JobRow>> ChangePriorityAsync(long accountId, long jobId, int delta, CancellationToken cancellationToken = default) =>
        ClientTransitionAsync(accountId, jobId, [JobStatus.Pending], """
            priority = LEAST(GREATEST(priority::bigint + @delta, -1000000000), 1000000000)::integer
            """, new { delta }, cancellationToken);

    /// <summary>Puts a failed job back to pending in place: same id, error and worker cleared.</summary>
    public Task<Transition<JobRow>> RetryAsync(long accountId, long jobId, CancellationToken cancellationToken = default) =>
        ClientTransitionAsync(accountId, jobId, [JobStatus.Failed], """
            status = 'pending', error = NULL, worker_id = NULL, attempts = 0, output = NULL, input_tokens = NULL,
            output_tokens = NULL, duration_ms = NULL, model_used = NULL, claimed_at = NULL, started_at = NULL, completed_at = NULL
            """, null, cancellationToken);

    /// <summary>Cancels every pending job of the account; answers them, and which of them are watched.</summary>
    public Task<(IReadOnlyList<QueuedJob> Cancelled, IReadOnlyList<long> Watched)> CancelAllPendingAsync(long accountId, CancellationToken cancellationToken = default) =>
        CancelAllPendingAsync(accountId, "cancelled by the client", cancellationToken);

    /// <summary>Cancels every pending job of the account with <paramref name="reason"/> as their error; answers them, and which of them are watched.</summary>
    public async Task<(IReadOnlyList<QueuedJob> Cancelled, IReadOnlyList<long> Watched)> CancelAllPendingAsync(long accountId, string reason, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<QueuedJob, WatchedFlag, (QueuedJob Job, bool Watched)>(new CommandDefinition($"""
            UPDATE jobs SET status = 'cancelled', error = @reason, completed_at = @now
            WHERE account_id = @accountId AND status = 'pending'
            RETURNING {QueuedColumns}, watched
            """, new { accountId, reason, now = time.GetUtcNow() }, cancellationToken: cancellationToken), (job, flag) => (job, flag.Watched), splitOn: "watched")).AsList();
        return (rows.Select(r => r.Job).ToList(), rows.Where(r => r.Watched).Select(r => r.Job.Id).ToList());
    }

    private sealed class WatchedFlag
    {
        public bool Watched { get; init; }
    }

    /// <summary>The columns of a <see cref="QueuedJob"/>, in its constructor's order.</summary>
    internal const string QueuedColumns = "id, model, family, model_match AS modelmatch, priority, account_id AS accountid";

    private async Task<Transition<JobRow>> ClientTransitionAsync(
        long accountId, long jobId, string[] expectedStatuses, string set, object? extra, CancellationToken cancellationToken)
    {
        var parameters = new DynamicParameters(extra);
        parameters.AddDynamicParams(new { accountId, jobId, expectedStatuses, now = time.GetUtcNow() });
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<JobRow>(new CommandDefinition($"""
            UPDATE jobs SET {set}
            WHERE id = @jobId AND account_id = @accountId AND status = ANY(@expectedStatuses)
            RETURNING {ClientColumns}
            """, parameters, cancellationToken: cancellationToken));
        if (row is not null) return Transition<JobRow>.Done(row);

        var status = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT status FROM jobs WHERE id = @jobId AND account_id = @accountId",
            new { jobId, accountId }, cancellationToken: cancellationToken));
        return status is null ? Transition<JobRow>.NotFound() : Transition<JobRow>.WrongState(status);
    }

    /// <summary>
    /// pending → claimed for this worker, if the job is still pending and not held: the one statement that decides who
    /// gets a job, whatever its dispatcher thought (two activations of one dispatcher during membership churn, a job
    /// cancelled meanwhile). Null when it was not. Concurrent claims share one statement. A claim for a poll records the
    /// poll (<paramref name="pollId"/>; null for a claim by id), so that one whose answer was lost can be given back
    /// (<see cref="ReleasePollClaimsAsync"/>).
    /// </summary>
    public Task<ClaimedJob?> ClaimAsync(long jobId, long workerId, Guid? pollId = null) => Claims.RunAsync((jobId, workerId, pollId));

    /// <summary>
    /// A job as a claim by id sees it: the job as its dispatcher queues it when it is pending and not held (else null),
    /// its status (null when there is no such job) and the worker that holds it.
    /// </summary>
    public async Task<(QueuedJob? Job, string? Status, long? WorkerId)> DispatchStateAsync(long jobId)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var row = await connection.QuerySingleOrDefaultAsync<DispatchStateRow>(
            $"SELECT {QueuedColumns}, status, held, worker_id AS workerid FROM jobs WHERE id = @jobId", new { jobId });
        if (row is null) return (null, null, null);
        var job = row.Status == JobStatus.Pending && !row.Held
            ? new QueuedJob(row.Id, row.Model, row.Family, row.ModelMatch, row.Priority, row.AccountId)
            : null;
        return (job, row.Status, row.WorkerId);
    }

    private sealed class DispatchStateRow
    {
        public long Id { get; init; }
        public string? Model { get; init; }
        public string? Family { get; init; }
        public string ModelMatch { get; init; } = "";
        public int Priority { get; init; }
        public long AccountId { get; init; }
        public string Status { get; init; } = "";
        public bool Held { get; init; }
        public long? WorkerId { get; init; }
    }

    /// <summary>
    /// Gives back a claim whose poll was abandoned (the worker disconnected or took another job): the job is pending
    /// again and not counted as an attempt. Answers it as its dispatcher queues it, or null if this worker did not hold it.
    /// </summary>
    public async Task<QueuedJob?> ReleaseClaimAsync(long workerId, long jobId)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        return await connection.QuerySingleOrDefaultAsync<QueuedJob>($"""
            UPDATE jobs SET status = 'pending', worker_id = NULL, claimed_at = NULL, started_at = NULL, attempts = attempts - 1, poll_id = NULL
            WHERE id = @jobId AND worker_id = @workerId AND status = 'claimed'
            RETURNING {QueuedColumns}
            """, new { jobId, workerId });
    }

    /// <summary>
    /// Gives back the claims made for a range of poll calls of a worker (<see cref="Dispatch.PollIds"/>) whose answer never
    /// reached it (the call that carried the poll failed): each is pending again and not counted as an attempt, as
    /// <see cref="ReleaseClaimAsync"/> does. A job the worker started is not touched: it was received. Answers the released
    /// jobs as their dispatchers queue them.
    /// </summary>
    public async Task<IReadOnlyList<QueuedJob>> ReleasePollClaimsAsync(long workerId, Guid firstCall, Guid lastCall)
    {
        IReadOnlyList<QueuedJob> released;
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            released = (await connection.QueryAsync<QueuedJob>($"""
                UPDATE jobs SET status = 'pending', worker_id = NULL, claimed_at = NULL, started_at = NULL, attempts = attempts - 1, poll_id = NULL
                WHERE status = 'claimed' AND worker_id = @workerId AND poll_id BETWEEN @firstCall AND @lastCall
                RETURNING {QueuedColumns}
                """, new { workerId, firstCall, lastCall })).AsList();
        }
        // This silo's memory of the claim would only be a stale hint for the completion's receipt: forget it.
        foreach (var job in released) _receiptFacts.Forget(job.Id);
        return released;
    }

    /// <summary>
    /// The dispatchable jobs of one dispatch index in fetch order (highest priority, then oldest), after
    /// <paramref name="after"/> (null: from the start), at most <paramref name="limit"/>: how a dispatcher fills its memory.
    /// </summary>
    /// <remarks>
    /// "After" is two range reads of the index, one for the rest of <paramref name="after"/>'s priority and one for the
    /// priorities below it, so neither reads past the rows it returns.
    /// </remarks>
    internal async Task<IReadOnlyList<QueuedJob>> DispatchableAsync(SetKind kind, string? name, QueuedJob? after, int limit)
    {
        var slice = kind switch
        {
            SetKind.Model => "model_match <> 'any' AND model = @name",
            SetKind.Family => "model_match = 'family' AND family = @name",
            _ => "model_match = 'any'",
        };
        var select = $"SELECT {QueuedColumns} FROM jobs WHERE status = 'pending' AND NOT held AND {slice}";
        var sql = after is null
            ? $"{select} ORDER BY priority DESC, id LIMIT {limit}"
            : $"""
                ({select} AND priority = @priority AND id > @id ORDER BY priority DESC, id LIMIT {limit})
                UNION ALL
                ({select} AND priority < @priority ORDER BY priority DESC, id LIMIT {limit})
                ORDER BY priority DESC, id LIMIT {limit}
                """;
        await using var connection = await dataSource.OpenConnectionAsync();
        return (await connection.QueryAsync<QueuedJob>(sql, new { name, priority = after?.Priority ?? 0, id = after?.Id ?? 0 })).AsList();
    }

    /// <summary>claimed → running, by the worker that holds the job. Concurrent starts share one statement.</summary>
    public async Task<Transition<string>> StartAsync(long workerId, long jobId, CancellationToken cancellationToken = default) =>
        await Starts.RunAsync((workerId, jobId), cancellationToken)
            ? Transition<string>.Done(JobStatus.Running)
            : await WhyNotAsync(workerId, jobId, cancellationToken);

    /// <summary>
    /// running → completed with the worker's result. The same row update records the usage (tokens, completion time) and
    /// the worker's credits, so neither can exist without the other, and the same transaction issues the job's signed
    /// receipt (unless <see cref="ReceiptOptions.Enabled"/> is off). Concurrent results share one statement.
    /// </summary>
    /// <remarks>Done carries the job's account, whose token counter the result adds to, and whether the job is watched.</remarks>
    public async Task<Transition<Ended>> CompleteAsync(long workerId, long jobId, JobResult result, CancellationToken cancellationToken = default)
    {
        if (await Results.RunAsync((workerId, jobId, result), cancellationToken) is { } ended)
        {
            metrics.JobsCompleted.Add(1, metrics.FamilyTag(ended.Family));
            return Transition<Ended>.Done(ended);
        }
        var why = await WhyNotAsync(workerId, jobId, cancellationToken);
        return why.Outcome == TransitionOutcome.NotFound ? Transition<Ended>.NotFound() : Transition<Ended>.WrongState(why.CurrentStatus!);
    }

    /// <summary>claimed or running → failed, keeping the worker's message for the client.</summary>
    /// <remarks>Done carries whether the job is watched, whose grain must hear that it ended.</remarks>
    public async Task<Transition<Ended>> FailAsync(long workerId, long jobId, string error, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var ended = (await connection.QueryAsync<(long AccountId, bool Watched, string? Family)>(new CommandDefinition("""
            UPDATE jobs SET status = 'failed', error = @error, completed_at = @now
            WHERE id = @jobId AND worker_id = @workerId AND status = ANY(@expectedStatuses)
            RETURNING account_id, watched, family
            """, new { workerId, jobId, error, now = time.GetUtcNow(), expectedStatuses = new[] { JobStatus.Claimed, JobStatus.Running } },
            cancellationToken: cancellationToken))).AsList();
        if (ended is [var (accountId, watched, family)])
        {
            metrics.JobsFailed.Add(1, metrics.FamilyTag(family));
            return Transition<Ended>.Done(new Ended(accountId, watched, family));
        }
        var why = await WhyNotAsync(connection, workerId, jobId, cancellationToken);
        return why.Outcome == TransitionOutcome.NotFound ? Transition<Ended>.NotFound() : Transition<Ended>.WrongState(why.CurrentStatus!);
    }

    /// <summary>
    /// Marks a job of the account watched (someone follows its stream): from now on every statement that ends or restarts
    /// it answers so, and its changer tells the job's grain. Answers the job as it is, or null if the account has no such job.
    /// </summary>
    public async Task<JobRow?> WatchAsync(long accountId, long jobId)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        // A job already watched (submitted so by /v1, or read before) is only read: no row version, no write to wait for.
        // Both branches go by what the statement's snapshot saw, so a reader racing another's first read still gets the row.
        return await connection.QuerySingleOrDefaultAsync<JobRow>($"""
            WITH found AS (
                SELECT watched FROM jobs WHERE id = @jobId AND account_id = @accountId
            ), marked AS (
                UPDATE jobs SET watched = true WHERE id = @jobId AND account_id = @accountId AND NOT (SELECT watched FROM found)
                RETURNING {ClientColumns}
            )
            SELECT * FROM marked
            UNION ALL
            SELECT {ClientColumns} FROM jobs WHERE id = @jobId AND account_id = @accountId AND (SELECT watched FROM found)
            """, new { jobId, accountId });
    }

    /// <summary>
    /// A worker starts streaming a job: marks it watched if this worker holds it running, and answers its account and the
    /// attempt the worker runs, when it was submitted and its family (for the time to first token); null when it does not. A job already watched (its reader came first, the usual case) is only read: the first chunk
    /// then waits for no write to reach the disk.
    /// </summary>
    public async Task<StreamHolder?> StreamByAsync(long workerId, long jobId)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        // The update checks the status again on the row it locks, so a job that ends meanwhile is not taken for held.
        var held = await connection.QuerySingleOrDefaultAsync<HeldStream>("""
            WITH held AS (
                SELECT account_id, attempts, watched, created_at, family FROM jobs WHERE id = @jobId AND worker_id = @workerId AND status = @running
            ), marked AS (
                UPDATE jobs SET watched = true
                WHERE id = @jobId AND worker_id = @workerId AND status = @running AND NOT (SELECT watched FROM held)
                RETURNING account_id, attempts, created_at, family
            )
            SELECT account_id, attempts, created_at, family FROM marked
            UNION ALL SELECT account_id, attempts, created_at, family FROM held WHERE watched
            """, new { jobId, workerId, running = JobStatus.Running });
        return held is null ? null : new StreamHolder(held.AccountId, held.Attempts, held.CreatedAt, held.Family);
    }

    private sealed class HeldStream
    {
        public long AccountId { get; init; }
        public int Attempts { get; init; }
        public DateTime CreatedAt { get; init; }
        public string? Family { get; init; }
    }

    /// <summary>A job as it is, whoever's it is: for its own grain.</summary>
    internal async Task<JobRow?> FindAsync(long jobId)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        return await connection.QuerySingleOrDefaultAsync<JobRow>($"SELECT {ClientColumns} FROM jobs WHERE id = @jobId", new { jobId });
    }

    /// <summary>
    /// Its client went away, or cancels it whatever its state (AITBC's cancel): a job not yet finished is cancelled (a pending one never runs; the worker of a running one hears
    /// at its next chunk or result).
    /// </summary>
    public Task<Transition<JobRow>> AbandonAsync(long accountId, long jobId, string reason) =>
        ClientTransitionAsync(accountId, jobId, [JobStatus.Pending, JobStatus.Claimed, JobStatus.Running], """
            status = 'cancelled', error = @reason, completed_at = @now
            """, new { reason }, CancellationToken.None);

    private async Task<Transition<string>> WhyNotAsync(long workerId, long jobId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await WhyNotAsync(connection, workerId, jobId, cancellationToken);
    }

    /// <summary>Why a worker transition changed nothing. A worker only ever sees jobs it holds or held: anything else is not found.</summary>
    private static async Task<Transition<string>> WhyNotAsync(NpgsqlConnection connection, long workerId, long jobId, CancellationToken cancellationToken)
    {
        var current = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT status FROM jobs WHERE id = @jobId AND worker_id = @workerId",
            new { jobId, workerId }, cancellationToken: cancellationToken));
        return current is null ? Transition<string>.NotFound() : Transition<string>.WrongState(current);
    }
}
