using Coordinator.Grains.Lightning.Pricing;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>The BTC/USD oracle against <see cref="FakePriceOracle"/>, on a clock that moves only when the test says.</summary>
public sealed class BtcPriceOracleTests : IAsyncLifetime
{
    private static readonly TimeSpan RealTimeBound = TimeSpan.FromSeconds(10);

    private readonly ManualTimeProvider _clock = new(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
    private FakePriceOracle _source = null!;

    public async Task InitializeAsync() => _source = await FakePriceOracle.StartAsync();

    public async Task DisposeAsync() => await _source.DisposeAsync();

    [Fact]
    public async Task WithinTheCacheDuration_ThePriceIsFetchedOnce()
    {
        await using var services = Services();
        var oracle = services.Get<IBtcPriceOracle>();

        var first = await oracle.GetBtcUsdAsync(CancellationToken.None);
        _source.UsdPrice = 70_000m;
        _clock.Advance(TimeSpan.FromSeconds(59));
        var second = await oracle.GetBtcUsdAsync(CancellationToken.None);

        Assert.Equal(new BtcPrice(67_123.45m, IsFallback: false, _clock.GetUtcNow() - TimeSpan.FromSeconds(59)), first);
        Assert.Equal(first, second);
        Assert.Equal(1, _source.Requests);
    }

    [Fact]
    public async Task After60Seconds_ThePriceIsFetchedAgain()
    {
        await using var services = Services();
        var oracle = services.Get<IBtcPriceOracle>();
        await oracle.GetBtcUsdAsync(CancellationToken.None);
        _source.UsdPrice = 70_000.5m;

        _clock.Advance(TimeSpan.FromSeconds(60));
        var price = await oracle.GetBtcUsdAsync(CancellationToken.None);

        Assert.Equal(new BtcPrice(70_000.5m, IsFallback: false, _clock.GetUtcNow()), price);
        Assert.Equal(2, _source.Requests);
    }

    [Fact]
    public async Task ASourceThatDoesNotAnswerIn5Seconds_GivesTheFallback_AndIsAskedAgainNextCall()
    {
        await using var services = Services();
        var oracle = services.Get<IBtcPriceOracle>();
        _source.Gate.Close();

        var pending = oracle.GetBtcUsdAsync(CancellationToken.None);
        await Eventually.TrueAsync(() => _source.Requests == 1, "the source has the request");
        _clock.Advance(TimeSpan.FromSeconds(4));
        Assert.False(pending.IsCompleted);
        _clock.Advance(TimeSpan.FromSeconds(1));
        var price = await pending.WaitAsync(RealTimeBound);

        Assert.Equal(new BtcPrice(100_000m, IsFallback: true, _clock.GetUtcNow()), price);
        _source.Gate.Open();
        Assert.Equal(new BtcPrice(67_123.45m, IsFallback: false, _clock.GetUtcNow()), await oracle.GetBtcUsdAsync(CancellationToken.None));
        Assert.Equal(2, _source.Requests);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{}")]
    [InlineData("""{"bitcoin":{"usd":0}}""")]
    [InlineData("""{"bitcoin":{"usd":-5}}""")]
    [InlineData("""{"bitcoin":{"usd":"67000"}}""")]
    [InlineData("""{"data":{"amount":"NaN","base":"BTC","currency":"USD"}}""")]
    [InlineData("""{"data":{"amount":"-1","base":"BTC","currency":"USD"}}""")]
    [InlineData("""{"data":{"amount":"61000.00","base":"BTC","currency":"EUR"}}""")]
    public async Task ABodyWithoutAPositivePrice_GivesTheConfiguredFallback_AndIsNotCached(string body)
    {
        _source.Body = body;
        await using var services = Services(fallbackUsd: "55000.5");
        var oracle = services.Get<IBtcPriceOracle>();

        Assert.Equal(new BtcPrice(55_000.5m, IsFallback: true, _clock.GetUtcNow()), await oracle.GetBtcUsdAsync(CancellationToken.None));
        Assert.Equal(new BtcPrice(55_000.5m, IsFallback: true, _clock.GetUtcNow()), await oracle.GetBtcUsdAsync(CancellationToken.None));
        Assert.Equal(2, _source.Requests);
    }

    [Fact]
    public async Task AnErrorStatus_GivesTheFallback()
    {
        _source.StatusCode = 503;
        await using var services = Services();

        var price = await services.Get<IBtcPriceOracle>().GetBtcUsdAsync(CancellationToken.None);

        Assert.True(price.IsFallback);
        Assert.Equal(100_000m, price.Usd);
    }

    [Fact]
    public async Task WithoutAUrl_EveryPriceIsTheFallback()
    {
        await using var services = new LightningServices(new Dictionary<string, string?> { ["Lightning:Price:FallbackUsd"] = "90000" }, _clock);

        var price = await services.Get<IBtcPriceOracle>().GetBtcUsdAsync(CancellationToken.None);

        Assert.Equal(new BtcPrice(90_000m, IsFallback: true, _clock.GetUtcNow()), price);
    }

    [Fact]
    public async Task CoinbasesSpotPrice_IsReadToo()
    {
        _source.Format = FakePriceFormat.Coinbase;
        _source.UsdPrice = 64_321.09m;
        await using var services = Services();

        var price = await services.Get<IBtcPriceOracle>().GetBtcUsdAsync(CancellationToken.None);

        Assert.Equal(new BtcPrice(64_321.09m, IsFallback: false, _clock.GetUtcNow()), price);
    }

    [Fact]
    public async Task CallersDuringARefresh_ShareOneFetch()
    {
        await using var services = Services();
        var oracle = services.Get<IBtcPriceOracle>();
        _source.Gate.Close();

        var callers = Enumerable.Range(0, 20).Select(_ => oracle.GetBtcUsdAsync(CancellationToken.None)).ToList();
        await Eventually.TrueAsync(() => _source.Requests == 1, "the source has the first request");
        Assert.DoesNotContain(callers, caller => caller.IsCompleted);
        _source.Gate.Open();
        var prices = await Task.WhenAll(callers).WaitAsync(RealTimeBound);

        Assert.All(prices, price => Assert.Equal(new BtcPrice(67_123.45m, IsFallback: false, _clock.GetUtcNow()), price));
        Assert.Equal(1, _source.Requests);
    }

    [Fact]
    public async Task ACallerThatGivesUp_DoesNotCancelTheFetchTheOthersWaitFor()
    {
        await using var services = Services();
        var oracle = services.Get<IBtcPriceOracle>();
        _source.Gate.Close();
        using var impatient = new CancellationTokenSource();

        var leaving = oracle.GetBtcUsdAsync(impatient.Token);
        var staying = oracle.GetBtcUsdAsync(CancellationToken.None);
        await Eventually.TrueAsync(() => _source.Requests == 1, "the source has the request");
        await impatient.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaving.WaitAsync(RealTimeBound));
        _source.Gate.Open();

        Assert.False((await staying.WaitAsync(RealTimeBound)).IsFallback);
        Assert.Equal(1, _source.Requests);
    }

    private LightningServices Services(string? fallbackUsd = null)
    {
        var settings = new Dictionary<string, string?> { ["Lightning:Price:Url"] = _source.Url };
        if (fallbackUsd is not null) settings["Lightning:Price:FallbackUsd"] = fallbackUsd;
        return new LightningServices(settings, _clock);
    }
}
