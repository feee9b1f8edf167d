using Coordinator.Grains.Accounts;

namespace Coordinator.Api.Infrastructure;

/// <summary>Why a request's bearer key was refused.</summary>
public enum AuthenticationFailure
{
    /// <summary>No <c>Authorization: Bearer …</c> header.</summary>
    NoKey,
    /// <summary>Not a key, or a revoked one.</summary>
    InvalidKey,
    /// <summary>The key's account is disabled.</summary>
    AccountDisabled,
    /// <summary>A worker endpoint was called with a key not bound to a worker.</summary>
    NotAWorkerKey,
}

/// <summary>
/// Bearer-key authentication as endpoint filters: <see cref="RequireApiKey"/> for client endpoints,
/// <see cref="RequireWorkerKey"/> for <c>/worker/*</c> (the key must be bound to a worker). Front doors that speak
/// another API's error shape (the OpenAI-compatible <c>/v1</c>) call <see cref="AuthenticateAsync"/> and word the
/// refusal themselves.
/// </summary>
public static class CallerAuthentication
{
    private const string CallerItem = "coordinator.caller";
    private const string KeyItem = "coordinator.key";

    public static Caller GetCaller(this HttpContext context) => (Caller)context.Items[CallerItem]!;

    /// <summary>The API key this request authenticated with, as sent (needed to echo it as <c>worker_token</c>).</summary>
    public static string GetBearerKey(this HttpContext context) => (string)context.Items[KeyItem]!;

    /// <summary>Any active key of an enabled account; <paramref name="disabledStatus"/> is what a disabled account gets.</summary>
    public static TBuilder RequireApiKey<TBuilder>(this TBuilder builder, int disabledStatus = StatusCodes.Status401Unauthorized)
        where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (invocation, next) =>
            await AuthenticateAsync(invocation.HttpContext, needWorker: false) is { } failure ? Refusal(failure, disabledStatus) : await next(invocation));

    /// <summary>A key bound to a worker by <c>POST /worker/register</c>.</summary>
    public static TBuilder RequireWorkerKey<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (invocation, next) =>
            await AuthenticateAsync(invocation.HttpContext, needWorker: true) is { } failure
                ? Refusal(failure, StatusCodes.Status401Unauthorized)
                : await next(invocation));

    /// <summary>
    /// Checks the request's bearer key: null when it may go on (<see cref="GetCaller"/> then answers who calls), otherwise
    /// why not. Sets <c>WWW-Authenticate</c> where a missing or bad key needs it.
    /// </summary>
    public static async Task<AuthenticationFailure?> AuthenticateAsync(HttpContext context, bool needWorker)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            return AuthenticationFailure.NoKey;
        }
        var failure = await AuthenticateKeyAsync(context, header["Bearer ".Length..].Trim(), needWorker);
        if (failure == AuthenticationFailure.InvalidKey) context.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
        return failure;
    }

    /// <summary>
    /// Checks an API key however the request sent it (a bearer token, AITBC's <c>X-Api-Key</c>): null when it may go on
    /// (<see cref="GetCaller"/> and <see cref="GetBearerKey"/> then answer who calls, with which key), otherwise why not.
    /// </summary>
    public static async Task<AuthenticationFailure?> AuthenticateKeyAsync(HttpContext context, string key, bool needWorker)
    {
        var accounts = context.RequestServices.GetRequiredService<AccountStore>();
        var caller = await accounts.AuthenticateAsync(key, refresh: false, context.RequestAborted);
        // A key bound to a worker on another node moments ago may still be cached here unbound: look again.
        if (needWorker && caller is { WorkerId: null }) caller = await accounts.AuthenticateAsync(key, refresh: true, context.RequestAborted);

        if (caller is null) return AuthenticationFailure.InvalidKey;
        if (caller.AccountDisabled) return AuthenticationFailure.AccountDisabled;
        if (needWorker && caller.WorkerId is null) return AuthenticationFailure.NotAWorkerKey;
        context.Items[CallerItem] = caller;
        context.Items[KeyItem] = key;
        return null;
    }

    private static Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<ApiError> Refusal(AuthenticationFailure failure, int disabledStatus) => failure switch
    {
        AuthenticationFailure.NoKey => ApiErrors.Unauthorized("send your API key as 'Authorization: Bearer vk_live_…'"),
        AuthenticationFailure.InvalidKey => ApiErrors.Unauthorized("this API key is not valid or has been revoked"),
        AuthenticationFailure.AccountDisabled when disabledStatus == StatusCodes.Status403Forbidden => ApiErrors.Forbidden("account_disabled", "this account is disabled"),
        AuthenticationFailure.AccountDisabled => ApiErrors.Unauthorized("this account is disabled"),
        _ => ApiErrors.Unauthorized("this key is not bound to a worker: call POST /api/v1/worker/register with it first"),
    };
}
