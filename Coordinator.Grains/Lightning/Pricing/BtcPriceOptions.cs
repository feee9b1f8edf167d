using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Lightning.Pricing;

/// <summary>
/// Where the BTC/USD price comes from, bound from the <c>Lightning:Price</c> configuration section. The source answers
/// <c>GET {Url}</c> with either CoinGecko's simple price (<c>{"bitcoin": {"usd": 67123.45}}</c>, e.g.
/// <c>https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&amp;vs_currencies=usd</c>) or Coinbase's spot price
/// (<c>{"data": {"amount": "67123.45", "currency": "USD"}}</c>, e.g. <c>https://api.coinbase.com/v2/prices/BTC-USD/spot</c>);
/// the two shapes cannot be mistaken for each other, so the oracle reads whichever arrives.
/// </summary>
public sealed class BtcPriceOptions : IValidatableObject
{
    public const string Section = "Lightning:Price";

    /// <summary>The price source. Unset or empty: every price is <see cref="FallbackUsd"/>.</summary>
    public string? Url { get; set; }

    /// <summary>How long a price the source gave is used before it is asked again. Default: 60 s.</summary>
    public TimeSpan CacheDuration { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long one request to the source may take before the fallback stands in. Default: 5 s.</summary>
    public TimeSpan FetchTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The price when the source fails or is not configured, in US dollars. Default: 100,000.</summary>
    public decimal FallbackUsd { get; set; } = 100_000m;

    /// <summary>The settings that are wrong together; checked at start-up.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!string.IsNullOrWhiteSpace(Url)
            && (!Uri.TryCreate(Url, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)))
        {
            yield return new ValidationResult($"Lightning:Price:Url must be an absolute http(s) address, or empty to always use the fallback price.", [nameof(Url)]);
        }
        if (CacheDuration < TimeSpan.Zero || FetchTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult(
                $"Lightning:Price:CacheDuration ({CacheDuration}) must not be negative and Lightning:Price:FetchTimeout ({FetchTimeout}) must be positive.",
                [nameof(CacheDuration), nameof(FetchTimeout)]);
        }
        if (FallbackUsd <= 0)
        {
            yield return new ValidationResult($"Lightning:Price:FallbackUsd ({FallbackUsd}) must be a positive price in US dollars.", [nameof(FallbackUsd)]);
        }
    }
}
