using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Coordinator.Grains.Receipts;

public static class ReceiptServiceCollectionExtensions
{
    /// <summary>
    /// Adds signed receipts: the <c>Receipts</c> settings, the signing keys, the signer and verifier, and the issuer that
    /// completions call, which tells the registered <see cref="IReceiptsIssuedListener"/> (the ledger) of what it issued.
    /// </summary>
    public static IServiceCollection AddReceipts(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ReceiptOptions>().Bind(configuration.GetSection(ReceiptOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ReceiptSigningKeys>();
        services.TryAddSingleton<IReceiptSigner, ReceiptSigner>();
        services.AddSingleton<ReceiptVerifier>();
        services.AddSingleton<IReceiptVerifier>(provider => provider.GetRequiredService<ReceiptVerifier>());
        services.AddSingleton<ReceiptIssuer>();
        return services;
    }
}
