using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Threading.RateLimiting;
using Coordinator.Api.Aitbc;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Lightning;
using Coordinator.Api.OpenAi;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.RateLimits;

/// <summary>
/// Request rate limits per endpoint group, on ASP.NET Core's rate limiter: one policy per group, applied once on the
/// group (<c>RequireRateLimiting</c>), configured by <see cref="RateLimitOptions"/>. A refused request answers 429 with
/// <c>Retry-After</c> and the error body of the API its endpoint belongs to.
/// </summary>
public static class RateLimitPolicies
{
    public const string Grid = "grid";
    public const string Workers = "workers";
    public const string WorkerPolls = "worker-polls";
    public const string Aitbc = "aitbc";
    public const string Agent = "agent";
    public const string OpenAi = "openai";
    public const string SignUp = "sign-up";
    public const string DashboardSignIn = "dashboard-sign-in";

    /// <summary>Registers the options (validated at start-up), the cluster size the limits are shared by, and the policies.</summary>
    public static IServiceCollection AddRateLimits(this IServiceCollection services)
    {
        services.AddOptions<RateLimitOptions>().BindConfiguration(RateLimitOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ActiveSilos>();
        services.AddSingleton<FailedAuthentications>();
        services.AddRateLimiter(limiter =>
        {
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.OnRejected = RateLimitRejections.WriteAsync;
            foreach (var (name, group) in RateGroups) limiter.AddPolicy(name, context => Rate(context, group));
            limiter.AddPolicy(WorkerPolls, Polls);
        });
        return services;
    }

    /// <summary>A group counted by request rate: where its limit is configured, and what identifies a caller.</summary>
    internal sealed record RateGroup(Func<RateLimitOptions, GroupLimit> Limit, Func<HttpContext, string?> Credential, Func<HttpContext, bool>? Counts = null);

    internal static readonly IReadOnlyDictionary<string, RateGroup> RateGroups = new Dictionary<string, RateGroup>
    {
        [Grid] = new(options => options.Grid, BearerCredential),
        [Workers] = new(options => options.Workers, BearerCredential),
        [Aitbc] = new(options => options.Aitbc, AitbcCredential),
        [Agent] = new(options => options.Agent, BearerCredential),
        [OpenAi] = new(options => options.OpenAi, BearerCredential),
        [SignUp] = new(options => options.SignUp, _ => null),
        // Sign-in attempts only: showing the sign-in page (GET) is not counted.
        [DashboardSignIn] = new(options => options.DashboardSignIn, _ => null, context => HttpMethods.IsPost(context.Request.Method)),
    };

    /// <summary>
    /// When the window that <paramref name="now"/> falls in ends. Windows are aligned on the clock (multiples of their
    /// length since 0001-01-01 UTC), so every silo's windows start together and a refusal can say when its window reopens.
    /// </summary>
    internal static DateTimeOffset WindowEnd(DateTimeOffset now, TimeSpan window) => new((now.UtcTicks / window.Ticks + 1) * window.Ticks, TimeSpan.Zero);

    private static RateLimitPartition<string> Rate(HttpContext context, RateGroup group)
    {
        var options = context.RequestServices.GetRequiredService<IOptionsMonitor<RateLimitOptions>>().CurrentValue;
        var limit = group.Limit(options);
        if (!options.Enabled || limit.PermitLimit == 0 || group.Counts?.Invoke(context) == false) return RateLimitPartition.GetNoLimiter("");
        var share = context.RequestServices.GetRequiredService<ActiveSilos>().ShareOf(limit.PermitLimit);
        var window = limit.Window;
        var end = WindowEnd(context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow(), window);
        // Each clock window of each caller is a limiter of its own, made for that window's share: when the window ends, or
        // a silo joins or leaves, callers move to fresh limiters (the limiter's idle sweep drops the old ones). So the
        // window follows the injected clock, not the limiter's own timer, which only refills a limiter no longer used.
        return RateLimitPartition.GetFixedWindowLimiter($"{share}/{end.UtcTicks}|{CallerOf(context, group.Credential)}", _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = share,
            Window = window,
            QueueLimit = 0,
            AutoReplenishment = true,
        });
    }

