using Dapper;
using Npgsql;

namespace Coordinator.Grains.Operator;

/// <summary>A worker that is online, for the operator's cluster view.</summary>
public sealed class OnlineWorker
{
    public long Id { get; init; }
    public long AccountId { get; init; }
    public string Name { get; init; } = "";
    public string? AgentVersion { get; init; }
    public DateTime LastSeenAt { get; init; }
}

/// <summary>The cluster view's reads from PostgreSQL (the workers table is their system of record).</summary>
public sealed class ClusterReads(NpgsqlDataSource dataSource)
{
    /// <summary>How many online workers the view lists; the count covers them all.</summary>
    public const int ListedWorkers = 200;

    /// <summary>Online workers: how many, and the most recently seen <see cref="ListedWorkers"/> of them.</summary>
    public async Task<(long Count, IReadOnlyList<OnlineWorker> Recent)> OnlineWorkersAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var count = await connection.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT count(*) FROM workers WHERE online", cancellationToken: cancellationToken));
        var recent = await connection.QueryAsync<OnlineWorker>(new CommandDefinition("""
            SELECT id, account_id, name, agent_version, last_seen_at
            FROM workers WHERE online
            ORDER BY last_seen_at DESC
            LIMIT @limit
            """, new { limit = ListedWorkers }, cancellationToken: cancellationToken));
        return (count, recent.AsList());
    }
}
