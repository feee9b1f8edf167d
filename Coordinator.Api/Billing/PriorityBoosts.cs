using Coordinator.Grains.Billing;
using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Options;
using Stripe;

namespace Coordinator.Api.Billing;

/// <summary>Charges a one-time priority boost on the account's saved payment method.</summary>
public sealed partial class PriorityBoosts(BillingStore billing, StripePayments stripe, IOptions<BillingOptions> options, ILogger<PriorityBoosts> logger)
{
    /// <summary>
    /// A charged or failed boost for the job, or — when the account cannot be charged at all — null and the reason,
    /// in which case no job may be created.
    /// </summary>
    public async Task<(Boost? Boost, string? Refusal)> ChargeAsync(long accountId, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (!settings.Enabled) return (null, "priority_boost is not available: this coordinator has no billing configured");
        var account = await billing.GetAsync(accountId, cancellationToken);
        if (account.CustomerId is null || account.PaymentMethodId is null)
        {
            return (null, "priority_boost needs a saved payment method: subscribe to a plan with POST /api/v1/billing/checkout first");
        }
        try
        {
            var intent = await stripe.ChargeAsync(settings.PriorityBoostAmount, account.CustomerId, account.PaymentMethodId,
                "Coordinator priority boost", Guid.NewGuid().ToString("N"), cancellationToken);
            return intent.Status == "succeeded"
                ? (new Boost("charged", settings.PriorityBoostDelta, null, intent.Id), null)
                : (new Boost("failed", 0, $"the payment needs action ({intent.Status}); the job keeps its priority", intent.Id), null);
        }
        catch (Exception exception) when (exception is StripeException or HttpRequestException or TaskCanceledException)
        {
            var reason = exception is StripeException stripeError
                ? $"{stripeError.StripeError?.Code ?? stripeError.StripeError?.Type ?? "api_error"}: {stripeError.Message}"
                : "the payment provider could not be reached";
            LogChargeFailed(logger, accountId, reason);
            return (new Boost("failed", 0, $"priority boost not charged ({reason}); the job keeps its priority", null), null);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Priority boost charge for account {AccountId} failed: {Reason}")]
    private static partial void LogChargeFailed(ILogger logger, long accountId, string reason);
}
