namespace Coordinator.Api.Lightning;

/// <summary>The only way the agent API's session and demo endpoints fail: the spec's <c>ErrorResponse</c>, <c>{"error": "…"}</c>.</summary>
public static class AgentErrors
{
    public static IResult Error(int status, string message) => TypedResults.Json(new AgentErrorDto(message), statusCode: status);

    public static IResult BadRequest(string message) => Error(StatusCodes.Status400BadRequest, message);

    public static IResult Unauthorized(string message) => Error(StatusCodes.Status401Unauthorized, message);

    public static IResult SessionNotFound() => Error(StatusCodes.Status404NotFound, "no session has this id");

    public static IResult Expired() =>
        Error(StatusCodes.Status410Gone, "this session has expired: it was idle past its expiresAt; open a new one with POST /api/sessions");
}
