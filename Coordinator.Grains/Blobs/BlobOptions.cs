using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains.Blobs;

/// <summary>Blob attachment settings, bound from the <c>Blobs</c> configuration section and checked at start-up.</summary>
public sealed class BlobOptions : IValidatableObject
{
    public const string Section = "Blobs";

    /// <summary><c>local</c> (the coordinator stores files under <see cref="LocalPath"/> and serves signed URLs itself) or <c>s3</c>. Default: local.</summary>
    public string Store { get; set; } = "local";

    /// <summary>Largest attachment, in bytes. Default: 20 MiB.</summary>
    [Range(1, long.MaxValue)]
    public long MaxBytes { get; set; } = 20 * 1024 * 1024;

    /// <summary>Most unconfirmed blobs one account may have at once (each may hold up to <see cref="MaxBytes"/>). Default: 100.</summary>
    [Range(1, int.MaxValue)]
    public int MaxPendingPerAccount { get; set; } = 100;

    /// <summary>How long an upload URL stays valid (the spec's <c>expires_in</c>). Default: 900 s.</summary>
    public TimeSpan UploadUrlLifetime { get; set; } = TimeSpan.FromSeconds(900);

    /// <summary>Unconfirmed blobs and their objects are removed this long after they were created. Default: 1 day.</summary>
    public TimeSpan UnconfirmedLifetime { get; set; } = TimeSpan.FromDays(1);

    /// <summary>How often each node looks for unconfirmed blobs to remove. Default: 5 minutes.</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Local store: the directory that holds the files. Default: <c>.data/blobs</c> under the working directory.</summary>
    public string LocalPath { get; set; } = Path.Combine(".data", "blobs");

    /// <summary>
    /// Local store: the address clients and workers reach this coordinator at (e.g. <c>https://grid.example.com</c>),
    /// used in the URLs it signs. Default: unset, the scheme and host of the request that asked for the URL.
    /// </summary>
    public Uri? PublicBaseUrl { get; set; }

    public S3StoreOptions S3 { get; set; } = new();

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Store is not ("local" or "s3"))
        {
            yield return new ValidationResult($"Blobs:Store must be 'local' or 's3', not '{Store}'.");
        }
        if (UploadUrlLifetime <= TimeSpan.Zero || UnconfirmedLifetime <= UploadUrlLifetime || SweepInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult("Blobs:UploadUrlLifetime and Blobs:SweepInterval must be positive, and Blobs:UnconfirmedLifetime longer than the upload URL lifetime.");
        }
        if (PublicBaseUrl is { } baseUrl && (!baseUrl.IsAbsoluteUri || baseUrl.Scheme is not ("http" or "https")))
        {
            yield return new ValidationResult("Blobs:PublicBaseUrl must be an absolute http(s) URL such as https://grid.example.com.");
        }
        if (Store == "s3")
        {
            if (string.IsNullOrWhiteSpace(S3.Bucket)) yield return new ValidationResult("Blobs:Store is s3, so set Blobs:S3:Bucket (and Blobs:S3:ServiceUrl for an S3-compatible server).");
            if (string.IsNullOrEmpty(S3.AccessKey) != string.IsNullOrEmpty(S3.SecretKey))
            {
                yield return new ValidationResult("Set both Blobs:S3:AccessKey and Blobs:S3:SecretKey, or neither (to use the AWS SDK's default credentials).");
            }
            if (S3.ServiceUrl is { } service && (!service.IsAbsoluteUri || service.Scheme is not ("http" or "https")))
            {
                yield return new ValidationResult("Blobs:S3:ServiceUrl must be an absolute http(s) URL such as https://s3.eu-central-1.amazonaws.com.");
            }
        }
    }
}

/// <summary>The S3-compatible store (<c>Blobs:S3:*</c>).</summary>
public sealed class S3StoreOptions
{
    /// <summary>The endpoint of an S3-compatible server (MinIO, R2, s3rver …). Default: unset, AWS S3 in <see cref="Region"/>.</summary>
    public Uri? ServiceUrl { get; set; }

    /// <summary>The bucket that holds the objects; it must exist. Required when the store is s3.</summary>
    public string? Bucket { get; set; }

    /// <summary>Region used for signing. Default: us-east-1.</summary>
    public string Region { get; set; } = "us-east-1";

    /// <summary>Access key id and secret. Default: unset, the AWS SDK's default credential chain.</summary>
    public string? AccessKey { get; set; }

    public string? SecretKey { get; set; }

    /// <summary>Address buckets as <c>host/bucket/key</c> rather than <c>bucket.host/key</c>. Default: true (what most S3-compatible servers need).</summary>
    public bool ForcePathStyle { get; set; } = true;
}
