using Coordinator.Grid.Dispatch;
using Dapper;
using Npgsql;

namespace Coordinator.Grid.Jobs;

/// <summary>
/// The jobs table: inserts, client operations and worker transitions. Every transition is one conditional
/// UPDATE on the expected state; zero rows means the caller lost a race or is not entitled to the job.
/// </summary>
public sealed class JobStore(NpgsqlDataSource dataSource, TimeProvider time, WorkSignals signals)
{
    // What clients see of a job: everything but the prompt, which can be large and which they sent themselves.
    private const string ClientColumns = """
        id, account_id, status, model, family, model_match, priority, timeout_seconds, tag, webhook_url,
        output, input_tokens, output_tokens, duration_ms, model_used, error, worker_id, attempts,
        created_at, claimed_at, started_at, completed_at
        """;

    private const string ClaimedColumns = "id, model, family, model_match, prompt, priority, timeout_seconds, attempts";

    public async Task<JobRow> SubmitAsync(long accountId, NewJob job, CancellationToken cancellationToken = default)
    {
        var family = job.Model is null ? null : ModelNames.FamilyOf(job.Model);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleAsync<JobRow>(new CommandDefinition($"""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, tag, webhook_url, created_at)
            VALUES (@accountId, 'pending', @model, @family, @modelMatch, @prompt,
                    COALESCE(@priority, (SELECT default_priority FROM accounts WHERE id = @accountId)),
                    @timeoutSeconds, @tag, @webhookUrl, @now)
            RETURNING {ClientColumns}
            """,
            new
            {
                accountId, model = job.Model, family, modelMatch = job.ModelMatch, prompt = job.Prompt, priority = job.Priority,
                timeoutSeconds = job.TimeoutSeconds, tag = job.Tag, webhookUrl = job.WebhookUrl, now = time.GetUtcNow(),
            },
            cancellationToken: cancellationToken));
        signals.WorkAvailable(WakeKeys.ForJob(row.ModelMatch, row.Model, row.Family));
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
        return await connection.QuerySingleOrDefaultAsync<ClaimedJob>(new CommandDefinition($"""
            WITH candidates AS (
                SELECT c.id, c.priority
                FROM unnest(@models::text[]) AS m(name)
                CROSS JOIN LATERAL (
                    SELECT id, priority FROM jobs
                    WHERE status = 'pending' AND model_match <> 'any' AND model = m.name
                    ORDER BY priority DESC, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) c
                UNION ALL
                SELECT c.id, c.priority
                FROM unnest(@families::text[]) AS f(name)
                CROSS JOIN LATERAL (
                    SELECT id, priority FROM jobs
                    WHERE status = 'pending' AND model_match = 'family' AND family = f.name
                    ORDER BY priority DESC, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) c
                UNION ALL
                SELECT c.id, c.priority
                FROM (
                    SELECT id, priority FROM jobs
                    WHERE @catchAll AND status = 'pending' AND model_match = 'any'
                    ORDER BY priority DESC, id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ) c
            ), best AS (
                SELECT id FROM candidates ORDER BY priority DESC, id LIMIT 1
            )
            UPDATE jobs j SET status = 'claimed', worker_id = @workerId, claimed_at = @now, attempts = j.attempts + 1
            FROM best
            WHERE j.id = best.id
            RETURNING {string.Join(", ", ClaimedColumns.Split(", ").Select(c => "j." + c))}
            """,
            new { workerId, models = capabilities.Models.ToArray(), families = capabilities.Families.ToArray(), catchAll = capabilities.CatchAll, now = time.GetUtcNow() },
            cancellationToken: cancellationToken));
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

    /// <summary>running → completed with the worker's result.</summary>
    public Task<Transition<string>> CompleteAsync(long workerId, long jobId, JobResult result, CancellationToken cancellationToken = default) =>
        WorkerTransitionAsync(workerId, jobId, [JobStatus.Running], """
            status = 'completed', output = @output, input_tokens = @inputTokens, output_tokens = @outputTokens,
            duration_ms = @durationMs, model_used = @modelUsed, completed_at = @now
            """,
            new { output = result.Output, inputTokens = result.InputTokens, outputTokens = result.OutputTokens, durationMs = result.DurationMs, modelUsed = result.ModelUsed },
            cancellationToken);

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
        if (status is not null) return Transition<string>.Done(status);

        // A worker only ever sees jobs it holds or held: anything else is not found.
        var current = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT status FROM jobs WHERE id = @jobId AND worker_id = @workerId",
            new { jobId, workerId }, cancellationToken: cancellationToken));
        return current is null ? Transition<string>.NotFound() : Transition<string>.WrongState(current);
    }
}
