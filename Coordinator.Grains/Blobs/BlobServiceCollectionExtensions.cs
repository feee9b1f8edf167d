using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Blobs;

public static class BlobServiceCollectionExtensions
{
    /// <summary>Adds blob attachments: the store chosen by <c>Blobs:Store</c>, the registry and the sweep of abandoned uploads.</summary>
    public static IServiceCollection AddBlobs(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<BlobOptions>().Bind(configuration.GetSection(BlobOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<BlobSigningKey>();
        services.AddSingleton<LocalDiskBlobStore>();
        services.AddSingleton<S3BlobStore>();
        services.AddSingleton<IBlobStore>(sp => sp.GetRequiredService<IOptions<BlobOptions>>().Value.Store == "s3"
            ? sp.GetRequiredService<S3BlobStore>()
            : sp.GetRequiredService<LocalDiskBlobStore>());
        services.AddSingleton<BlobRegistry>();
        services.AddSingleton<BlobSweeper>();
        services.AddHostedService<BlobSweepService>();
        return services;
    }
}
