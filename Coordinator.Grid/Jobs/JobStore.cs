using Coordinator.Grid.Accounting;
using Coordinator.Grid.Dispatch;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grid.Jobs;

/// <summary>
/// The jobs table: inserts, client operations and worker transitions. Every transition is one conditional
/// UPDATE on the expected state; zero rows means the caller lost a race or is not entitled to the job.
/// </summary>
public sealed class JobStore(NpgsqlDataSource dataSource, TimeProvider time, WorkSignals signals, Quotas quotas, IOptions<AccountingOptions> accounting)
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
    public async Task<JobRow> SubmitAsync(long accountId, NewJob job, CancellationToken cancellationToken = default)
    {
        var family = job.Model is null ? null : ModelNames.FamilyOf(job.Model);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleAsync<JobRow>(new CommandDefinition($"""
            WITH signing_key AS (
                -- The first webhook job of a key keeps an encrypted copy of it, to sign that key's webhooks.
                UPDATE api_keys SET key_protected = @protectedKey
                WHERE @protectedKey::text IS NOT NULL AND id = @keyId AND account_id = @accountId AND key_protected IS NULL
            ), job AS (
                INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, tag, webhook_url, held,
                                  boost_status, boost_error, boost_payment_intent, params, submitted_by_key_id, created_at)
                SELECT a.id, 'pending', @model, @family, @modelMatch, @prompt, COALESCE(@priority, p.priority_boost) + @boostDelta,
                       @timeoutSeconds, @tag, @webhookUrl, a.quota_exhausted_on IS NOT DISTINCT FROM @today,
                       @boostStatus, @boostError, @boostPaymentIntent, @params::jsonb, @keyId, @now
                FROM accounts a JOIN plans p ON p.id = a.plan
                WHERE a.id = @accountId
                RETURNING {ClientColumns}
            ), attached AS (
                -- The caller checked blob_ids; this join attaches only confirmed blobs of the same account regardless.
                INSERT INTO job_blobs (job_id, blob_id, position)
                SELECT job.id, b.id, given.position
                FROM job, unnest(@blobIds::bigint[]) WITH ORDINALITY AS given(blob_id, position)
                JOIN blobs b ON b.id = given.blob_id AND b.account_id = @accountId AND b.status = 'confirmed'
            )
            SELECT * FROM job
            """,
            new
            {
                accountId, model = job.Model, family, modelMatch = job.ModelMatch, prompt = job.Prompt, priority = job.Priority,
                timeoutSeconds = job.TimeoutSeconds, tag = job.Tag, webhookUrl = job.WebhookUrl, now = time.GetUtcNow(), today = quotas.Today,
                boostDelta = job.Boost is { Status: "charged" } boost ? boost.Delta : 0, boostStatus = job.Boost?.Status,
                boostError = job.Boost?.Error, boostPaymentIntent = job.Boost?.PaymentIntent,
                @params = job.ParamsJson, keyId = job.SubmittedByKeyId, protectedKey = job.ProtectedKey, blobIds = job.BlobIds.ToArray(),
            },
            cancellationToken: cancellationToken));
        if (!row.Held) signals.WorkAvailable(WakeKeys.ForJob(row.ModelMatch, row.Model, row.Family));
        return row;
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
    /// </summary>
    public async Task<ClaimedJob?> ClaimAsync(long workerId, Capabilities capabilities, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var job = await connection.QuerySingleOrDefaultAsync<ClaimedJob>(new CommandDefinition("""
            WITH candidates AS (
                SELECT c.id, c.priority
                FROM unnest(@models::text[]) AS m(name)
                CROSS JOIN LATERAL (
                    SELECT id, priority FROM jobs
                    WHERE status = 'pending' AND NOT held AND model_match <> 'any' AND model = m.name
                    ORDER BY priority DESC, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) c
                UNION ALL
                SELECT c.id, c.priority
                FROM unnest(@families::text[]) AS f(name)
                CROSS JOIN LATERAL (
                    SELECT id, priority FROM jobs
                    WHERE status = 'pending' AND NOT held AND model_match = 'family' AND family = f.name
                    ORDER BY priority DESC, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) c
                UNION ALL
                SELECT c.id, c.priority
                FROM (
                    SELECT id, priority FROM jobs
                    WHERE @catchAll AND status = 'pending' AND NOT held AND model_match = 'any'
                    ORDER BY priority DESC, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) c
            ), best AS (
                SELECT id FROM candidates ORDER BY priority DESC, id LIMIT 1
            ), claimed AS (
                UPDATE jobs j SET status = 'claimed', worker_id = @workerId, claimed_at = @now, attempts = j.attempts + 1
                FROM best
                WHERE j.id = best.id
                RETURNING j.id, j.model, j.family, j.model_match, j.prompt, j.priority, j.timeout_seconds, j.attempts, j.params::text AS params, j.account_id
            ), counted AS (
                -- A request counts when its job is claimed.
                INSERT INTO quota_usage (account_id, day, shard, requests)
                SELECT account_id, @today, @shard, 1 FROM claimed
                ON CONFLICT (account_id, day, shard) DO UPDATE SET requests = quota_usage.requests + 1
                RETURNING requests
            )
            SELECT c.*,
                -- This shard's count after the claim, plus the other shards as committed: reached means enforce now.
                CASE WHEN p.daily_requests IS NULL THEN false
                     ELSE (SELECT requests FROM counted) + (
                              SELECT coalesce(sum(q.requests), 0) FROM quota_usage q
                              WHERE q.account_id = c.account_id AND q.day = @today AND q.shard <> @shard) >= p.daily_requests
                END AS quota_reached,
                EXISTS (SELECT 1 FROM job_blobs jb WHERE jb.job_id = c.id) AS has_blobs
            FROM claimed c JOIN accounts a ON a.id = c.account_id JOIN plans p ON p.id = a.plan
            """,
            new
            {
                workerId, models = capabilities.Models.ToArray(), families = capabilities.Families.ToArray(), catchAll = capabilities.CatchAll,
                now = time.GetUtcNow(), today = quotas.Today, shard = quotas.ShardFor(workerId),
            },
            cancellationToken: cancellationToken));
        // Only the claim that reaches the limit pays for enforcement. Concurrent claims can overshoot a request limit
        // by at most the claims in flight when it is reached (each sees the others' counts only once committed).
        if (job is { QuotaReached: true }) await quotas.EnforceAsync(job.AccountId, CancellationToken.None);
        return job;
    }

    /// <summary>Gives back a claim whose poll was abandoned (the worker disconnected): the job is pending again and not counted as an attempt.</summary>
    public async Task ReleaseClaimAsync(long workerId, ClaimedJob job)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        var released = await connection.ExecuteAsync("""
            UPDATE jobs SET status = 'pending', worker_id = NULL, claimed_at = NULL, attempts = attempts - 1
            WHERE id = @id AND worker_id = @workerId AND status = 'claimed'
            """, new { id = job.Id, workerId });
        if (released == 1) signals.WorkAvailable(WakeKeys.ForJob(job.ModelMatch, job.Model, job.Family));
    }

    /// <summary>claimed → running, by the worker that holds the job.</summary>
    public Task<Transition<string>> StartAsync(long workerId, long jobId, CancellationToken cancellationToken = default) =>
        WorkerTransitionAsync(workerId, jobId, [JobStatus.Claimed], "status = 'running', started_at = @now", null, cancellationToken);

    /// <summary>
    /// running → completed with the worker's result. The same statement appends the usage ledger row, the worker's
    /// credit entry and the account's token count, so none of them can exist without the others.
    /// </summary>
    public async Task<Transition<string>> CompleteAsync(long workerId, long jobId, JobResult result, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var done = await connection.QuerySingleOrDefaultAsync<(long AccountId, bool TokenLimitReached)>(new CommandDefinition("""
            WITH done AS (
                UPDATE jobs SET status = 'completed', output = @output, input_tokens = @inputTokens, output_tokens = @outputTokens,
                    duration_ms = @durationMs, model_used = @modelUsed, completed_at = @now
                WHERE id = @jobId AND worker_id = @workerId AND status = 'running'
                RETURNING id, account_id, tag, model, worker_id
            ), ledger AS (
                INSERT INTO usage_ledger (account_id, job_id, tag, model, input_tokens, output_tokens, created_at)
                SELECT account_id, id, tag, COALESCE(@modelUsed, model), COALESCE(@inputTokens, 0), @outputTokens, @now FROM done
            ), credit AS (
                INSERT INTO worker_credits (worker_id, job_id, credits, output_tokens, duration_ms, created_at)
                SELECT worker_id, id, round(@outputTokens / 1000.0 * @rate, 4), @outputTokens, @durationMs, @now FROM done
            ), tokens AS (
                -- Tokens count when results arrive.
                INSERT INTO quota_usage (account_id, day, shard, tokens)
                SELECT account_id, @today, @shard, COALESCE(@inputTokens, 0) + @outputTokens FROM done
                ON CONFLICT (account_id, day, shard) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens
                RETURNING tokens
            )
            SELECT d.account_id,
                CASE WHEN p.daily_tokens IS NULL THEN false
                     ELSE (SELECT tokens FROM tokens) + (
                              SELECT coalesce(sum(q.tokens), 0) FROM quota_usage q
                              WHERE q.account_id = d.account_id AND q.day = @today AND q.shard <> @shard) >= p.daily_tokens
                END
            FROM done d JOIN accounts a ON a.id = d.account_id JOIN plans p ON p.id = a.plan
            """,
            new
            {
                jobId, workerId, output = result.Output, inputTokens = result.InputTokens, outputTokens = result.OutputTokens,
                durationMs = result.DurationMs, modelUsed = result.ModelUsed, now = time.GetUtcNow(), today = quotas.Today,
                shard = quotas.ShardFor(workerId), rate = accounting.Value.CreditsPerThousandOutputTokens,
            },
            cancellationToken: cancellationToken));
        if (done.AccountId == 0) return await WhyNotAsync(connection, workerId, jobId, cancellationToken);
        if (done.TokenLimitReached) await quotas.EnforceAsync(done.AccountId, CancellationToken.None);
        return Transition<string>.Done(JobStatus.Completed);
    }

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

    /// <summary>Why a worker transition changed nothing. A worker only ever sees jobs it holds or held: anything else is not found.</summary>
    private static async Task<Transition<string>> WhyNotAsync(NpgsqlConnection connection, long workerId, long jobId, CancellationToken cancellationToken)
    {
        var current = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT status FROM jobs WHERE id = @jobId AND worker_id = @workerId",
            new { jobId, workerId }, cancellationToken: cancellationToken));
        return current is null ? Transition<string>.NotFound() : Transition<string>.WrongState(current);
    }
}
