namespace Coordinator.Grains.Lightning.Demo;

/// <summary>
/// The answer to one counted request: whether it may proceed, and what the <c>X-RateLimit-Limit</c>,
/// <c>X-RateLimit-Remaining</c> and <c>X-RateLimit-Reset</c> headers say (a denied request is a 429).
/// </summary>
/// <param name="Allowed">Whether this request is within the limit.</param>
/// <param name="Limit">Requests allowed per window.</param>
/// <param name="Remaining">Requests left in the window after this one; 0 once denied.</param>
/// <param name="ResetAt">When the window ends and the count starts again.</param>
public sealed record RateLimitDecision(bool Allowed, int Limit, int Remaining, DateTimeOffset ResetAt)
{
    /// <summary><see cref="ResetAt"/> in Unix seconds, rounded up so that a client waiting until then is never early.</summary>
    public long ResetUnixSeconds => (ResetAt.ToUnixTimeMilliseconds() + 999) / 1000;
}
