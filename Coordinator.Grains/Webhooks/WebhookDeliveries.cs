using Dapper;
using Npgsql;

namespace Coordinator.Grains.Webhooks;

public sealed class WebhookDeliveryRow
{
    public long Id { get; init; }
    public long JobId { get; init; }
    public string Url { get; init; } = "";
    public string Event { get; init; } = "";
    public string Status { get; init; } = "";
    public int Attempts { get; init; }
    public int? LastStatusCode { get; init; }
    public string? LastError { get; init; }
    public DateTime CreatedAt { get; init; }
    public DateTime? NextAttemptAt { get; init; }
    public DateTime? DeliveredAt { get; init; }
}

/// <summary>An account's recent webhook deliveries and their state.</summary>
public sealed class WebhookDeliveries(NpgsqlDataSource dataSource)
{
    public const int Limit = 100;

    public async Task<IReadOnlyList<WebhookDeliveryRow>> ListAsync(long accountId, long? jobId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<WebhookDeliveryRow>(new CommandDefinition("""
            SELECT id, job_id, url, event, status, attempts, last_status_code, last_error, created_at,
                   CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, delivered_at
            FROM webhook_deliveries
            WHERE account_id = @accountId AND (@jobId::bigint IS NULL OR job_id = @jobId)
            ORDER BY id DESC LIMIT @limit
            """, new { accountId, jobId, limit = Limit }, cancellationToken: cancellationToken));
        return rows.AsList();
    }
}
