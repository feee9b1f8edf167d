using System.Globalization;
using Microsoft.Extensions.Options;
using Stripe;
using Stripe.Checkout;

namespace Coordinator.Grains.Billing;

/// <summary>
/// The two Stripe calls billing makes, through Stripe.net's services on one <see cref="StripeClient"/> aimed at
/// <see cref="BillingOptions.ApiBase"/>. Stripe's error objects arrive as <see cref="StripeException"/> (the object itself in
/// <see cref="StripeException.StripeError"/>); an unreachable Stripe as <see cref="HttpRequestException"/>, or as
/// <see cref="TaskCanceledException"/> once the last attempt timed out.
/// </summary>
public sealed class StripePayments
{
    /// <summary>The <see cref="IHttpClientFactory"/> client Stripe.net sends through.</summary>
    public const string HttpClientName = "Stripe";

    /// <summary>
    /// One retry, Stripe.net's way: network failures, 409 and 5xx answers (or whatever Stripe-Should-Retry says), with the
    /// same Idempotency-Key, after 0.5–1 s. With <see cref="AttemptTimeout"/> the worst case stays near 20 s, the old
    /// single attempt's limit, which matters because a priority boost is charged inside <c>POST /jobs</c>.
    /// </summary>
    internal const int MaxNetworkRetries = 1;

    /// <summary>Per attempt (Stripe.net's own default is 80 s).</summary>
    internal static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);

    private readonly StripeClient _stripe;
    private readonly BillingOptions _options;

    public StripePayments(IHttpClientFactory httpClients, IOptions<BillingOptions> options)
    {
        _options = options.Value;
        _stripe = new StripeClient(new StripeClientOptions
        {
            // Stripe.net refuses an empty key outright; null is billing switched off, and no call is made then.
            ApiKey = string.IsNullOrEmpty(_options.SecretKey) ? null : _options.SecretKey,
            // Stripe.net appends "/v1/…" to the base as it is.
            ApiBase = _options.ApiBase.AbsoluteUri.TrimEnd('/'),
            // Telemetry off: it would keep an id file in the service account's home (~/.config/stripe) and tell Stripe the
            // host's OS and each call's latency.
            HttpClient = new SystemNetHttpClient(httpClients.CreateClient(HttpClientName), MaxNetworkRetries, enableTelemetry: false),
        });
    }

    /// <summary>A subscription Checkout Session for one unit of <paramref name="priceId"/>, tagged with the account on the session and the subscription.</summary>
    public Task<Session> CreateCheckoutSessionAsync(string priceId, long accountId, string? customerId, CancellationToken cancellationToken = default)
    {
        var account = accountId.ToString(CultureInfo.InvariantCulture);
        return _stripe.V1.Checkout.Sessions.CreateAsync(new SessionCreateOptions
        {
            Mode = "subscription",
            LineItems = [new SessionLineItemOptions { Price = priceId, Quantity = 1 }],
            SuccessUrl = _options.CheckoutSuccessUrl,
            CancelUrl = _options.CheckoutCancelUrl,
            ClientReferenceId = account,
            Metadata = new() { ["account_id"] = account },
            SubscriptionData = new SessionSubscriptionDataOptions { Metadata = new() { ["account_id"] = account } },
            Customer = customerId,
        }, cancellationToken: cancellationToken);
    }

    /// <summary>Charges the customer's saved payment method now, off-session, in one confirmed PaymentIntent.</summary>
    public Task<PaymentIntent> ChargeAsync(long amount, string customerId, string paymentMethodId, string description, string idempotencyKey, CancellationToken cancellationToken = default) =>
        _stripe.V1.PaymentIntents.CreateAsync(new PaymentIntentCreateOptions
        {
            Amount = amount,
            Currency = _options.Currency,
            Customer = customerId,
            PaymentMethod = paymentMethodId,
            OffSession = true,
            Confirm = true,
            Description = description,
        }, new RequestOptions { IdempotencyKey = idempotencyKey }, cancellationToken);
}