    private static RateLimitPartition<string> Polls(HttpContext context)
    {
        var options = context.RequestServices.GetRequiredService<IOptionsMonitor<RateLimitOptions>>().CurrentValue;
        var limit = options.WorkerPollConcurrency;
        if (!options.Enabled || limit == 0) return RateLimitPartition.GetNoLimiter("");
        return RateLimitPartition.GetConcurrencyLimiter($"{limit}|{CallerOf(context, BearerCredential)}", _ => new ConcurrencyLimiterOptions
        {
            PermitLimit = limit,
            // Past the limit a poll is refused at once: a queued poll would only wait to start waiting.
            QueueLimit = 0,
        });
    }

    private static string? BearerCredential(HttpContext context) => context.Request.Headers.Authorization.ToString() is { Length: > 0 } value ? value : null;

    private static string? AitbcCredential(HttpContext context) => context.Request.Headers[AitbcFrontDoor.ApiKeyHeader].ToString() is { Length: > 0 } value ? value : null;

    /// <summary>
    /// Who is counted: the credential the request carries, as a hash (keys are never kept in the clear, and the limiter
    /// runs before authentication, so an invalid key is counted as its own caller), else the client address.
    /// </summary>
    private static string CallerOf(HttpContext context, Func<HttpContext, string?> credential) =>
        credential(context) is { } presented
            ? "key:" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(presented.Trim())), 0, 16)
            : "ip:" + context.ClientAddress();
}

/// <summary>The 429 of a refused request, in the error shape of the front door it came to.</summary>
internal static class RateLimitRejections
{
    public static async ValueTask WriteAsync(OnRejectedContext rejected, CancellationToken cancellation)
    {
        var context = rejected.HttpContext;
        var policy = context.GetEndpoint()?.Metadata.GetMetadata<EnableRateLimitingAttribute>()?.PolicyName;
        var isPoll = policy == RateLimitPolicies.WorkerPolls;
        // A rate's window says when it reopens; a concurrency limit does not (a poll ends within its window): a second.
        var wait = TimeSpan.FromSeconds(1);
        if (policy is not null && RateLimitPolicies.RateGroups.TryGetValue(policy, out var group))
        {
            var window = group.Limit(context.RequestServices.GetRequiredService<IOptionsMonitor<RateLimitOptions>>().CurrentValue).Window;
            var now = context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
            wait = RateLimitPolicies.WindowEnd(now, window) - now;
        }
        await WriteAsync(context, wait, seconds => isPoll
            ? "this worker key already holds as many polls open on this node as it may; wait for one to end"
            : $"too many requests; retry after {seconds} s", cancellation);
    }

    /// <summary>
    /// Writes a 429's <c>Retry-After</c> (<paramref name="wait"/>, in whole seconds, at least 1) and body: the error of the
    /// API the request came to, or for a dashboard page a short HTML page.
    /// </summary>
    public static async ValueTask WriteAsync(HttpContext context, TimeSpan wait, Func<long, string> describe, CancellationToken cancellation)
    {
        var seconds = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds));
        context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        var message = describe(seconds);

        var response = context.Response;
        if (AitbcFrontDoor.Serves(context))
        {
            await response.WriteAsJsonAsync(new AitbcError(message, "rate_limited"), cancellation);
        }
        else if (OpenAiFrontDoor.Serves(context))
        {
            // OpenAI's own rate-limit error; no x-should-retry header: retrying after the wait is what the SDKs should do.
            await response.WriteAsJsonAsync(new OpenAiErrorBody(new OpenAiError(message, "requests", null, "rate_limit_exceeded")), cancellation);
        }
        else if (AgentErrors.Serves(context))
        {
            await response.WriteAsJsonAsync(new AgentError(message), cancellation);
        }
        else if (!context.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase))
        {
            // The dashboard: a person reads this, in a browser.
            response.ContentType = "text/html; charset=utf-8";
            await response.WriteAsync($"""
                <!DOCTYPE html>
                <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
                <title>Too many requests · Coordinator</title><link rel="stylesheet" href="/dashboard/assets/dashboard.css"></head>
                <body><main id="main"><h1>Too many requests</h1><div class="empty"><p>{System.Net.WebUtility.HtmlEncode(message)}.
                Then go back to <a href="/signin">sign in</a>.</p></div></main></body></html>
                """, cancellation);
        }
        else
        {
            await response.WriteAsJsonAsync(new ApiError("rate_limited", message), cancellation);
        }
    }
}
