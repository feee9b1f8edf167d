using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Grains.Lightning.Demo;

public static class DemoServiceCollectionExtensions
{
    /// <summary>Adds the free demo's rate limiter and its <c>Lightning:Demo</c> settings (validated at start-up). Needs <c>AddGrid</c>'s data source and clock.</summary>
    public static IServiceCollection AddDemoRateLimiter(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<DemoRateLimitOptions>().Bind(configuration.GetSection(DemoRateLimitOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<DemoRateLimiter>();
        return services;
    }
}
