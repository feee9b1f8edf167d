using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Lightning.Demo;

/// <summary>The free demo's rate limit (<c>GET /api/demo</c>), bound from the <c>Lightning:Demo</c> configuration section.</summary>
public sealed class DemoRateLimitOptions : IValidatableObject
{
    public const string Section = "Lightning:Demo";

    /// <summary>Requests a client (an IP address) may make in one window. Default: 5 (the issue's).</summary>
    [Range(1, 1_000_000)]
    public int Limit { get; set; } = 5;

    /// <summary>How long a window lasts from a client's first request in it. Default: 1 hour (the issue's).</summary>
    public TimeSpan Window { get; set; } = TimeSpan.FromHours(1);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Window < TimeSpan.FromSeconds(1) || Window > TimeSpan.FromDays(366))
        {
            yield return new ValidationResult($"Lightning:Demo:Window is {Window}; set it between 00:00:01 and 366.00:00:00 (default 01:00:00).", [nameof(Window)]);
        }
    }
}
