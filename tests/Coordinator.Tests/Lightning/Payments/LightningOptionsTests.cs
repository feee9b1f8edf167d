using Coordinator.Grains.Lightning.Payments;
using Coordinator.Grains.Lightning.Pricing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>What <c>AddLightningPayments</c> makes of the configuration.</summary>
public sealed class LightningOptionsTests
{
    [Fact]
    public async Task WithoutAnLnbitsUrl_TheNodeIsTheStub()
    {
        await using var dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Database=never_opened");
        await using var services = new LightningServices(new Dictionary<string, string?>(), configure: s => s.AddSingleton(dataSource));

        var node = services.Get<ILightningNode>();

        Assert.True(node.IsStub);
        Assert.Same(services.Get<StubLightningNode>(), node);
        Assert.True(services.Get<IOptions<LightningOptions>>().Value.IsStub);
    }

    [Fact]
    public async Task TheDefaults_AreTheSpecs()
    {
        await using var services = new LightningServices(new Dictionary<string, string?>());

        var lightning = services.Get<IOptions<LightningOptions>>().Value;
        var price = services.Get<IOptions<BtcPriceOptions>>().Value;

        Assert.Equal(TimeSpan.FromSeconds(10), lightning.RequestTimeout);
        Assert.Equal(TimeSpan.FromSeconds(60), price.CacheDuration);
        Assert.Equal(TimeSpan.FromSeconds(5), price.FetchTimeout);
        Assert.Equal(100_000m, price.FallbackUsd);
        Assert.Null(price.Url);
    }

    [Fact]
    public async Task AnLnbitsUrlWithoutKeys_StopsTheStartWithAMessageSayingWhatToSet()
    {
        await using var services = new LightningServices(new Dictionary<string, string?> { ["Lightning:LnbitsUrl"] = "https://lnbits.example.com" });

        var error = Assert.Throws<OptionsValidationException>(() => services.Get<IOptions<LightningOptions>>().Value);

        Assert.Contains("Lightning:InvoiceKey and Lightning:AdminKey are required", error.Message);
    }

    [Theory]
    [InlineData("Lightning:LnbitsUrl", "lnbits.example.com", "Lightning:LnbitsUrl must be an absolute http(s) address")]
    [InlineData("Lightning:RequestTimeout", "00:00:00", "Lightning:RequestTimeout (00:00:00) must be positive")]
    [InlineData("Lightning:Price:FallbackUsd", "0", "Lightning:Price:FallbackUsd (0) must be a positive price")]
    [InlineData("Lightning:Price:FetchTimeout", "-00:00:01", "must be positive")]
    [InlineData("Lightning:Price:Url", "ftp://prices.example.com", "Lightning:Price:Url must be an absolute http(s) address")]
    public async Task ABadSetting_IsRejectedWithItsName(string key, string value, string message)
    {
        var settings = new Dictionary<string, string?> { ["Lightning:InvoiceKey"] = "i", ["Lightning:AdminKey"] = "a", [key] = value };
        await using var services = new LightningServices(settings);

        var error = Assert.Throws<OptionsValidationException>(() =>
            key.StartsWith("Lightning:Price:", StringComparison.Ordinal)
                ? services.Get<IOptions<BtcPriceOptions>>().Value
                : (object)services.Get<IOptions<LightningOptions>>().Value);

        Assert.Contains(message, error.Message);
    }
}
