using System.Globalization;
using System.Text.Json.Serialization;

namespace Coordinator.Api.OpenAi;

/// <summary>OpenAI's error object: <c>{"error": {"message", "type", "param", "code"}}</c>, param and code null when they do not apply.</summary>
public sealed record OpenAiError(string Message, string Type, string? Param, string? Code);

public sealed record OpenAiErrorBody([property: JsonPropertyName("error")] OpenAiError Error);

/// <summary>
/// The only way the <c>/v1</c> front door fails: OpenAI's error object and status codes, so that OpenAI's SDKs raise the
/// matching exception (401 <c>AuthenticationError</c>, 404 <c>NotFoundError</c>, 429 <c>RateLimitError</c>, …).
/// </summary>
public static class OpenAiErrors
{
    /// <summary>
    /// Answers an error. <paramref name="retry"/> false sets <c>x-should-retry: false</c>, which OpenAI's SDKs obey: they
    /// retry 408, 409, 429 and 5xx by themselves otherwise, and a retry would only make another job that ends the same way.
    /// </summary>
    public static IResult Error(HttpContext context, int status, string message, string type, string? param = null, string? code = null, bool? retry = null)
    {
        if (retry is { } shouldRetry) context.Response.Headers["x-should-retry"] = shouldRetry ? "true" : "false";
        return TypedResults.Json(new OpenAiErrorBody(new OpenAiError(message, type, param, code)), statusCode: status);
    }

    /// <summary>400: a bad request body; <paramref name="param"/> names the field when one is to blame.</summary>
    public static IResult BadRequest(HttpContext context, string message, string? param = null) =>
        Error(context, StatusCodes.Status400BadRequest, message, "invalid_request_error", param);

    /// <summary>400 for the first of a body's problems, naming its field (the messages start with the field's name).</summary>
    public static IResult BadRequest(HttpContext context, IReadOnlyList<string> problems) =>
        BadRequest(context, string.Join("; ", problems), problems.Count > 0 ? problems[0].Split(' ', 2)[0] : null);

    public static IResult InvalidKey(HttpContext context, string message) =>
        Error(context, StatusCodes.Status401Unauthorized, message, "invalid_request_error", code: "invalid_api_key");

    public static IResult ModelNotFound(HttpContext context, string model) =>
        Error(context, StatusCodes.Status404NotFound,
            $"The model '{model}' does not exist on this grid: no worker has ever served it. GET /v1/models lists the models served now.",
            "invalid_request_error", "model", "model_not_found");

    public static IResult NoOnlineWorker(HttpContext context, string model)
    {
        context.Response.Headers.RetryAfter = "30";
        return Error(context, StatusCodes.Status503ServiceUnavailable,
            $"No online worker serves the model '{model}' right now; try again later, or pick one from GET /v1/models.",
            "server_error", "model", "model_not_available");
    }

    /// <summary>429 with <c>Retry-After</c>: the account's jobs are held until its daily quota resets.</summary>
    public static IResult QuotaReached(HttpContext context, TimeSpan untilReset)
    {
        context.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(untilReset.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        return Error(context, StatusCodes.Status429TooManyRequests,
            "This account has reached its daily quota; its jobs are held until the quota resets at midnight UTC (see Retry-After).",
            "insufficient_quota", code: "insufficient_quota", retry: false);
    }

    /// <summary>The error of a job that ended without output, for an answer that has not started.</summary>
    public static IResult JobEnded(HttpContext context, JobEnd end) =>
        Error(context, end.Status, end.Error.Message, end.Error.Type, code: end.Error.Code, retry: end.Status == StatusCodes.Status504GatewayTimeout ? null : false);
}

/// <summary>How a job that did not complete answers: a status code for an answer not yet started, and the error object for either.</summary>
public sealed record JobEnd(int Status, OpenAiError Error)
{
    /// <summary>The job's status and error (from <c>GET /jobs/{id}</c>) as OpenAI would word them.</summary>
    public static JobEnd Of(Coordinator.Grains.Jobs.JobRow job)
    {
        var why = $"grid job {job.Id} {job.Status}: {job.Error ?? "no reason given"}";
        if (job.Status == Coordinator.Grains.Jobs.JobStatus.Failed) return new(StatusCodes.Status502BadGateway, new(why, "server_error", null, "job_failed"));
        if (job.Error?.StartsWith("timed out", StringComparison.Ordinal) == true) return new(StatusCodes.Status504GatewayTimeout, new(why, "timeout_error", null, "timeout"));
        return new(StatusCodes.Status409Conflict, new(why, "invalid_request_error", null, "job_cancelled"));
    }

    /// <summary>A job no worker took within its timeout (it was cancelled for that).</summary>
    public static JobEnd NotTaken(long jobId, int timeoutSeconds) => new(StatusCodes.Status504GatewayTimeout,
        new($"grid job {jobId} cancelled: no worker took it within {timeoutSeconds} seconds", "timeout_error", null, "timeout"));
}

/// <summary>Where the <c>/v1</c> front door's errors that no endpoint words (bad routes, exceptions) get OpenAI's shape.</summary>
public static class OpenAiFrontDoor
{
    public static bool Serves(HttpContext context) => context.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal);

    /// <summary>An unknown route or a wrong method.</summary>
    public static OpenAiErrorBody StatusPage(int status) => new(status switch
    {
        StatusCodes.Status404NotFound => new OpenAiError("Unknown endpoint: this grid serves POST /v1/chat/completions, POST /v1/completions and GET /v1/models.", "invalid_request_error", null, "unknown_url"),
        StatusCodes.Status405MethodNotAllowed => new OpenAiError("This endpoint does not accept that method.", "invalid_request_error", null, "method_not_allowed"),
        _ => new OpenAiError("The request failed.", "invalid_request_error", null, null),
    });

    /// <summary>The Grid API's error for an exception, in OpenAI's shape.</summary>
    public static OpenAiErrorBody ErrorOf(int status, Infrastructure.ApiError error) => new(new OpenAiError(
        error.Message ?? error.Error,
        status switch { >= 500 => "server_error", _ => "invalid_request_error" },
        null,
        error.Error switch { "payload_too_large" => "request_too_large", var code => code }));
}
