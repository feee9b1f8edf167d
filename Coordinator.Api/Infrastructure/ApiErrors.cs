using Microsoft.AspNetCore.Http.HttpResults;
using System.Text.Json.Serialization;

namespace Coordinator.Api.Infrastructure;

/// <summary>The spec's error body: <c>{"error": "not_found"}</c>, with an optional human-readable <c>message</c>.</summary>
public sealed record ApiError(
    string Error,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Message = null);

/// <summary>The spec's validation body for <c>POST /jobs</c>: <c>{"errors": ["prompt is required"]}</c>.</summary>
public sealed record ValidationErrors(IReadOnlyList<string> Errors);

/// <summary>The only way endpoints fail: each helper produces one of the spec's error bodies.</summary>
public static class ApiErrors
{
    public static JsonHttpResult<ApiError> Unauthorized(string? message = null) =>
        TypedResults.Json(new ApiError("unauthorized", message), statusCode: StatusCodes.Status401Unauthorized);

    public static JsonHttpResult<ApiError> Forbidden(string error, string message) =>
        TypedResults.Json(new ApiError(error, message), statusCode: StatusCodes.Status403Forbidden);

    public static NotFound<ApiError> NotFound(string? message = null) => TypedResults.NotFound(new ApiError("not_found", message));

    public static UnprocessableEntity<ApiError> InvalidState(string message) =>
        TypedResults.UnprocessableEntity(new ApiError("invalid_state", message));

    public static UnprocessableEntity<ApiError> InvalidRequest(string message) =>
        TypedResults.UnprocessableEntity(new ApiError("invalid_request", message));

    public static JsonHttpResult<ApiError> TooLarge(string message) =>
        TypedResults.Json(new ApiError("payload_too_large", message), statusCode: StatusCodes.Status413PayloadTooLarge);

    public static UnprocessableEntity<ValidationErrors> Validation(IReadOnlyList<string> errors) =>
        TypedResults.UnprocessableEntity(new ValidationErrors(errors));

    public static JsonHttpResult<ApiError> Unavailable(string message) =>
        TypedResults.Json(new ApiError("service_unavailable", message), statusCode: StatusCodes.Status503ServiceUnavailable);
}
