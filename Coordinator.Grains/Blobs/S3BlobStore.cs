using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Blobs;

/// <summary>
/// Objects in an S3 bucket (AWS or any S3-compatible server), moved by clients and workers through SigV4 presigned
/// URLs. Configured by <c>Blobs:S3:*</c>.
/// </summary>
public sealed class S3BlobStore : IBlobStore, IDisposable
{
    private readonly AmazonS3Client _client;
    private readonly S3StoreOptions _options;
    private readonly Protocol _protocol;

    public S3BlobStore(IOptions<BlobOptions> options)
    {
        _options = options.Value.S3;
        var config = new AmazonS3Config
        {
            ForcePathStyle = _options.ForcePathStyle,
            // S3-compatible servers do not all know the newer integrity checksums; send them only where S3 requires them.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            // A confirm waits on the store: fail within seconds rather than hang the client.
            Timeout = TimeSpan.FromSeconds(10),
            MaxErrorRetry = 2,
        };
        if (_options.ServiceUrl is { } serviceUrl)
        {
            config.ServiceURL = serviceUrl.ToString();
            config.AuthenticationRegion = _options.Region;
        }
        else
        {
            config.RegionEndpoint = Amazon.RegionEndpoint.GetBySystemName(_options.Region);
        }
        _protocol = _options.ServiceUrl?.Scheme == "http" ? Protocol.HTTP : Protocol.HTTPS;
        _client = string.IsNullOrEmpty(_options.AccessKey)
            ? new AmazonS3Client(config)
            : new AmazonS3Client(new BasicAWSCredentials(_options.AccessKey, _options.SecretKey), config);
    }

    public async Task<Uri> PresignAsync(string objectKey, BlobAccess access, TimeSpan validFor, Uri publicBase, CancellationToken cancellationToken = default)
    {
        var url = await _client.GetPreSignedURLAsync(new GetPreSignedUrlRequest
        {
            BucketName = _options.Bucket,
            Key = objectKey,
            Verb = access == BlobAccess.Upload ? HttpVerb.PUT : HttpVerb.GET,
            // The SDK stamps the signature with its own clock, so the expiry is counted from that clock too.
            Expires = DateTime.UtcNow + validFor,
            Protocol = _protocol,
        });
        return new Uri(url);
    }

    public async Task<long?> SizeAsync(string objectKey, CancellationToken cancellationToken = default)
    {
        try
        {
            var metadata = await _client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = _options.Bucket, Key = objectKey }, cancellationToken);
            return metadata.ContentLength;
        }
        catch (AmazonS3Exception exception) when (exception.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (Exception exception) when (exception is AmazonServiceException or HttpRequestException or AmazonClientException)
        {
            throw Unavailable(exception);
        }
    }

    public async Task DeleteAsync(string objectKey, CancellationToken cancellationToken = default)
    {
        try
        {
            await _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = _options.Bucket, Key = objectKey }, cancellationToken);
        }
        catch (Exception exception) when (exception is AmazonServiceException or HttpRequestException or AmazonClientException)
        {
            throw Unavailable(exception);
        }
    }

    private BlobStoreUnavailableException Unavailable(Exception exception) =>
        new($"the S3 store (bucket {_options.Bucket} at {_options.ServiceUrl?.ToString() ?? "AWS " + _options.Region}) failed: {exception.Message}", exception);

    public void Dispose() => _client.Dispose();
}
