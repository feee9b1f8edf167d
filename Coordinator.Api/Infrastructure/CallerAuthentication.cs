using Coordinator.Grains.Accounts;

namespace Coordinator.Api.Infrastructure;

/// <summary>
/// Bearer-key authentication as endpoint filters: <see cref="RequireApiKey"/> for client endpoints,
/// <see cref="RequireWorkerKey"/> for <c>/worker/*</c> (the key must be bound to a worker).
/// </summary>
public static class CallerAuthentication
{
    private const string CallerItem = "coordinator.caller";
    private const string KeyItem = "coordinator.key";

    public static Caller GetCaller(this HttpContext context) => (Caller)context.Items[CallerItem]!;

    /// <summary>The bearer key of this request, as sent (needed to echo it as <c>worker_token</c>).</summary>
    public static string GetBearerKey(this HttpContext context) => (string)context.Items[KeyItem]!;

    /// <summary>Any active key of an enabled account; <paramref name="disabledStatus"/> is what a disabled account gets.</summary>
    public static TBuilder RequireApiKey<TBuilder>(this TBuilder builder, int disabledStatus = StatusCodes.Status401Unauthorized)
        where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (invocation, next) =>
        {
            var (caller, failure) = await AuthenticateAsync(invocation.HttpContext, needWorker: false, disabledStatus);
            return caller is null ? failure : await next(invocation);
        });

    /// <summary>A key bound to a worker by <c>POST /worker/register</c>.</summary>
    public static TBuilder RequireWorkerKey<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (invocation, next) =>
        {
            var (caller, failure) = await AuthenticateAsync(invocation.HttpContext, needWorker: true, StatusCodes.Status401Unauthorized);
            return caller is null ? failure : await next(invocation);
        });

    private static async Task<(Caller? Caller, IResult? Failure)> AuthenticateAsync(HttpContext context, bool needWorker, int disabledStatus)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            return (null, ApiErrors.Unauthorized("send your API key as 'Authorization: Bearer vk_live_…'"));
        }
        var key = header["Bearer ".Length..].Trim();
        var accounts = context.RequestServices.GetRequiredService<AccountStore>();
        var caller = await accounts.AuthenticateAsync(key, refresh: false, context.RequestAborted);
        // A key bound to a worker on another node moments ago may still be cached here unbound: look again.
        if (needWorker && caller is { WorkerId: null }) caller = await accounts.AuthenticateAsync(key, refresh: true, context.RequestAborted);

        if (caller is null)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
            return (null, ApiErrors.Unauthorized("this API key is not valid or has been revoked"));
        }
        if (caller.AccountDisabled)
        {
            return (null, disabledStatus == StatusCodes.Status403Forbidden
                ? ApiErrors.Forbidden("account_disabled", "this account is disabled")
                : ApiErrors.Unauthorized("this account is disabled"));
        }
        if (needWorker && caller.WorkerId is null)
        {
            return (null, ApiErrors.Unauthorized("this key is not bound to a worker: call POST /api/v1/worker/register with it first"));
        }
        context.Items[CallerItem] = caller;
        context.Items[KeyItem] = key;
        return (caller, null);
    }
}
