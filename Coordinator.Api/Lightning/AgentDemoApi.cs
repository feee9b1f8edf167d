using System.Globalization;
using System.Text;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Lightning.Agent;
using Coordinator.Grains.Lightning.Demo;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Lightning;

/// <summary>
/// <c>GET /api/demo?request=</c> (the spec's tag <c>demo</c>): the agent's work model, without payment, limited per
/// client IP address across silos (<see cref="DemoRateLimiter"/>, 5 an hour by default). The request is counted before
/// anything else, its parameter included, as the spec's README requires, and every answer carries the limit's
/// <c>X-RateLimit-*</c> headers, an error page included.
/// </summary>
public static class AgentDemoApi
{
    /// <summary>Adds the rate limiter (<c>Lightning:Demo</c>) and the trusted proxies (<c>Network:TrustedProxies</c>) the client address comes from.</summary>
    public static IServiceCollection AddAgentDemoApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddDemoRateLimiter(configuration);
        services.AddTrustedProxies(configuration);
        return services;
    }

    public static RouteHandlerBuilder MapAgentDemoApi(this IEndpointRouteBuilder routes) =>
        routes.MapGet("/api/demo", RunAsync).ExcludeFromDescription();

    public static async Task<IResult> RunAsync(HttpContext context, DemoRateLimiter limiter, IAgentRunner runner, IOptions<AgentOptions> options)
    {
        var decision = await limiter.HitAsync(context.ClientAddress(), context.RequestAborted);
        // On starting, so that the headers survive an error page that clears the response first.
        context.Response.OnStarting(() =>
        {
            var headers = context.Response.Headers;
            headers["X-RateLimit-Limit"] = decision.Limit.ToString(CultureInfo.InvariantCulture);
            headers["X-RateLimit-Remaining"] = decision.Remaining.ToString(CultureInfo.InvariantCulture);
            headers["X-RateLimit-Reset"] = decision.ResetUnixSeconds.ToString(CultureInfo.InvariantCulture);
            return Task.CompletedTask;
        });
        if (!decision.Allowed)
        {
            context.Response.Headers.RetryAfter = Math.Max(1, decision.ResetUnixSeconds - DateTimeOffset.UtcNow.ToUnixTimeSeconds()).ToString(CultureInfo.InvariantCulture);
            return AgentErrors.Error(StatusCodes.Status429TooManyRequests,
                $"the free demo allows {decision.Limit} requests per hour from one address; try again after {decision.ResetAt:u}, or pay per job with POST /api/jobs");
        }

        var agent = options.Value;
        var values = context.Request.Query["request"];
        if (values.Count != 1 || string.IsNullOrWhiteSpace(values[0])) return AgentErrors.BadRequest("the query parameter 'request' is required, once, and must not be empty");
        var request = values[0]!;
        if (Encoding.UTF8.GetByteCount(request) > agent.MaxRequestBytes) return AgentErrors.BadRequest($"request is larger than the limit of {agent.MaxRequestBytes} bytes");
        if (request.Contains('\0', StringComparison.Ordinal)) return AgentErrors.BadRequest("request must not contain NUL characters");

        var jobId = await runner.SubmitAsync(agent.WorkModel, request, $"lightning-demo:{Guid.NewGuid():N}", context.RequestAborted);
        var job = await runner.WaitAsync(jobId, context.RequestAborted);
        return job.Status == JobStatus.Completed
            ? TypedResults.Json(new DemoResponseDto(job.Output ?? ""))
            : AgentErrors.Error(StatusCodes.Status500InternalServerError, job.Status == JobStatus.Cancelled
                ? "no worker took the demo's work in time; try again later"
                : $"the demo's work failed: {job.Error ?? "the worker gave no reason"}");
    }
}
