using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Accounting;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Api.Workers;

public sealed record CreditEntryDto(long Id, decimal CreditsEarned, int? OutputTokens, int? DurationMs, bool PaidOut, DateTime CreatedAt);

public sealed record CreditBalanceDto(decimal Balance, decimal TotalEarned, decimal CreditValueUsd, IReadOnlyList<CreditEntryDto> History);

public sealed record PayoutDto(long BatchId, decimal AmountCredits, decimal AmountUsd, string Status);

/// <summary><c>GET /worker/credits</c> and <c>POST /worker/payout_request</c>, for the worker behind the key.</summary>
public static class CreditsApi
{
    public static RouteGroupBuilder MapCredits(this RouteGroupBuilder workerGroup)
    {
        workerGroup.MapGet("/credits", BalanceAsync);
        workerGroup.MapPost("/payout_request", RequestPayoutAsync);
        return workerGroup;
    }

    public static async Task<Ok<CreditBalanceDto>> BalanceAsync(HttpContext context, Credits credits)
    {
        var summary = await credits.SummaryAsync(context.GetCaller().WorkerId!.Value, context.RequestAborted);
        return TypedResults.Ok(new CreditBalanceDto(summary.Balance, summary.TotalEarned, summary.CreditValueUsd,
            summary.History.Select(h => new CreditEntryDto(h.Id, h.CreditsEarned, h.OutputTokens, h.DurationMs, h.PaidOut, h.CreatedAt)).ToList()));
    }

    public static async Task<Results<Created<PayoutDto>, UnprocessableEntity<ApiError>>> RequestPayoutAsync(
        HttpContext context, Credits credits, Microsoft.Extensions.Options.IOptions<Grains.AccountingOptions> options)
    {
        var batch = await credits.RequestPayoutAsync(context.GetCaller().WorkerId!.Value, context.RequestAborted);
        if (batch is null)
        {
            return TypedResults.UnprocessableEntity(new ApiError("insufficient_balance",
                $"the unpaid balance must be above {options.Value.MinimumPayoutCredits} credits to request a payout"));
        }
        return TypedResults.Created($"/api/v1/worker/payouts/{batch.Id}", new PayoutDto(batch.Id, batch.AmountCredits, batch.AmountUsd, batch.Status));
    }
}
