using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Accounting;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Api.Usage;

public sealed record UsageDto(string Period, string? Tag, long TokensUsed, long RequestsUsed, IReadOnlyDictionary<string, long> ByTag);

/// <summary><c>GET /api/v1/usage</c>: tokens and completed requests in the current UTC day, week or month.</summary>
public static class UsageApi
{
    public static IEndpointRouteBuilder MapUsage(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/usage", ReportAsync).WithTags("Usage").RequireApiKey();
        return routes;
    }

    public static async Task<Results<Ok<UsageDto>, UnprocessableEntity<ValidationErrors>>> ReportAsync(
        HttpContext context, Grains.Accounting.Usage usage, string? period, string? tag)
    {
        period ??= UsagePeriod.Daily;
        if (!UsagePeriod.All.Contains(period)) return ApiErrors.Validation(["period must be one of daily, weekly, monthly"]);
        if (tag is { Length: > 200 } || (tag ?? "").Contains('\0', StringComparison.Ordinal)) return ApiErrors.Validation(["tag is not a valid tag"]);
        var report = await usage.ReportAsync(context.GetCaller().AccountId, period, tag, context.RequestAborted);
        return TypedResults.Ok(new UsageDto(report.Period, report.Tag, report.TokensUsed, report.RequestsUsed, report.ByTag));
    }
}
