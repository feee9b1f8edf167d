using Dapper;
using Npgsql;

namespace Coordinator.Grains.Aitbc;

/// <summary>A job as the AITBC API shows it: with its prompt, and the miner (the worker) that holds or ran it.</summary>
public sealed class AitbcJobRow
{
    public long Id { get; init; }
    public long AccountId { get; init; }
    public string Status { get; init; } = "";
    public string Prompt { get; init; } = "";
    public string? Model { get; init; }
    /// <summary>Generation parameters as JSON text, or null.</summary>
    public string? Params { get; init; }
    public string? Output { get; init; }
    public string? Error { get; init; }
    /// <summary>The worker's miner id, or <c>worker-&lt;id&gt;</c> for a worker that never registered through AITBC; null before a worker took the job.</summary>
    public string? MinerId { get; init; }
    public DateTime CreatedAt { get; init; }
    public DateTime? StartedAt { get; init; }
    public DateTime? CompletedAt { get; init; }
}

/// <summary>A registered miner: the worker behind a miner id, and its account.</summary>
public sealed record Miner(long WorkerId, long AccountId);

/// <summary>The reads the AITBC front door needs beyond the Grid API's: jobs with their prompt and miner, and miners by id.</summary>
public sealed class AitbcStore(NpgsqlDataSource dataSource)
{
    /// <summary>The statuses of ours that an AITBC status covers: its <c>running</c> is our claimed or running.</summary>
    public static IReadOnlyList<string> OurStatuses(string aitbcStatus) =>
        aitbcStatus == "running" ? [Jobs.JobStatus.Claimed, Jobs.JobStatus.Running] : [aitbcStatus];

    // started_at falls back to claimed_at: for AITBC a claimed job is running.
    private const string Columns = """
        j.id, j.account_id, j.status, j.prompt, j.model, j.params::text AS params, j.output, j.error,
        CASE WHEN w.id IS NULL THEN NULL ELSE COALESCE(w.miner_id, 'worker-' || w.id) END AS minerid,
        j.created_at, COALESCE(j.started_at, j.claimed_at) AS startedat, j.completed_at
        """;

    /// <summary>
    /// The job: of <paramref name="accountId"/> (another account's job is not found), or, without one, of any account, as
    /// a miner sees the jobs it is offered and holds (miners serve the whole grid). Null when there is none.
    /// </summary>
    public async Task<AitbcJobRow?> GetAsync(long jobId, long? accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<AitbcJobRow>(new CommandDefinition(
            $"SELECT {Columns} FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id WHERE j.id = @jobId AND (@accountId::bigint IS NULL OR j.account_id = @accountId)",
            new { jobId, accountId }, cancellationToken: cancellationToken));
    }

    /// <summary>The account's jobs, newest first, optionally in some of our statuses.</summary>
    public async Task<IReadOnlyList<AitbcJobRow>> ListAsync(long accountId, IReadOnlyList<string>? statuses, int offset, int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<AitbcJobRow>(new CommandDefinition($"""
            SELECT {Columns} FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id
            WHERE j.account_id = @accountId AND (@statuses::text[] IS NULL OR j.status = ANY(@statuses))
            ORDER BY j.id DESC OFFSET @offset LIMIT @limit
            """, new { accountId, statuses = statuses?.ToArray(), offset, limit }, cancellationToken: cancellationToken))).AsList();
    }

    /// <summary>The worker with this miner id, or null.</summary>
    public async Task<Miner?> FindMinerAsync(string minerId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<(long WorkerId, long AccountId)?>(new CommandDefinition(
            "SELECT id, account_id FROM workers WHERE miner_id = @minerId", new { minerId }, cancellationToken: cancellationToken));
        return row is { } found ? new Miner(found.WorkerId, found.AccountId) : null;
    }
}
