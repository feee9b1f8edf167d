namespace Coordinator.Api.Aitbc;

/// <summary>Marks the endpoints of the AITBC front door: they answer only on its port.</summary>
public sealed class AitbcEndpoint
{
    public static readonly AitbcEndpoint Instance = new();
}

/// <summary>The AITBC API's endpoints, at the spec's paths, on the AITBC port (see <see cref="AitbcFrontDoor"/>).</summary>
public static class AitbcApi
{
    public static IEndpointRouteBuilder MapAitbc(this IEndpointRouteBuilder routes)
    {
        var aitbc = routes.MapGroup("").WithMetadata(AitbcEndpoint.Instance).ExcludeFromDescription()
            .RequireRateLimiting(RateLimits.RateLimitPolicies.Aitbc);
        aitbc.MapGet("/health", (Microsoft.Extensions.Options.IOptions<AitbcOptions> options) =>
            TypedResults.Ok(new AitbcHealth("ok", options.Value.Version)));
        aitbc.MapAitbcJobs();
        aitbc.MapAitbcMiners();
        aitbc.MapAitbcReceipts();
        aitbc.MapSigningKeys();
        aitbc.MapExplorer();
        return routes;
    }

    /// <summary>
    /// Keeps the two front doors apart after routing: on the AITBC port only AITBC endpoints answer, on the main port
    /// none of them do. Anything else is the front door's 404.
    /// </summary>
    public static IApplicationBuilder UseAitbcPort(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            var onAitbcPort = AitbcFrontDoor.Serves(context);
            var endpoint = context.GetEndpoint();
            var isAitbc = endpoint?.Metadata.GetMetadata<AitbcEndpoint>() is not null;
            if (onAitbcPort && !isAitbc)
            {
                // The router's own 405 endpoint carries no metadata: keep it when the path is an AITBC one.
                if (endpoint is not null && endpoint.DisplayName?.StartsWith("405", StringComparison.Ordinal) == true)
                {
                    await next(context);
                    return;
                }
                context.SetEndpoint(null);
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                await context.Response.WriteAsJsonAsync(AitbcFrontDoor.StatusPage(StatusCodes.Status404NotFound));
                return;
            }
            if (!onAitbcPort && isAitbc) context.SetEndpoint(null);
            await next(context);
        });
}

public sealed record AitbcHealth(string Status, string Version);
