using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Jobs;

/// <summary>
/// The jobs table: inserts, client operations and worker transitions. Every transition is one conditional
/// UPDATE on the expected state; zero rows means the caller lost a race or is not entitled to the job.
/// </summary>
public sealed partial class JobStore(
    NpgsqlDataSource dataSource, TimeProvider time, WorkSignals signals, Quotas quotas, IOptions<AccountingOptions> accounting, IOptions<DispatchOptions> dispatch)
{
    // What clients see of a job: everything but the prompt, which can be large and which they sent themselves.
    private const string ClientColumns = """
        id, account_id, status, model, family, model_match, priority, timeout_seconds, tag, webhook_url,
        output, input_tokens, output_tokens, duration_ms, model_used, error, worker_id, attempts, held, boost_status, boost_error, params::text AS params,
        created_at, claimed_at, started_at, completed_at
        """;


    /// <summary>
    /// Inserts a pending job. Without a priority it takes the plan's priority boost; if the account has reached a
    /// daily limit it is held until the quota resets.
    /// </summary>
    /// <remarks>
    /// Hand-off (a "sync match"): when an idle poll that can serve the job is parked on this node, the job is inserted
    /// already claimed by that poll's worker (running, for a lease consumer's poll) — one write and one commit instead of an insert, a wake-up and a claim —
    /// provided nothing dispatchable that the worker could serve ranks ahead of it (same or higher priority). Otherwise
    /// it is inserted pending and that poll is woken as usual. Concurrent submissions share one transaction (one
    /// commit); see <c>SubmitBatchAsync</c>.
    /// <para>
    /// With <see cref="NewJob.Idempotency"/>, a key the account used within <see cref="IdempotencyKeyLifetime"/> inserts
    /// nothing and hands nothing off: the answer is the job that key made, as it is now. The primary key of
    /// <c>idempotency_keys</c> decides, so this holds for submissions racing on several nodes.
    /// </para>
    /// </remarks>
    /// <exception cref="IdempotencyKeyReusedException">The key is live but was used with a different request.</exception>
    public async Task<JobRow> SubmitAsync(long accountId, NewJob job, CancellationToken cancellationToken = default)
    {
        var keys = WakeKeys.ForJob(job.ModelMatch, job.Model, job.Model is null ? null : ModelNames.FamilyOf(job.Model));
        var poll = signals.ReserveIdlePoll(keys);
        var row = (await Submits.RunAsync((accountId, job, poll), poll is null ? cancellationToken : CancellationToken.None)).Value;
        // A reserved poll was resolved with the job or woken for it; without one, wake a poll here or on another node.
        // A new job is pending then; a replayed one is work only if it still is.
        if (poll is null && row.Status == JobStatus.Pending && !row.Held) signals.WorkAvailable(keys);
        return row;
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
            { Outcome: SubmitOutcome.KeyReused } => throw new IdempotencyKeyReusedException(),
            { } earlier => earlier.Row,
        };
    }

    /// <summary>What one submission's statement did.</summary>
    private enum SubmitOutcome
    {
        /// <summary>The job was inserted (pending, or handed to the reserved poll).</summary>
        Inserted,
        /// <summary>Its idempotency key is live with the same request: <c>Row</c> is the job the key made.</summary>
        Replayed,
        /// <summary>Its idempotency key is live with another request: nothing was inserted, and the caller is refused.</summary>
        KeyReused,
    }

    private readonly record struct Inserted(JobRow Row, ClaimedJob? Handed, SubmitOutcome Outcome);

    private async Task<Inserted> InsertAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, long accountId, NewJob job, ParkedPoll? handTo)
    {
        var family = job.Model is null ? null : ModelNames.FamilyOf(job.Model);
        var now = time.GetUtcNow();
        var parameters = new DynamicParameters(new
        {
            accountId, model = job.Model, family, modelMatch = job.ModelMatch, prompt = job.Prompt, priority = job.Priority,
            timeoutSeconds = job.TimeoutSeconds, tag = job.Tag, webhookUrl = job.WebhookUrl, now, today = quotas.Today,
            boostDelta = job.Boost is { Status: "charged" } boost ? boost.Delta : 0, boostStatus = job.Boost?.Status,
            boostError = job.Boost?.Error, boostPaymentIntent = job.Boost?.PaymentIntent,
            @params = job.ParamsJson, keyId = job.SubmittedByKeyId, protectedKey = job.ProtectedKey, blobIds = job.BlobIds.ToArray(),
        });
        var capabilities = handTo?.Capabilities;
        parameters.AddDynamicParams(new
        {
            workerId = handTo?.WorkerId, start = handTo?.StartsOnClaim ?? false,
            handedStatus = handTo?.StartsOnClaim == true ? JobStatus.Running : JobStatus.Claimed,
        });
        // Hand over only if no dispatchable job this worker could serve ranks ahead (it is older, so at the same priority
        // it goes first): one probe along each dispatch index, as the claim reads them. Without a poll, never.
        var hand = "false";
        if (capabilities is not null)
        {
            parameters.AddDynamicParams(new
            {
                shard = quotas.NextShard(), models = capabilities.Models.ToArray(), families = capabilities.Families.ToArray(), catchAll = capabilities.CatchAll,
            });
            parameters.Add("seenBefore", time.GetUtcNow() - dispatch.Value.HeartbeatWriteInterval);
            hand = $"""
                NOT d.held
                    AND NOT EXISTS (SELECT 1 FROM unnest(@models::text[]) AS m(name) WHERE EXISTS (
                        {Ahead("model_match <> 'any' AND model = m.name")}))
                    AND NOT EXISTS (SELECT 1 FROM unnest(@families::text[]) AS f(name) WHERE EXISTS (
                        {Ahead("model_match = 'family' AND family = f.name")}))
                    AND NOT (@catchAll AND EXISTS ({Ahead("model_match = 'any'")}))
                """;
        }
        var idempotency = job.Idempotency;
        var keyExpiredBefore = now - IdempotencyKeyLifetime;
        if (idempotency is not null)
        {
            parameters.AddDynamicParams(new { idempotencyKey = idempotency.Key, requestHash = idempotency.RequestHash, keyExpiredBefore });
        }
        var insert = $"""
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
                                  worker_id, claimed_at, started_at, attempts)
                {(idempotency is null ? "" : "OVERRIDING SYSTEM VALUE ")}SELECT {(idempotency is null ? "" : "i.job_id, ")}d.account_id, CASE WHEN d.hand THEN @handedStatus ELSE 'pending' END, @model, @family, @modelMatch, @prompt, d.priority,
                       @timeoutSeconds, @tag, @webhookUrl, d.held, @boostStatus, @boostError, @boostPaymentIntent, @params::jsonb, @keyId, @now,
                       CASE WHEN d.hand THEN @workerId END, CASE WHEN d.hand THEN @now END, CASE WHEN d.hand AND @start THEN @now END,
                       CASE WHEN d.hand THEN 1 ELSE 0 END
                FROM decision d{(idempotency is null ? "" : " CROSS JOIN idempotency i")}
                RETURNING {ClientColumns}{(capabilities is null ? "" : ", prompt")}
            ), {AttachedCte}
            """;
        if (capabilities is null)
        {
            var command = new CommandDefinition(insert + "\nSELECT * FROM job", parameters, transaction);
            if (idempotency is null) return new(await connection.QuerySingleAsync<JobRow>(command), null, SubmitOutcome.Inserted);
            return await connection.QuerySingleOrDefaultAsync<JobRow>(command) is { } row
                ? new(row, null, SubmitOutcome.Inserted)
                : await EarlierJobAsync(connection, transaction, accountId, idempotency, keyExpiredBefore, CancellationToken.None)
                    ?? throw new InvalidOperationException("an idempotency key stopped the insert but names no job");
        }

        var rows = await connection.QueryAsync<JobRow, HandOff, (JobRow Row, HandOff HandOff)>(new CommandDefinition($"""
            {insert}, counted AS (
                -- A request counts when its job is claimed, here as in the claim.
                INSERT INTO quota_usage (account_id, day, shard, requests)
                SELECT account_id, @today, @shard, 1 FROM job WHERE status <> 'pending'
                ON CONFLICT (account_id, day, shard) DO UPDATE SET requests = quota_usage.requests + EXCLUDED.requests
                RETURNING account_id, shard, requests
            ), reached AS MATERIALIZED (
                {ReachedSql("counted", "requests", "daily_requests", "job")}
            ), {SeenCte("job")}
            SELECT job.*, COALESCE(r.reached, false) AS quota_reached, EXISTS (SELECT 1 FROM attached) AS has_blobs
            FROM job LEFT JOIN reached r ON r.account_id = job.account_id
            """, parameters, transaction), (row, handOff) => (row, handOff), splitOn: "prompt");
        if (idempotency is not null && rows.AsList().Count == 0)
        {
            return await EarlierJobAsync(connection, transaction, accountId, idempotency, keyExpiredBefore, CancellationToken.None)
                ?? throw new InvalidOperationException("an idempotency key stopped the insert but names no job");
        }
        var (inserted, extra) = rows.Single();
        if (inserted.Status == JobStatus.Pending) return new(inserted, null, SubmitOutcome.Inserted);
        return new(inserted, new ClaimedJob
        {
            Id = inserted.Id, Model = inserted.Model, Family = inserted.Family, ModelMatch = inserted.ModelMatch, Prompt = extra.Prompt,
            Priority = inserted.Priority, TimeoutSeconds = inserted.TimeoutSeconds, Attempts = inserted.Attempts, Params = inserted.Params,
            AccountId = inserted.AccountId, QuotaReached = extra.QuotaReached, HasBlobs = extra.HasBlobs, Started = handTo!.StartsOnClaim,
        }, SubmitOutcome.Inserted);
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
    private static async Task<Inserted?> EarlierJobAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, long accountId,
        IdempotencyKey key, DateTimeOffset keyExpiredBefore, CancellationToken cancellationToken)
    {
        var rows = await connection.QueryAsync<JobRow, KeyMatch, Inserted>(new CommandDefinition($"""
            SELECT {ClientColumns}, k.request_hash = @requestHash AS same_request
            FROM (SELECT job_id, request_hash FROM idempotency_keys
                  WHERE account_id = @accountId AND idempotency_key = @idempotencyKey AND created_at > @keyExpiredBefore) k
            JOIN jobs ON jobs.id = k.job_id
            """, new { accountId, idempotencyKey = key.Key, requestHash = key.RequestHash, keyExpiredBefore }, transaction, cancellationToken: cancellationToken),
            (row, match) => new Inserted(row, null, match.SameRequest ? SubmitOutcome.Replayed : SubmitOutcome.KeyReused), splitOn: "same_request");
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

    /// <summary>A dispatchable job along one dispatch index that ranks ahead of the one being submitted (<c>d.priority</c>).</summary>
    private static string Ahead(string match) =>
        $"SELECT 1 FROM jobs WHERE status = 'pending' AND NOT held AND {match} AND priority >= d.priority";

    private sealed class HandOff
    {
        public string Prompt { get; init; } = "";
        public bool QuotaReached { get; init; }
        public bool HasBlobs { get; init; }
    }

    public async Task<JobRow?> GetAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<JobRow>(new CommandDefinition(
            $"SELECT {ClientColumns} FROM jobs WHERE id = @jobId AND account_id = @accountId",
            new { jobId, accountId }, cancellationToken: cancellationToken));
    }

    public async Task<IReadOnlyList<JobRow>> ListAsync(long accountId, JobQuery query, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<JobRow>(new CommandDefinition($"""
            SELECT {ClientColumns} FROM jobs
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
        ClientTransitionAsync(accountId, jobId, JobStatus.Pending, """
            status = 'cancelled', error = 'cancelled by the client', completed_at = @now
            """, null, cancellationToken);

    /// <summary>Moves a pending job's priority by a signed delta, clamped to ±1,000,000,000.</summary>
    public Task<Transition<JobRow>> ChangePriorityAsync(long accountId, long jobId, int delta, CancellationToken cancellationToken = default) =>
        ClientTransitionAsync(accountId, jobId, JobStatus.Pending, """
            priority = LEAST(GREATEST(priority::bigint + @delta, -1000000000), 1000000000)::integer
            """, new { delta }, cancellationToken);

    /// <summary>Puts a failed job back to pending in place: same id, error and worker cleared.</summary>
    public async Task<Transition<JobRow>> RetryAsync(long accountId, long jobId, CancellationToken cancellationToken = default)
    {
        var result = await ClientTransitionAsync(accountId, jobId, JobStatus.Failed, """
            status = 'pending', error = NULL, worker_id = NULL, attempts = 0, output = NULL, input_tokens = NULL,
            output_tokens = NULL, duration_ms = NULL, model_used = NULL, claimed_at = NULL, started_at = NULL, completed_at = NULL
            """, null, cancellationToken);
        if (result.Value is { } job) signals.WorkAvailable(WakeKeys.ForJob(job.ModelMatch, job.Model, job.Family));
        return result;
    }

    /// <summary>Cancels every pending job of the account; answers how many.</summary>
    public async Task<int> CancelAllPendingAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition("""
            UPDATE jobs SET status = 'cancelled', error = 'cancelled by the client', completed_at = @now
            WHERE account_id = @accountId AND status = 'pending'
            """, new { accountId, now = time.GetUtcNow() }, cancellationToken: cancellationToken));
    }

    private async Task<Transition<JobRow>> ClientTransitionAsync(
        long accountId, long jobId, string expectedStatus, string set, object? extra, CancellationToken cancellationToken)
    {
        var parameters = new DynamicParameters(extra);
        parameters.AddDynamicParams(new { accountId, jobId, expectedStatus, now = time.GetUtcNow() });
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<JobRow>(new CommandDefinition($"""
            UPDATE jobs SET {set}
            WHERE id = @jobId AND account_id = @accountId AND status = @expectedStatus
            RETURNING {ClientColumns}
            """, parameters, cancellationToken: cancellationToken));
        if (row is not null) return Transition<JobRow>.Done(row);

        var status = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT status FROM jobs WHERE id = @jobId AND account_id = @accountId",
            new { jobId, accountId }, cancellationToken: cancellationToken));
        return status is null ? Transition<JobRow>.NotFound() : Transition<JobRow>.WrongState(status);
    }

    /// <summary>
    /// Claims the best pending job this worker can serve: highest priority, then oldest. Each of the worker's
    /// models and families is read along its own partial index (one probe each, not a scan and sort), rows
    /// locked by concurrent claims are skipped, and the winner flips to <c>claimed</c> in the same statement.
    /// Concurrent claims with the same capabilities share one statement (see <c>ClaimBatchAsync</c>).
    /// </summary>
    public Task<ClaimedJob?> ClaimAsync(long workerId, Capabilities capabilities, CancellationToken cancellationToken = default) =>
        ClaimBatchedAsync(workerId, capabilities, cancellationToken);

    /// <summary>
    /// Leases up to <paramref name="max"/> of the best pending jobs this worker can serve, in fetch order, claimed and
    /// started in one statement and one commit: for an in-process consumer that runs what it takes at once (the
    /// HTTP protocol claims one job and starts it in a second call). Counts requests against quotas as a claim does;
    /// the jobs come back <c>running</c>, subject to the same timeouts and offline sweep as any running job.
    /// </summary>
    /// <remarks>Concurrent leases with the same capabilities share one statement.</remarks>
    public async Task<IReadOnlyList<ClaimedJob>> LeaseAsync(long workerId, Capabilities capabilities, int max)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(max, MaxLease);
        return await LeaseBatchedAsync(workerId, capabilities, max);
    }

    /// <summary>
    /// running → completed for many of this worker's jobs (see <see cref="CompleteAsync"/>). They join the group commit
    /// of every other result together, so consumers reporting batches at once share a few large statements. Answers,
    /// per result in order, whether it applied: false for a job this worker does not hold running.
    /// </summary>
    public async Task<IReadOnlyList<bool>> CompleteManyAsync(long workerId, IReadOnlyList<(long JobId, JobResult Result)> results) =>
        await Results.RunManyAsync(results.Select(r => (workerId, r.JobId, r.Result)).ToList());

    /// <summary>
    /// Gives back a claim whose poll was abandoned (the worker disconnected before it was answered): the job is
    /// pending again and not counted as an attempt. A lease is running from the start, so it is given back too.
    /// </summary>
    public async Task ReleaseClaimAsync(long workerId, ClaimedJob job)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var released = await connection.ExecuteAsync("""
            UPDATE jobs SET status = 'pending', worker_id = NULL, claimed_at = NULL, started_at = NULL, attempts = attempts - 1
            WHERE id = @id AND worker_id = @workerId AND status IN ('claimed', 'running')
            """, new { id = job.Id, workerId });
        if (released == 1) signals.WorkAvailable(WakeKeys.ForJob(job.ModelMatch, job.Model, job.Family));
    }

    /// <summary>claimed → running, by the worker that holds the job. Concurrent starts share one statement.</summary>
    public async Task<Transition<string>> StartAsync(long workerId, long jobId, CancellationToken cancellationToken = default) =>
        await Starts.RunAsync((workerId, jobId), cancellationToken)
            ? Transition<string>.Done(JobStatus.Running)
            : await WhyNotAsync(workerId, jobId, cancellationToken);

    /// <summary>
    /// running → completed with the worker's result. The same row update records the usage (tokens, completion time) and
    /// the worker's credits, and the same statement adds the account's token count, so none of them can exist without
    /// the others. Concurrent results share one statement.
    /// </summary>
    public async Task<Transition<string>> CompleteAsync(long workerId, long jobId, JobResult result, CancellationToken cancellationToken = default) =>
        await Results.RunAsync((workerId, jobId, result), cancellationToken)
            ? Transition<string>.Done(JobStatus.Completed)
            : await WhyNotAsync(workerId, jobId, cancellationToken);

    /// <summary>claimed or running → failed, keeping the worker's message for the client.</summary>
    public Task<Transition<string>> FailAsync(long workerId, long jobId, string error, CancellationToken cancellationToken = default) =>
        WorkerTransitionAsync(workerId, jobId, [JobStatus.Claimed, JobStatus.Running],
            "status = 'failed', error = @error, completed_at = @now", new { error }, cancellationToken);

    private async Task<Transition<string>> WorkerTransitionAsync(
        long workerId, long jobId, string[] expectedStatuses, string set, object? extra, CancellationToken cancellationToken)
    {
        var parameters = new DynamicParameters(extra);
        parameters.AddDynamicParams(new { workerId, jobId, expectedStatuses, now = time.GetUtcNow() });
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var status = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition($"""
            UPDATE jobs SET {set}
            WHERE id = @jobId AND worker_id = @workerId AND status = ANY(@expectedStatuses)
            RETURNING status
            """, parameters, cancellationToken: cancellationToken));
        return status is not null ? Transition<string>.Done(status) : await WhyNotAsync(connection, workerId, jobId, cancellationToken);
    }

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
