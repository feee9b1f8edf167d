namespace Coordinator.Grains.Blobs;

/// <summary>Which operation a presigned URL allows.</summary>
public enum BlobAccess
{
    /// <summary>PUT the object's bytes.</summary>
    Upload,

    /// <summary>GET the object's bytes.</summary>
    Download,
}

/// <summary>
/// Where attachment bytes live. Clients and workers move the bytes straight to and from the store through presigned
/// URLs; the coordinator only signs URLs, checks that an upload arrived and removes what is abandoned.
/// </summary>
public interface IBlobStore
{
    /// <summary>
    /// A URL that allows <paramref name="access"/> on <paramref name="objectKey"/> for <paramref name="validFor"/> from now.
    /// <paramref name="publicBase"/> is this coordinator's address as the caller sees it; only a store that the
    /// coordinator serves itself uses it.
    /// </summary>
    Task<Uri> PresignAsync(string objectKey, BlobAccess access, TimeSpan validFor, Uri publicBase, CancellationToken cancellationToken = default);

    /// <summary>The object's size in bytes, or null when nothing has been uploaded under the key.</summary>
    Task<long?> SizeAsync(string objectKey, CancellationToken cancellationToken = default);

    /// <summary>Removes the object; a missing object is not an error.</summary>
    Task DeleteAsync(string objectKey, CancellationToken cancellationToken = default);
}

/// <summary>The blob store could not be reached or refused the coordinator's own request; the API answers 503.</summary>
public sealed class BlobStoreUnavailableException(string message, Exception innerException) : Exception(message, innerException);
