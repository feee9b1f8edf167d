using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Billing;

/// <summary>A plan the operator sells (or gives away), synced into the <c>plans</c> table at start-up.</summary>
public sealed class PlanOptions
{
    [Required]
    public string Id { get; set; } = "";

    public string? Name { get; set; }

    /// <summary>The Stripe Price id a Checkout Session subscribes to.</summary>
    public string? PriceId { get; set; }

    /// <summary>Requests per UTC day; null means no limit.</summary>
    public int? DailyRequests { get; set; }

    /// <summary>Tokens per UTC day; null means no limit.</summary>
    public long? DailyTokens { get; set; }

    /// <summary>Priority of jobs that omit <c>priority</c>.</summary>
    public int PriorityBoost { get; set; }
}

/// <summary>Stripe settings, bound from the <c>Billing</c> configuration section. Billing is off until <see cref="SecretKey"/> is set.</summary>
public sealed class BillingOptions
{
    public const string Section = "Billing";

    /// <summary>Stripe secret key (sk_live_… or sk_test_…). Unset: checkout and boosts answer that billing is not configured.</summary>
    [RegularExpression(@"\S*", ErrorMessage = "Billing:SecretKey contains whitespace (a line break from a secrets file?); Stripe keys never do.")]
    public string? SecretKey { get; set; }

    /// <summary>The webhook endpoint's signing secret (whsec_…).</summary>
    public string? WebhookSecret { get; set; }

    /// <summary>Stripe's API base address. Default: https://api.stripe.com (tests point it at a fake).</summary>
    [Required]
    public Uri ApiBase { get; set; } = new("https://api.stripe.com");

    /// <summary>Where Checkout sends the customer after paying / cancelling.</summary>
    public string CheckoutSuccessUrl { get; set; } = "http://localhost:3000/?checkout=success";

    public string CheckoutCancelUrl { get; set; } = "http://localhost:3000/?checkout=cancelled";

    /// <summary>Price of one priority boost in the currency's smallest unit. Default: 100 (1.00 USD).</summary>
    [Range(1, 100_000_000)]
    public long PriorityBoostAmount { get; set; } = 100;

    /// <summary>Default: usd.</summary>
    [Required]
    public string Currency { get; set; } = "usd";

    /// <summary>Priority added by a paid boost. Default: 50 (the spec's +50).</summary>
    public int PriorityBoostDelta { get; set; } = 50;

    /// <summary>How old a webhook signature's timestamp may be. Default: 5 minutes.</summary>
    public TimeSpan WebhookTolerance { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Plans beyond the built-in free plan.</summary>
    public List<PlanOptions> Plans { get; set; } = [];

    public bool Enabled => !string.IsNullOrEmpty(SecretKey);
}
