using System.Globalization;
using Coordinator.Grains.Telemetry;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Coordinator.Api.Infrastructure;

/// <summary>
/// Requests about one job (any route with a job id: <c>/jobs/{id}</c>, <c>/worker/jobs/{id}/…</c>, the AITBC and agent
/// <c>/jobs/{job_id}</c>) run in its <see cref="JobLogScope"/>, so every line logged from routing on names the job.
/// </summary>
public static class JobLogScopes
{
    /// <summary>After routing: the endpoint's route says whether the request is about a job.</summary>
    public static IApplicationBuilder UseJobLogScopes(this IApplicationBuilder app)
    {
        var logger = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("Coordinator.Api.Jobs");
        return app.Use(async (context, next) =>
        {
            if (JobIdOf(context) is not { } jobId)
            {
                await next(context);
                return;
            }
            using (logger.BeginScope(new JobLogScope(jobId))) await next(context);
        });
    }

    private static long? JobIdOf(HttpContext context)
    {
        if (context.GetEndpoint() is not RouteEndpoint { RoutePattern: var pattern }) return null;
        var segments = pattern.PathSegments;
        for (var i = 1; i < segments.Count; i++)
        {
            if (segments[i - 1].Parts is [RoutePatternLiteralPart { Content: var literal }] && literal.Equals("jobs", StringComparison.OrdinalIgnoreCase)
                && segments[i].Parts is [RoutePatternParameterPart { Name: var name }]
                && context.GetRouteValue(name) is { } value
                && long.TryParse(Convert.ToString(value, CultureInfo.InvariantCulture), NumberStyles.Integer, CultureInfo.InvariantCulture, out var id))
            {
                return id;
            }
        }
        return null;
    }
}
