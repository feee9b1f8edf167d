using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>Prepaid sessions (<c>/api/sessions</c>), bound from the <c>Lightning:Sessions</c> configuration section.</summary>
public sealed class AgentSessionOptions : IValidatableObject
{
    public const string Section = "Lightning:Sessions";

    /// <summary>The smallest deposit or top-up, in sats (the spec's 100).</summary>
    public const long MinAmountSats = 100;

    /// <summary>The largest deposit or top-up, in sats (the spec's 10,000).</summary>
    public const long MaxAmountSats = 10_000;

    /// <summary>
    /// The balance a session needs to take a request: below it a request is refused with 402 and the session is
    /// <c>paused</c> until a top-up is paid. Default: 20 sats, twice the default eval fee, so that an admitted request
    /// can at least pay its eval.
    /// </summary>
    [Range(1, MaxAmountSats)]
    public long MinimumBalanceSats { get; set; } = 20;

    /// <summary>How long a session may be idle before it expires (the spec's 24 h). Default: 24 hours.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromHours(24);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (IdleTimeout < TimeSpan.FromMinutes(1) || IdleTimeout > TimeSpan.FromDays(366))
        {
            yield return new ValidationResult(
                $"{Section}:IdleTimeout is {IdleTimeout}; set it between 00:01:00 and 366.00:00:00 (default 1.00:00:00).", [nameof(IdleTimeout)]);
        }
    }
}
