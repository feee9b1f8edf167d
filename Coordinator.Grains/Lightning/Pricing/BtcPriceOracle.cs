using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Pricing;

/// <summary>
/// The BTC/USD price from <see cref="BtcPriceOptions.Url"/>, kept for <see cref="BtcPriceOptions.CacheDuration"/> after
/// the source answered. Callers that find the cache stale while a fetch is under way wait for that fetch rather than start
/// their own, so the source sees one request per refresh however many jobs are priced at once.
/// A fetch that fails (no answer within <see cref="BtcPriceOptions.FetchTimeout"/>, an error status, a body without a
/// positive price) answers <see cref="BtcPriceOptions.FallbackUsd"/> to the callers that waited for it, and is not cached:
/// the next call asks the source again, so a recovered source is used at once. The price of that choice is that, while the
/// source is down, a call waits up to the fetch timeout (shared by the callers of the moment) before the fallback.
/// Time is the injected <see cref="TimeProvider"/>, for the cache and the timeout alike.
/// </summary>
public sealed partial class BtcPriceOracle(
    IHttpClientFactory httpClients, IOptions<BtcPriceOptions> options, TimeProvider time, ILogger<BtcPriceOracle> logger) : IBtcPriceOracle
{
    /// <summary>The <see cref="IHttpClientFactory"/> client the price source is asked through.</summary>
    public const string HttpClientName = "BtcPrice";

    private readonly BtcPriceOptions _options = options.Value;
    private readonly Lock _lock = new();
    private BtcPrice? _cached;
    private Task<BtcPrice>? _fetching;

    public async Task<BtcPrice> GetBtcUsdAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(_options.Url)) return Fallback();
        Task<BtcPrice> fetch;
        lock (_lock)
        {
            if (_cached is { } cached && time.GetUtcNow() < cached.FetchedAt + _options.CacheDuration) return cached;
            fetch = _fetching ??= FetchAndCacheAsync();
        }
        // The fetch is shared: one caller giving up does not cancel it for the others.
        return await fetch.WaitAsync(cancellationToken);
    }

    private async Task<BtcPrice> FetchAndCacheAsync()
    {
        // Back to the caller first, which is inside the lock: _fetching is this task before the end below can clear it.
        await Task.Yield();
        BtcPrice? price = null;
        try
        {
            price = await FetchAsync();
            return price;
        }
        finally
        {
            // Whatever happened, the next stale read starts a new fetch.
            lock (_lock)
            {
                if (price is { IsFallback: false }) _cached = price;
                _fetching = null;
            }
        }
    }

    private async Task<BtcPrice> FetchAsync()
    {
        using var timeout = new CancellationTokenSource(_options.FetchTimeout, time);
        try
        {
            using var response = await httpClients.CreateClient(HttpClientName).GetAsync(new Uri(_options.Url!), timeout.Token);
            if (!response.IsSuccessStatusCode)
            {
                LogFailed(logger, $"HTTP {(int)response.StatusCode}", _options.FallbackUsd, null);
                return Fallback();
            }
            var body = await response.Content.ReadAsStringAsync(timeout.Token);
            if (BtcPriceAnswers.Usd(body) is not { } usd)
            {
                LogFailed(logger, "no positive BTC/USD price in the body", _options.FallbackUsd, null);
                return Fallback();
            }
            return new BtcPrice(usd, IsFallback: false, time.GetUtcNow());
        }
        catch (OperationCanceledException exception)
        {
            LogFailed(logger, $"no answer within {_options.FetchTimeout}", _options.FallbackUsd, exception);
            return Fallback();
        }
        catch (HttpRequestException exception)
        {
            LogFailed(logger, "not reachable", _options.FallbackUsd, exception);
            return Fallback();
        }
    }

    private BtcPrice Fallback() => new(_options.FallbackUsd, IsFallback: true, time.GetUtcNow());

    [LoggerMessage(Level = LogLevel.Warning, Message = "The BTC/USD price source failed ({Reason}); pricing at the fallback {FallbackUsd} USD")]
    private static partial void LogFailed(ILogger logger, string reason, decimal fallbackUsd, Exception? exception);
}
