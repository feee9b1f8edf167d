using Coordinator.Api.Infrastructure;
using Coordinator.Api.Workers;
using Orleans.Runtime;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;

namespace Coordinator.Api.Health;

/// <summary>
/// The silo's health: <c>node</c> is this silo's address in the cluster, <c>listening</c> whether it is an active member
/// (so that work arriving on other silos reaches the polls waiting here), <c>parked_polls</c> how many worker polls wait
/// on this silo's front end.
/// </summary>
public sealed record HealthDto(string Status, string Database, string Node, bool Listening, int ParkedPolls,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Error = null);

/// <summary>
/// <c>GET /api/v1/health</c>: readiness, answered within about two seconds: 503 <c>unavailable</c> while PostgreSQL does
/// not answer, and 503 <c>stopping</c> from the moment the silo begins a graceful stop (SIGTERM), so that load balancers
/// and the Kubernetes readiness probe stop sending it requests. Liveness is <c>/api/healthz</c>, which stays 200.
/// </summary>
public static class HealthApi
{
    private static readonly TimeSpan DatabaseCheckTimeout = TimeSpan.FromSeconds(2);

    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder routes)
    {
        // Load balancers and orchestrators probe it: never rate limited.
        routes.MapGet("/health", CheckAsync).WithTags("Health").DisableRateLimiting();
        return routes;
    }

    public static async Task<Results<Ok<HealthDto>, JsonHttpResult<HealthDto>>> CheckAsync(
        NpgsqlDataSource dataSource, PollsWaiting polls, ILocalSiloDetails silo, IClusterMembershipService membership, IHostApplicationLifetime lifetime,
        CancellationToken cancellationToken)
    {
        if (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return TypedResults.Json(new HealthDto("stopping", "unchecked", silo.SiloAddress.ToString(), Active(silo, membership), polls.Count,
                "this silo is stopping: send requests to another"), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(DatabaseCheckTimeout);
        try
        {
            await using var command = dataSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(timeout.Token);
            return TypedResults.Ok(new HealthDto("ok", "ok", silo.SiloAddress.ToString(), Active(silo, membership), polls.Count));
        }
        catch (Exception exception) when (exception is OperationCanceledException || ErrorHandling.IsDatabaseUnavailable(exception) || exception is NpgsqlException)
        {
            var reason = exception is OperationCanceledException ? $"no answer within {DatabaseCheckTimeout.TotalSeconds:0} s" : exception.Message;
            return TypedResults.Json(new HealthDto("unavailable", "unreachable", silo.SiloAddress.ToString(), Active(silo, membership), polls.Count,
                $"PostgreSQL is not reachable: {reason}"), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    // An active member of the cluster: grains and work from the other silos reach it.
    private static bool Active(ILocalSiloDetails silo, IClusterMembershipService membership) =>
        membership.CurrentSnapshot.GetSiloStatus(silo.SiloAddress) == SiloStatus.Active;
}
