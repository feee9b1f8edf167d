using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Dispatch;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;

namespace Coordinator.Api.Health;

public sealed record HealthDto(string Status, string Database, string Node, bool Listening, int ParkedPolls,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Error = null);

/// <summary><c>GET /api/v1/health</c>: liveness and database readiness, answered within about two seconds.</summary>
public static class HealthApi
{
    private static readonly TimeSpan DatabaseCheckTimeout = TimeSpan.FromSeconds(2);

    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/health", CheckAsync).WithTags("Health");
        return routes;
    }

    public static async Task<Results<Ok<HealthDto>, JsonHttpResult<HealthDto>>> CheckAsync(
        NpgsqlDataSource dataSource, NodeNotifications notifications, WaiterRegistry registry, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(DatabaseCheckTimeout);
        try
        {
            await using var command = dataSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(timeout.Token);
            return TypedResults.Ok(new HealthDto("ok", "ok", notifications.NodeId, notifications.Listening, registry.ParkedCount));
        }
        catch (Exception exception) when (exception is OperationCanceledException || ErrorHandling.IsDatabaseUnavailable(exception) || exception is NpgsqlException)
        {
            var reason = exception is OperationCanceledException ? $"no answer within {DatabaseCheckTimeout.TotalSeconds:0} s" : exception.Message;
            return TypedResults.Json(new HealthDto("unavailable", "unreachable", notifications.NodeId, notifications.Listening, registry.ParkedCount,
                $"PostgreSQL is not reachable: {reason}"), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }
}
