using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Grains.Billing;

public static class StripeServiceCollectionExtensions
{
    /// <summary>Adds <see cref="StripePayments"/>: one Stripe.net client for the process, over an <see cref="IHttpClientFactory"/> client.</summary>
    public static IServiceCollection AddStripePayments(this IServiceCollection services)
    {
        services.AddHttpClient(StripePayments.HttpClientName, client => client.Timeout = StripePayments.AttemptTimeout)
            // The singleton keeps its HttpClient for good, so connections are recycled instead of handlers: DNS changes still land.
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) });
        services.AddSingleton<StripePayments>();
        return services;
    }
}
