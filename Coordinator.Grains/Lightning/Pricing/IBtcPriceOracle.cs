namespace Coordinator.Grains.Lightning.Pricing;

/// <summary>
/// The BTC/USD price that work invoices are converted at and that a job's cost ledger locks. Never fails: when the price
/// source cannot answer, the configured fallback price stands in, marked as such.
/// </summary>
public interface IBtcPriceOracle
{
    /// <summary>The price of one bitcoin in US dollars, from the cache while it is fresh (<see cref="BtcPriceOptions.CacheDuration"/>).</summary>
    Task<BtcPrice> GetBtcUsdAsync(CancellationToken cancellationToken);
}

/// <summary>
/// One bitcoin in US dollars. <paramref name="IsFallback"/>: the source did not answer (or is not configured) and this is
/// <see cref="BtcPriceOptions.FallbackUsd"/>. <paramref name="FetchedAt"/>: when the source answered, or when the fallback
/// was taken.
/// </summary>
public sealed record BtcPrice(decimal Usd, bool IsFallback, DateTimeOffset FetchedAt);
