using System.Security.Cryptography;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Blobs;

/// <summary>Blob types, as the spec spells them.</summary>
public static class BlobType
{
    public const string Image = "image";
    public const string Document = "document";

    public static readonly IReadOnlyList<string> All = [Image, Document];
}

/// <summary>A new blob and the URL its bytes go to.</summary>
public sealed record CreatedBlob(long Id, Uri UploadUrl, int ExpiresIn);

/// <summary>Outcome of <c>POST /blobs/{id}/confirm</c>.</summary>
public enum ConfirmOutcome
{
    Confirmed,
    /// <summary>No such blob in this account (or it was removed as abandoned).</summary>
    NotFound,
    /// <summary>Nothing has been uploaded under the blob's key.</summary>
    UploadMissing,
    /// <summary>The upload is larger than <see cref="BlobOptions.MaxBytes"/>; it has been deleted.</summary>
    TooLarge,
}

/// <summary>An attachment as a worker receives it: a GET URL valid for the job's timeout.</summary>
public sealed record BlobLink(long Id, string Type, Uri Url);

/// <summary>
/// The <c>blobs</c> table and the store behind it: creating blobs with their upload URL, confirming uploads, checking
/// that a job's <c>blob_ids</c> are attachable, and signing a claimed job's download URLs. Every query is scoped to the
/// caller's account.
/// </summary>
public sealed class BlobRegistry(NpgsqlDataSource dataSource, IBlobStore store, TimeProvider time, IOptions<BlobOptions> options)
{
    /// <summary>A new pending blob and its upload URL, or null when the account already has <see cref="BlobOptions.MaxPendingPerAccount"/> unconfirmed blobs.</summary>
    public async Task<CreatedBlob?> CreateAsync(long accountId, string blobType, Uri publicBase, CancellationToken cancellationToken = default)
    {
        var objectKey = $"{accountId}/{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))}";
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Concurrent requests may pass the count together and overshoot the cap by a few; it bounds abuse, not exactness.
        var id = await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition("""
            INSERT INTO blobs (account_id, blob_type, object_key, created_at)
            SELECT @accountId, @blobType, @objectKey, @now
            WHERE (SELECT count(*) FROM blobs WHERE account_id = @accountId AND status = 'pending') < @maxPending
            RETURNING id
            """, new { accountId, blobType, objectKey, now, maxPending = options.Value.MaxPendingPerAccount }, cancellationToken: cancellationToken));
        if (id is null) return null;
        var lifetime = options.Value.UploadUrlLifetime;
        var url = await store.PresignAsync(objectKey, BlobAccess.Upload, lifetime, publicBase, cancellationToken);
        return new CreatedBlob(id.Value, url, (int)lifetime.TotalSeconds);
    }

    /// <summary>Marks a blob confirmed once its upload is in the store and within the size limit. Confirming twice is fine.</summary>
    public async Task<ConfirmOutcome> ConfirmAsync(long accountId, long blobId, CancellationToken cancellationToken = default)
    {
        var found = await StateAsync(accountId, blobId, cancellationToken);
        if (found is null) return ConfirmOutcome.NotFound;
        if (found.Status == "confirmed") return ConfirmOutcome.Confirmed;

        // No database connection is held while the store answers.
        var size = await store.SizeAsync(found.ObjectKey, cancellationToken);
        if (size is null) return ConfirmOutcome.UploadMissing;
        if (size > options.Value.MaxBytes)
        {
            await store.DeleteAsync(found.ObjectKey, cancellationToken);
            return ConfirmOutcome.TooLarge;
        }
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            var updated = await connection.ExecuteAsync(new CommandDefinition("""
                UPDATE blobs SET status = 'confirmed', size_bytes = @size, confirmed_at = @now
                WHERE id = @blobId AND account_id = @accountId AND status = 'pending'
                """, new { blobId, accountId, size, now = time.GetUtcNow() }, cancellationToken: cancellationToken));
            if (updated == 1) return ConfirmOutcome.Confirmed;
        }
        // Nothing updated: a concurrent confirm won (fine), or the sweep removed the abandoned blob meanwhile (gone).
        return (await StateAsync(accountId, blobId, cancellationToken))?.Status == "confirmed" ? ConfirmOutcome.Confirmed : ConfirmOutcome.NotFound;
    }

    private async Task<BlobState?> StateAsync(long accountId, long blobId, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<BlobState>(new CommandDefinition(
            "SELECT object_key, status FROM blobs WHERE id = @blobId AND account_id = @accountId",
            new { blobId, accountId }, cancellationToken: cancellationToken));
    }

    /// <summary>Those of <paramref name="blobIds"/> that are not confirmed blobs of this account, in the order given.</summary>
    public async Task<IReadOnlyList<long>> UnattachableAsync(long accountId, IReadOnlyList<long> blobIds, CancellationToken cancellationToken = default)
    {
        if (blobIds.Count == 0) return [];
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var attachable = (await connection.QueryAsync<long>(new CommandDefinition("""
            SELECT id FROM blobs WHERE id = ANY(@ids) AND account_id = @accountId AND status = 'confirmed'
            """, new { ids = blobIds.ToArray(), accountId }, cancellationToken: cancellationToken))).ToHashSet();
        return blobIds.Where(id => !attachable.Contains(id)).ToList();
    }

    /// <summary>The job's attachments with GET URLs that stay valid for <paramref name="validFor"/> (the job's timeout).</summary>
    public async Task<IReadOnlyList<BlobLink>> DownloadLinksAsync(long jobId, TimeSpan validFor, Uri publicBase, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var blobs = await connection.QueryAsync<(long Id, string BlobType, string ObjectKey)>(new CommandDefinition("""
            SELECT b.id, b.blob_type, b.object_key FROM job_blobs jb JOIN blobs b ON b.id = jb.blob_id
            WHERE jb.job_id = @jobId ORDER BY jb.position
            """, new { jobId }, cancellationToken: cancellationToken));
        var links = new List<BlobLink>();
        foreach (var blob in blobs)
        {
            links.Add(new BlobLink(blob.Id, blob.BlobType, await store.PresignAsync(blob.ObjectKey, BlobAccess.Download, validFor, publicBase, cancellationToken)));
        }
        return links;
    }

    private sealed class BlobState
    {
        public string ObjectKey { get; init; } = "";
        public string Status { get; init; } = "";
    }
}
