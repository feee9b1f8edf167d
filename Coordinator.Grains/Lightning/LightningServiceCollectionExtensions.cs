using Coordinator.Grains.Lightning.Payments;
using Coordinator.Grains.Lightning.Pricing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Coordinator.Grains.Lightning;

public static class LightningServiceCollectionExtensions
{
    /// <summary>
    /// Adds the Lightning node and the BTC/USD price oracle of the agent API: <see cref="ILightningNode"/> is the
    /// <see cref="StubLightningNode"/> when <c>Lightning:LnbitsUrl</c> is empty (it needs the grid's
    /// <see cref="Npgsql.NpgsqlDataSource"/>, from <see cref="GridServiceCollectionExtensions.AddGrid"/>), else the
    /// <see cref="LnbitsLightningNode"/>; <see cref="IBtcPriceOracle"/> is the <see cref="BtcPriceOracle"/>. Both option
    /// sets are validated at start-up.
    /// </summary>
    public static IServiceCollection AddLightningPayments(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<LightningOptions>().Bind(configuration.GetSection(LightningOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<BtcPriceOptions>().Bind(configuration.GetSection(BtcPriceOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);

        var lightning = configuration.GetSection(LightningOptions.Section).Get<LightningOptions>() ?? new LightningOptions();
        if (lightning.IsStub)
        {
            services.AddSingleton<StubLightningNode>();
            services.AddSingleton<ILightningNode>(sp => sp.GetRequiredService<StubLightningNode>());
        }
        else
        {
            AddClient(services, LnbitsLightningNode.HttpClientName)
                // Keys travel in X-Api-Key: never in a log, whatever the log level.
                .RedactLoggedHeaders(["X-Api-Key"]);
            services.AddSingleton<ILightningNode, LnbitsLightningNode>();
        }

        AddClient(services, BtcPriceOracle.HttpClientName);
        services.AddSingleton<IBtcPriceOracle, BtcPriceOracle>();
        return services;
    }

    // The node and the oracle are singletons that ask the factory for a client on every request, so its handler rotation
    // still picks up DNS changes. Each bounds its requests itself, on the TimeProvider; the client's timeout would only race it.
    private static IHttpClientBuilder AddClient(IServiceCollection services, string name) =>
        services.AddHttpClient(name, client => client.Timeout = Timeout.InfiniteTimeSpan);
}
