using System.ComponentModel.DataAnnotations;
using System.Text.Json.Serialization;
using Coordinator.Api.Infrastructure;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Aitbc;

/// <summary>Where the AITBC API listens, bound from the <c>Aitbc</c> configuration section.</summary>
public sealed class AitbcOptions : IValidatableObject
{
    public const string Section = "Aitbc";

    /// <summary>The port the AITBC API is served on, with exactly the spec's paths (<c>/health</c>, <c>/v1/jobs</c>, …). Default: 8001, the spec's local server; 0 turns it off.</summary>
    public int Port { get; set; } = 8001;

    /// <summary>What <c>/health</c> answers as <c>version</c>.</summary>
    public string Version { get; set; } = "1.0.0";

    /// <summary>
    /// The address AITBC clients reach this API at (e.g. <c>https://aitbc.example.com</c>, or with the production
    /// spec's base <c>https://example.com/api</c>), used in the Grid API's links to receipts (<c>receipt_url</c>).
    /// Default: unset, the host the request came to with <see cref="Port"/> over http; a webhook, which has no request,
    /// then carries <c>receipt_id</c> without <c>receipt_url</c>.
    /// </summary>
    public Uri? PublicBaseUrl { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (PublicBaseUrl is { } baseUrl && (!baseUrl.IsAbsoluteUri || baseUrl.Scheme is not ("http" or "https") || baseUrl.Query.Length > 0 || baseUrl.Fragment.Length > 0))
        {
            yield return new ValidationResult("Aitbc:PublicBaseUrl must be an absolute http(s) URL without query, such as https://aitbc.example.com.");
        }
    }
}

/// <summary>The AITBC spec's error body: <c>{"detail": "…", "error_code": "…"}</c>.</summary>
public sealed record AitbcError(string Detail, [property: JsonPropertyName("error_code")] string ErrorCode);

/// <summary>
/// The AITBC front door: a second port onto the same grid, serving the AITBC Coordinator API's paths as they are
/// (<c>../shared/specs/aitbc-api.openapi.yaml</c>). A request reaching that port is served only by the AITBC endpoints,
/// and the Grid API's endpoints are not reachable there (nor the AITBC ones on the main port): the two front doors have
/// overlapping paths (<c>/v1/…</c>).
/// </summary>
public static class AitbcFrontDoor
{
    /// <summary>The header AITBC clients send their API key in.</summary>
    public const string ApiKeyHeader = "X-Api-Key";

    /// <summary>Whether this request arrived on the AITBC port.</summary>
    public static bool Serves(HttpContext context)
    {
        var port = context.RequestServices.GetRequiredService<IOptions<AitbcOptions>>().Value.Port;
        return port > 0 && context.Connection.LocalPort == port;
    }

    public static IResult Error(int status, string errorCode, string detail) =>
        TypedResults.Json(new AitbcError(detail, errorCode), statusCode: status);

    public static IResult BadRequest(string detail) => Error(StatusCodes.Status400BadRequest, "invalid_request", detail);

    public static IResult NotFound(string detail) => Error(StatusCodes.Status404NotFound, "not_found", detail);

    public static IResult Conflict(string errorCode, string detail) => Error(StatusCodes.Status409Conflict, errorCode, detail);

    /// <summary>The AITBC error body for a status the framework produced (unknown route, wrong method) or an exception mapped by <see cref="ErrorHandling"/>.</summary>
    public static AitbcError ErrorOf(int status, ApiError error) => new(error.Message ?? StatusPageText(status), error.Error);

    public static AitbcError StatusPage(int status) => status switch
    {
        404 => new AitbcError("no such endpoint", "not_found"),
        405 => new AitbcError("this endpoint does not accept that method", "method_not_allowed"),
        _ => new AitbcError(StatusPageText(status), "error"),
    };

    private static string StatusPageText(int status) => $"the request failed with status {status}";

    /// <summary>
    /// <c>X-Api-Key</c> with one of the grid's API keys (the same accounts and hashing as the Grid API's bearer keys; the
    /// caller is then <see cref="CallerAuthentication.GetCaller"/>'s). Without a valid key, or with a disabled account's,
    /// the answer is 401 in the AITBC error shape.
    /// </summary>
    public static TBuilder RequireAitbcKey<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (invocation, next) =>
        {
            var context = invocation.HttpContext;
            var key = context.Request.Headers[ApiKeyHeader].ToString().Trim();
            if (key.Length == 0) return Error(StatusCodes.Status401Unauthorized, "unauthorized", $"send your API key in the {ApiKeyHeader} header");
            return await CallerAuthentication.AuthenticateKeyAsync(context, key, needWorker: false) switch
            {
                null => await next(invocation),
                AuthenticationFailure.AccountDisabled => Error(StatusCodes.Status401Unauthorized, "account_disabled", "this account is disabled"),
                _ => Error(StatusCodes.Status401Unauthorized, "unauthorized", "this API key is not valid or has been revoked"),
            };
        });
}
