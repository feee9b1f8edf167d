using Coordinator.Grains.Database;
using Microsoft.AspNetCore.Diagnostics;
using Orleans.Runtime;

namespace Coordinator.Api.Infrastructure;

/// <summary>
/// Maps exceptions that escape an endpoint to the spec's error bodies: the database being down is a 503 that
/// says so, an oversized or malformed request is a 4xx, anything else a 500 with no internals. Under <c>/v1</c> the same
/// statuses carry OpenAI's error object, under the Lightning agent API's <c>/api</c> its <c>{"error": "…"}</c>.
/// </summary>
public sealed partial class ErrorHandling(ILogger<ErrorHandling> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        var (status, body) = exception switch
        {
            _ when IsDatabaseUnavailable(exception) => (StatusCodes.Status503ServiceUnavailable,
                new ApiError("service_unavailable", "the database is not reachable right now; try again shortly")),
            Coordinator.Grains.Blobs.BlobStoreUnavailableException => (StatusCodes.Status503ServiceUnavailable,
                new ApiError("service_unavailable", "the blob store is not reachable right now; try again shortly")),
            BadHttpRequestException bad when bad.StatusCode == StatusCodes.Status413PayloadTooLarge => (bad.StatusCode,
                new ApiError("payload_too_large", "the request body is larger than this server accepts")),
            BadHttpRequestException bad => (bad.StatusCode, new ApiError("bad_request", bad.Message)),
            OperationCanceledException when context.RequestAborted.IsCancellationRequested => (499, new ApiError("client_closed_request")),
            _ => (StatusCodes.Status500InternalServerError, new ApiError("internal_error", "an unexpected error occurred")),
        };
        if (status == StatusCodes.Status500InternalServerError) LogUnhandled(logger, exception, context.Request.Path);
        else if (status == StatusCodes.Status503ServiceUnavailable) LogDatabaseDown(logger, exception.Message);

        if (context.Response.HasStarted) return true;
        context.Response.StatusCode = status;
        if (status == StatusCodes.Status503ServiceUnavailable) context.Response.Headers.RetryAfter = "2";
        if (Aitbc.AitbcFrontDoor.Serves(context))
        {
            await context.Response.WriteAsJsonAsync(Aitbc.AitbcFrontDoor.ErrorOf(status, body), cancellationToken);
            return true;
        }
        if (OpenAi.OpenAiFrontDoor.Serves(context))
        {
            await context.Response.WriteAsJsonAsync(OpenAi.OpenAiFrontDoor.ErrorOf(status, body), cancellationToken);
            return true;
        }
        if (Lightning.AgentErrors.Serves(context))
        {
            await context.Response.WriteAsJsonAsync(Lightning.AgentErrors.ErrorOf(body), cancellationToken);
            return true;
        }
        await context.Response.WriteAsJsonAsync(body, cancellationToken);
        return true;
    }

    /// <summary>
    /// The database is down, or the silo cluster could not carry the call (a silo died under it): both pass, so both are
    /// a 503 the client may retry.
    /// </summary>
    public static bool IsDatabaseUnavailable(Exception exception) =>
        DatabaseUnavailableException.Describes(exception) || exception is SiloUnavailableException or OrleansMessageRejectionException;

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error on {Path}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Database unavailable: {Reason}")]
    private static partial void LogDatabaseDown(ILogger logger, string reason);
}
