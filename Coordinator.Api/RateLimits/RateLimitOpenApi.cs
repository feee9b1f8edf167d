using Coordinator.Api.Infrastructure;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.OpenApi;

namespace Coordinator.Api.RateLimits;

/// <summary>
/// Lists the 429 in the OpenAPI document on every operation a limit can refuse: any under a rate-limit policy (every
/// one not exempt with <c>DisableRateLimiting</c>, like health), which is also every one the failed-authentication limit
/// covers. The body is the API's error (<c>{"error": "rate_limited", "message": …}</c>), with <c>Retry-After</c>.
/// </summary>
public static class RateLimitOpenApi
{
    public static async Task DescribeAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        var metadata = context.Description.ActionDescriptor.EndpointMetadata;
        if (metadata.OfType<DisableRateLimitingAttribute>().Any() || !metadata.OfType<EnableRateLimitingAttribute>().Any()) return;
        operation.Responses ??= [];
        if (operation.Responses.ContainsKey("429")) return;
        var schema = await context.GetOrCreateSchemaAsync(typeof(ApiError), cancellationToken: cancellationToken);
        operation.Responses["429"] = new OpenApiResponse
        {
            Description = "Too many requests: the caller's request rate (per key, or per client address without one), its worker's open polls, " +
                "or its address's failed authentications are over their limit (see RateLimits). Retry after Retry-After seconds.",
            Headers = new Dictionary<string, IOpenApiHeader>
            {
                ["Retry-After"] = new OpenApiHeader
                {
                    Description = "Seconds until the limit's window reopens (at least 1).",
                    Schema = new OpenApiSchema { Type = JsonSchemaType.Integer, Minimum = "1" },
                },
            },
            Content = new Dictionary<string, OpenApiMediaType> { ["application/json"] = new() { Schema = schema } },
        };
    }
}
