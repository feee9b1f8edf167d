using System.ComponentModel.DataAnnotations;

namespace Coordinator.Api.RateLimits;

/// <summary>One endpoint group's request rate: <see cref="PermitLimit"/> requests per <see cref="Window"/> per caller, cluster-wide.</summary>
public sealed class GroupLimit
{
    /// <summary>Requests a caller may make per window across the cluster; 0 turns this group's limit off.</summary>
    [Range(0, 1_000_000)]
    public int PermitLimit { get; set; }

    /// <summary>The fixed window the requests are counted in. Default: 1 minute.</summary>
    public TimeSpan Window { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>
/// Request rates per endpoint group, bound from the <c>RateLimits</c> configuration section. A caller is the API key or
/// token the request carries (hashed), or its client address (after <c>Network:TrustedProxies</c>) when it carries none.
/// Each silo enforces <c>PermitLimit / active silos</c> (at least 1), so that the cluster as a whole allows about the
/// configured figure (see README, "Rate limits").
/// </summary>
public sealed class RateLimitOptions : IValidatableObject
{
    public const string Section = "RateLimits";

    /// <summary>Whether any limit applies. Default: true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The Grid API's client endpoints (<c>/api/v1</c> but the worker protocol, sign-up and health), per key. Default: 600 a minute.</summary>
    public GroupLimit Grid { get; set; } = new() { PermitLimit = 600 };

    /// <summary>
    /// The worker protocol (<c>/api/v1/worker/*</c> but the long poll), per worker key. Default: 6,000 a minute (a worker
    /// streaming 64 jobs' chunks a few times a second stays under it).
    /// </summary>
    public GroupLimit Workers { get; set; } = new() { PermitLimit = 6_000 };

    /// <summary>
    /// Long polls (<c>GET /api/v1/worker/jobs/next</c>) a worker key may hold open at once on one silo; a poll past it is
    /// answered 429 at once. Polls are not counted against <see cref="Workers"/>. Not divided among silos: what it
    /// protects (a held request and a grain call) is each silo's own. Default: 64 (GridWorker's largest
    /// <c>--concurrency</c>); 0 turns it off.
    /// </summary>
    [Range(0, 100_000)]
    public int WorkerPollConcurrency { get; set; } = 64;

    /// <summary>The AITBC API on its own port, per <c>X-Api-Key</c>. Default: 600 a minute.</summary>
    public GroupLimit Aitbc { get; set; } = new() { PermitLimit = 600 };

    /// <summary>The Lightning agent API (<c>/api/jobs</c>, <c>/api/sessions</c>, <c>/api/gemini</c>; not <c>/api/demo</c>, which has its own limiter), per token or address. Default: 300 a minute.</summary>
    public GroupLimit Agent { get; set; } = new() { PermitLimit = 300 };

    /// <summary>The OpenAI-compatible <c>/v1</c>, per key. Default: 600 a minute.</summary>
    public GroupLimit OpenAi { get; set; } = new() { PermitLimit = 600 };

    /// <summary>Anonymous sign-up (<c>POST /api/v1/accounts</c>), per client address. Default: 20 an hour.</summary>
    public GroupLimit SignUp { get; set; } = new() { PermitLimit = 20, Window = TimeSpan.FromHours(1) };

    /// <summary>
    /// Failed authentications (answers 401: a made-up or revoked key, a bad dashboard sign-in) per client address
    /// (after <c>Network:TrustedProxies</c>), on every front door. Past it, every request from that address but health
    /// checks is answered 429 until the window ends, whatever key it carries: a caller trying a new key on each request
    /// is its own caller to the other groups, so only this stops it. Default: 60 a minute.
    /// </summary>
    public GroupLimit FailedAuthentications { get; set; } = new() { PermitLimit = 60 };

    /// <summary>Dashboard sign-in attempts (<c>POST /signin</c>), per client address, failed or not. Default: 10 a minute.</summary>
    public GroupLimit DashboardSignIn { get; set; } = new() { PermitLimit = 10 };

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var (name, group) in Groups())
        {
            if (group.PermitLimit is < 0 or > 1_000_000)
            {
                yield return new ValidationResult($"{Section}:{name}:PermitLimit must be between 0 (off) and 1000000, not {group.PermitLimit}.");
            }
            if (group.Window < TimeSpan.FromSeconds(1) || group.Window > TimeSpan.FromDays(1))
            {
                yield return new ValidationResult($"{Section}:{name}:Window must be between 00:00:01 and 1.00:00:00, not {group.Window}.");
            }
        }
    }

    internal IEnumerable<(string Name, GroupLimit Limit)> Groups() =>
        [(nameof(Grid), Grid), (nameof(Workers), Workers), (nameof(Aitbc), Aitbc), (nameof(Agent), Agent), (nameof(OpenAi), OpenAi), (nameof(SignUp), SignUp),
         (nameof(FailedAuthentications), FailedAuthentications), (nameof(DashboardSignIn), DashboardSignIn)];
}
