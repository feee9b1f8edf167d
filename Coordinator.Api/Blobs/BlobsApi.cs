using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains.Blobs;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Blobs;

public sealed record BlobCreateResponse(long BlobId, Uri UploadUrl, int ExpiresIn);

/// <summary>The body of POST /blobs as the served OpenAPI document describes it: <c>blob_type</c> image (default) or document.</summary>
public sealed record BlobCreateDocument(string? BlobType);

/// <summary>
/// Attachments: <c>POST /api/v1/blobs</c> and <c>/blobs/{id}/confirm</c>, plus the local-disk store's signed
/// <c>PUT</c>/<c>GET /api/v1/blob-store/{key}</c> (no API key: the URL's signature is the permission).
/// </summary>
public static class BlobsApi
{
    public static RouteGroupBuilder MapBlobs(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/blobs").WithTags("Blobs").RequireApiKey();
        group.MapPost("/", CreateAsync).Accepts<BlobCreateDocument>("application/json");
        group.MapPost("/{id:long}/confirm", ConfirmAsync);

        var store = routes.MapGroup("/blob-store").ExcludeFromDescription();
        store.MapPut("/{**key}", UploadAsync);
        store.MapGet("/{**key}", DownloadAsync);
        return group;
    }

    public static async Task<Results<Created<BlobCreateResponse>, UnprocessableEntity<ApiError>>> CreateAsync(HttpContext context, BlobRegistry blobs, IOptions<BlobOptions> options)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request, allowEmpty: true);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var blobType = fields.String("blob_type") ?? BlobType.Image; // the spec's default
        if (!BlobType.All.Contains(blobType)) fields.Errors.Add("blob_type must be one of " + string.Join(", ", BlobType.All));
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var created = await blobs.CreateAsync(context.GetCaller().AccountId, blobType, PublicBase(context), context.RequestAborted);
        if (created is null)
        {
            return ApiErrors.InvalidRequest($"this account has {options.Value.MaxPendingPerAccount} unconfirmed blobs; confirm or abandon some (unconfirmed blobs are removed after a day)");
        }
        return TypedResults.Created($"/api/v1/blobs/{created.Id}", new BlobCreateResponse(created.Id, created.UploadUrl, created.ExpiresIn));
    }

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> ConfirmAsync(long id, HttpContext context, BlobRegistry blobs, IOptions<BlobOptions> options)
    {
        var outcome = await blobs.ConfirmAsync(context.GetCaller().AccountId, id, context.RequestAborted);
        return outcome switch
        {
            ConfirmOutcome.Confirmed => TypedResults.Ok(new StatusDto("confirmed")),
            ConfirmOutcome.NotFound => ApiErrors.NotFound($"no blob {id} in this account"),
            ConfirmOutcome.UploadMissing => TypedResults.UnprocessableEntity(new ApiError("upload_missing", $"nothing has been uploaded for blob {id}: PUT the file to its upload_url first")),
            _ => TypedResults.UnprocessableEntity(new ApiError("too_large", $"the upload for blob {id} is larger than {options.Value.MaxBytes} bytes and has been discarded; upload a smaller file")),
        };
    }

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>, JsonHttpResult<ApiError>>> UploadAsync(
        string key, HttpContext context, IBlobStore store, string? expires, string? signature)
    {
        if (store is not LocalDiskBlobStore local) return NoSuchObject();
        if (await CheckAsync(local, "PUT", key, expires, signature, context.RequestAborted) is { } refused) return refused;

        // The store enforces its own limit, which may exceed the API's request body limit.
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodyLimit) bodyLimit.MaxRequestBodySize = null;
        var outcome = await local.WriteAsync(key, context.Request.Body, context.Request.ContentLength, context.RequestAborted);
        return outcome == LocalWriteOutcome.Written
            ? TypedResults.Ok(new StatusDto("uploaded"))
            : ApiErrors.TooLarge($"attachments are limited to {local.MaxBytes} bytes");
    }

    public static async Task<Results<PhysicalFileHttpResult, NotFound<ApiError>, JsonHttpResult<ApiError>>> DownloadAsync(
        string key, HttpContext context, IBlobStore store, string? expires, string? signature)
    {
        if (store is not LocalDiskBlobStore local) return NoSuchObject();
        if (await CheckAsync(local, "GET", key, expires, signature, context.RequestAborted) is { } refused) return refused;
        var file = local.Find(key);
        return file is null ? NoSuchObject() : TypedResults.PhysicalFile(file.FullName, "application/octet-stream");
    }

    private static async Task<JsonHttpResult<ApiError>?> CheckAsync(LocalDiskBlobStore store, string method, string key, string? expires, string? signature, CancellationToken cancellationToken) =>
        await store.CheckAsync(method, key, expires, signature, cancellationToken) switch
        {
            SignedRequestCheck.Valid => null,
            SignedRequestCheck.BadKey => ApiErrors.Forbidden("invalid_key", "this is not a blob object key"),
            SignedRequestCheck.Expired => ApiErrors.Forbidden("url_expired", "this URL has expired; ask for a new one"),
            _ => ApiErrors.Forbidden("invalid_signature", "the URL's signature does not match; use the URL exactly as it was given"),
        };

    private static NotFound<ApiError> NoSuchObject() => ApiErrors.NotFound("no such blob object");

    /// <summary>This coordinator's address as the caller reached it, for URLs it serves itself (unless Blobs:PublicBaseUrl is set).</summary>
    public static Uri PublicBase(HttpContext context) => new($"{context.Request.Scheme}://{context.Request.Host}");
}
