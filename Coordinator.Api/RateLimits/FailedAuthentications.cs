using System.Collections.Concurrent;
using Coordinator.Api.Lightning;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.RateLimits;

/// <summary>
/// Failures counted per client address in clock-aligned windows, like the request limits' (so every silo's windows start
/// together); each silo allows its share of the limit (<see cref="ActiveSilos.ShareOf"/>). An address past its share is
/// refused until its window ends. Used for failed authentications on the APIs (<see cref="FailedAuthentications"/>) and
/// on the operator surfaces (<c>OperatorGate</c>), each with its own limit and counts.
/// </summary>
public sealed class FailureWindows(ActiveSilos silos, TimeProvider clock)
{
    /// <summary>Addresses tracked before the ones whose window has ended are swept out.</summary>
    private const int SweepAbove = 10_000;

    private sealed class Window(long endTicks)
    {
        public readonly long EndTicks = endTicks;
        public int Failures;
    }

    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    /// <summary>When the address may try again, if it has used up <paramref name="limit"/> this window; null when it may go on (or there is no limit).</summary>
    public DateTimeOffset? RefusedUntil(string address, GroupLimit? limit)
    {
        if (limit is null || !_windows.TryGetValue(address, out var window)) return null;
        var now = clock.GetUtcNow().UtcTicks;
        if (window.EndTicks <= now) return null;
        return Volatile.Read(ref window.Failures) >= silos.ShareOf(limit.PermitLimit) ? new DateTimeOffset(window.EndTicks, TimeSpan.Zero) : null;
    }

    /// <summary>Counts one failure from <paramref name="address"/> in the window of <paramref name="limit"/> (nothing without a limit).</summary>
    public void Record(string address, GroupLimit? limit)
    {
        if (limit is null) return;
        var end = RateLimitPolicies.WindowEnd(clock.GetUtcNow(), limit.Window).UtcTicks;
        var window = _windows.AddOrUpdate(address, _ => new Window(end), (_, current) => current.EndTicks == end ? current : new Window(end));
        Interlocked.Increment(ref window.Failures);
        if (_windows.Count > SweepAbove) Sweep();
    }

    private void Sweep()
    {
        var now = clock.GetUtcNow().UtcTicks;
        foreach (var (address, window) in _windows)
        {
            if (window.EndTicks <= now) _windows.TryRemove(new KeyValuePair<string, Window>(address, window));
        }
    }
}

/// <summary>
/// Failed authentications per client address (<see cref="RateLimitOptions.FailedAuthentications"/>): each answer 401
/// counts against the address it went to. An address past its share gets 429 on every request until its window ends. The
/// request limiter cannot do this itself: it decides before the request runs, and whether a key was good is known only after.
/// </summary>
public sealed class FailedAuthentications(IOptionsMonitor<RateLimitOptions> options, ActiveSilos silos, TimeProvider clock)
{
    private readonly FailureWindows _failures = new(silos, clock);

    /// <summary>When the address may try again, if it has used up its failures for this window; null when it may go on.</summary>
    public DateTimeOffset? RefusedUntil(string address) => _failures.RefusedUntil(address, Limit());

    /// <summary>Counts one failed authentication from <paramref name="address"/>.</summary>
    public void Record(string address) => _failures.Record(address, Limit());

    private GroupLimit? Limit()
    {
        var current = options.CurrentValue;
        return current.Enabled && current.FailedAuthentications.PermitLimit > 0 ? current.FailedAuthentications : null;
    }
}

/// <summary>The middleware that refuses addresses past <see cref="RateLimitOptions.FailedAuthentications"/> and counts every 401.</summary>
public static class FailedAuthenticationLimit
{
    /// <summary>After the rate limiter (and so after routing and the trusted proxies); health checks are never refused.</summary>
    public static IApplicationBuilder UseFailedAuthenticationLimit(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        if (context.Request.Path.StartsWithSegments("/api/v1/health", StringComparison.OrdinalIgnoreCase))
        {
            await next(context);
            return;
        }
        var failures = context.RequestServices.GetRequiredService<FailedAuthentications>();
        var address = context.ClientAddress();
        if (failures.RefusedUntil(address) is { } until)
        {
            context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
            var wait = until - context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
            await RateLimitRejections.WriteAsync(context, wait, seconds => $"too many failed authentications from this address; retry after {seconds} s", context.RequestAborted);
            return;
        }
        await next(context);
        if (context.Response.StatusCode == StatusCodes.Status401Unauthorized) failures.Record(address);
    });
}
