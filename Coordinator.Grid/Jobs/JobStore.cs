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
public sealed partial class JobStore(NpgsqlDataSource dataSource, TimeProvider time, WorkSignals signals, Quotas quotas, IOptions<AccountingOptions> accounting)
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
    /// <remarks>Concurrent submissions share one transaction (one commit); see <c>SubmitBatchAsync</c>.</remarks>
    public async Task<JobRow> SubmitAsync(long accountId, NewJob job, CancellationToken cancellationToken = default)
    {
        var row = (await Submits.RunAsync((accountId, job), cancellationToken)).Value;
        if (!row.Held) signals.WorkAvailable(WakeKeys.ForJob(row.ModelMatch, row.Model, row.Family));
        return row;
    }

    private async Task<JobRow> InsertAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, long accountId, NewJob job)
    {
        var family = job.Model is null ? null : ModelNames.FamilyOf(job.Model);
        return await connection.QuerySingleAsync<JobRow>(new CommandDefinition($"""
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
            transaction));
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
