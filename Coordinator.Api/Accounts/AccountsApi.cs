using Coordinator.Grains;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains.Accounts;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Accounts;

public sealed record AccountCreatedDto(long AccountId, string ApiKey);

public sealed record KeyCreatedDto(long Id, string Name, string Prefix, string Key, DateTime CreatedAt);

public sealed record KeyDto(long Id, string Name, string Prefix, long? WorkerId, DateTime CreatedAt, DateTime? LastUsedAt);

/// <summary>Sign-up and API keys: <c>/api/v1/accounts</c> and <c>/api/v1/keys</c>.</summary>
public static class AccountsApi
{
    public const int MaxNameLength = 200;

    public static IEndpointRouteBuilder MapAccounts(this IEndpointRouteBuilder routes)
    {
        routes.MapPost("/accounts", SignUpAsync).WithTags("Accounts").RequireRateLimiting(RateLimits.RateLimitPolicies.SignUp);

        var keys = routes.MapGroup("/keys").WithTags("Keys").RequireApiKey();
        keys.MapPost("/", CreateKeyAsync);
        keys.MapGet("/", ListKeysAsync);
        keys.MapDelete("/{id:long}", RevokeKeyAsync);
        return routes;
    }

    public static async Task<Results<Created<AccountCreatedDto>, UnprocessableEntity<ApiError>, JsonHttpResult<ApiError>>> SignUpAsync(
        HttpContext context, AccountStore accounts, IOptions<AccountOptions> options)
    {
        if (!options.Value.OpenSignup) return ApiErrors.Forbidden("signup_disabled", "open sign-up is switched off on this coordinator; ask its operator for an account");
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var name = fields.String("name", required: true, maxLength: MaxNameLength);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var created = await accounts.CreateAccountAsync(name!.Trim(), context.RequestAborted);
        return TypedResults.Created($"/api/v1/accounts/{created.AccountId}", new AccountCreatedDto(created.AccountId, created.ApiKey));
    }

    public static async Task<Results<Created<KeyCreatedDto>, UnprocessableEntity<ApiError>>> CreateKeyAsync(HttpContext context, AccountStore accounts)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request, allowEmpty: true);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var name = fields.String("name", maxLength: MaxNameLength);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var key = await accounts.CreateKeyAsync(context.GetCaller().AccountId, string.IsNullOrWhiteSpace(name) ? "key" : name.Trim(), context.RequestAborted);
        return TypedResults.Created($"/api/v1/keys/{key.Id}", new KeyCreatedDto(key.Id, key.Name, key.Prefix, key.Key, key.CreatedAt));
    }

    public static async Task<Ok<List<KeyDto>>> ListKeysAsync(HttpContext context, AccountStore accounts)
    {
        var keys = await accounts.ListKeysAsync(context.GetCaller().AccountId, context.RequestAborted);
        return TypedResults.Ok(keys.Select(k => new KeyDto(k.Id, k.Name, k.Prefix, k.WorkerId, k.CreatedAt, k.LastUsedAt)).ToList());
    }

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>>> RevokeKeyAsync(long id, HttpContext context, AccountStore accounts)
    {
        var revoked = await accounts.RevokeKeyAsync(context.GetCaller().AccountId, id, context.RequestAborted);
        return revoked ? TypedResults.Ok(new StatusDto("revoked")) : ApiErrors.NotFound($"no active key {id} in this account");
    }
}
