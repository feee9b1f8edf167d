using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Blobs;

/// <summary>What the local-disk store thinks of a signed request.</summary>
public enum SignedRequestCheck
{
    Valid,
    /// <summary>The key is not one this store hands out (path traversal, odd characters).</summary>
    BadKey,
    /// <summary>The signature does not match the method, key and expiry (tampered, or for another operation).</summary>
    BadSignature,
    Expired,
}

/// <summary>Outcome of a PUT to the local-disk store.</summary>
public enum LocalWriteOutcome
{
    Written,
    TooLarge,
}

/// <summary>
/// The embedded default store: files under <see cref="BlobOptions.LocalPath"/>, uploaded and downloaded through this
/// coordinator at <c>/api/v1/blob-store/{key}?expires=…&amp;signature=…</c>. The signature is a hex HMAC-SHA256 of
/// <c>METHOD\nkey\nexpires</c> under the key all nodes share (<see cref="BlobSigningKey"/>). Several nodes need
/// <see cref="BlobOptions.LocalPath"/> on a shared volume; for a real cluster use the S3 store.
/// </summary>
public sealed partial class LocalDiskBlobStore(BlobSigningKey signingKey, TimeProvider time, IOptions<BlobOptions> options) : IBlobStore
{
    /// <summary>Where the coordinator serves the store's objects (under the API's base path).</summary>
    public const string RoutePrefix = "api/v1/blob-store";

    private readonly string _root = Path.GetFullPath(options.Value.LocalPath);

    public long MaxBytes => options.Value.MaxBytes;

    public async Task<Uri> PresignAsync(string objectKey, BlobAccess access, TimeSpan validFor, Uri publicBase, CancellationToken cancellationToken = default)
    {
        if (!IsValidKey(objectKey)) throw new ArgumentException("not a blob object key", nameof(objectKey));
        var method = access == BlobAccess.Upload ? "PUT" : "GET";
        var expires = (time.GetUtcNow() + validFor).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var signature = Convert.ToHexStringLower(await SignAsync(method, objectKey, expires, cancellationToken));
        var baseUrl = (options.Value.PublicBaseUrl ?? publicBase).GetLeftPart(UriPartial.Authority);
        return new Uri($"{baseUrl}/{RoutePrefix}/{objectKey}?expires={expires}&signature={signature}");
    }

    /// <summary>Checks a request to <c>/blob-store/{key}</c>: a key this store hands out, an untampered signature for this method, not expired.</summary>
    public async Task<SignedRequestCheck> CheckAsync(string method, string objectKey, string? expires, string? signature, CancellationToken cancellationToken = default)
    {
        if (!IsValidKey(objectKey) || PathOf(objectKey) is null) return SignedRequestCheck.BadKey;
        if (expires is null || signature is null || !long.TryParse(expires, NumberStyles.None, CultureInfo.InvariantCulture, out var expiresAt)) return SignedRequestCheck.BadSignature;
        byte[] given;
        try
        {
            given = Convert.FromHexString(signature);
        }
        catch (FormatException)
        {
            return SignedRequestCheck.BadSignature;
        }
        var expected = await SignAsync(method, objectKey, expires, cancellationToken);
        if (!CryptographicOperations.FixedTimeEquals(expected, given)) return SignedRequestCheck.BadSignature;
        return time.GetUtcNow().ToUnixTimeSeconds() >= expiresAt ? SignedRequestCheck.Expired : SignedRequestCheck.Valid;
    }

    /// <summary>Stores the body under the key, refusing more than <see cref="BlobOptions.MaxBytes"/>; the file appears whole or not at all.</summary>
    public async Task<LocalWriteOutcome> WriteAsync(string objectKey, Stream body, long? declaredLength, CancellationToken cancellationToken = default)
    {
        var path = PathOf(objectKey) ?? throw new ArgumentException("not a blob object key", nameof(objectKey));
        if (declaredLength > MaxBytes) return LocalWriteOutcome.TooLarge;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = $"{path}.{Guid.NewGuid():N}.part";
        try
        {
            await using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, useAsync: true))
            {
                var buffer = new byte[81920];
                long written = 0;
                int read;
                while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    written += read;
                    if (written > MaxBytes) return LocalWriteOutcome.TooLarge;
                    await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                }
            }
            File.Move(temporary, path, overwrite: true);
            return LocalWriteOutcome.Written;
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>The file behind a key, or null when nothing was uploaded.</summary>
    public FileInfo? Find(string objectKey) => PathOf(objectKey) is { } path && File.Exists(path) ? new FileInfo(path) : null;

    public Task<long?> SizeAsync(string objectKey, CancellationToken cancellationToken = default) => Task.FromResult(Find(objectKey)?.Length);

    public Task DeleteAsync(string objectKey, CancellationToken cancellationToken = default)
    {
        if (PathOf(objectKey) is { } path) File.Delete(path);
        return Task.CompletedTask;
    }

    /// <summary>Keys are <c>&lt;account id&gt;/&lt;32 hex digits&gt;</c>, exactly as <see cref="BlobRegistry"/> makes them.</summary>
    public static bool IsValidKey(string? objectKey) => objectKey is not null && ObjectKeyPattern().IsMatch(objectKey);

    /// <summary>The file for a key, only if it falls inside the store's directory (a second line of defence behind the key pattern).</summary>
    private string? PathOf(string objectKey)
    {
        if (!IsValidKey(objectKey)) return null;
        var path = Path.GetFullPath(Path.Combine(_root, objectKey));
        return path.StartsWith(_root + Path.DirectorySeparatorChar, StringComparison.Ordinal) ? path : null;
    }

    private async Task<byte[]> SignAsync(string method, string objectKey, string expires, CancellationToken cancellationToken) =>
        HMACSHA256.HashData(await signingKey.GetAsync(cancellationToken), Encoding.UTF8.GetBytes($"{method}\n{objectKey}\n{expires}"));

    [GeneratedRegex(@"^[0-9]{1,19}/[0-9a-f]{32}\z", RegexOptions.CultureInvariant)]
    private static partial Regex ObjectKeyPattern();
}
