using System.Text;
using System.Text.Json;
using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Billing;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Stripe;

namespace Coordinator.Api.Billing;

public sealed record CheckoutDto(string Id, string Url);

public sealed record WebhookReceivedDto(bool Received, string Outcome);

/// <summary><c>/api/v1/billing</c>: Stripe Checkout for plans, and Stripe's webhook.</summary>
public static class BillingApi
{
    /// <summary>Stripe's events are small; anything bigger is not from Stripe.</summary>
    public const int MaxWebhookBytes = 512 * 1024;

    public static IEndpointRouteBuilder MapBilling(this IEndpointRouteBuilder routes)
    {
        var billing = routes.MapGroup("/billing").WithTags("Billing");
        billing.MapPost("/checkout", CheckoutAsync).RequireApiKey();
        billing.MapPost("/stripe/webhook", WebhookAsync);
        return routes;
    }

    public static async Task<Results<Ok<CheckoutDto>, UnprocessableEntity<ApiError>, JsonHttpResult<ApiError>>> CheckoutAsync(
        HttpContext context, BillingStore billing, StripePayments stripe, IOptions<BillingOptions> options)
    {
        if (!options.Value.Enabled) return ApiErrors.InvalidRequest("billing is not configured on this coordinator");
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var plan = fields.String("plan", required: true, maxLength: 100);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));
        var price = await billing.PriceOfAsync(plan!, context.RequestAborted);
        if (price is null) return ApiErrors.InvalidRequest($"there is no plan '{plan}' to subscribe to");

        var accountId = context.GetCaller().AccountId;
        var account = await billing.GetAsync(accountId, context.RequestAborted);
        try
        {
            var session = await stripe.CreateCheckoutSessionAsync(price, accountId, account.CustomerId, context.RequestAborted);
            return TypedResults.Ok(new CheckoutDto(session.Id, session.Url));
        }
        catch (Exception exception) when (exception is StripeException or HttpRequestException)
        {
            return TypedResults.Json(new ApiError("payment_provider_error", $"Stripe could not open a checkout session: {exception.Message}"),
                statusCode: StatusCodes.Status502BadGateway);
        }
    }

    public static async Task<Results<Ok<WebhookReceivedDto>, BadRequest<ApiError>, JsonHttpResult<ApiError>>> WebhookAsync(
        HttpContext context, BillingStore billing, TimeProvider time, IOptions<BillingOptions> options)
    {
        var secret = options.Value.WebhookSecret;
        if (string.IsNullOrEmpty(secret))
        {
            return TypedResults.Json(new ApiError("billing_not_configured", "no Stripe webhook secret is configured"), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        if (context.Request.ContentLength > MaxWebhookBytes) return TypedResults.BadRequest(new ApiError("payload_too_large"));
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        if (buffer.Length > MaxWebhookBytes) return TypedResults.BadRequest(new ApiError("payload_too_large"));
        // The signature covers the raw bytes as sent.
        var payload = Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);

        var check = StripeSignature.Verify(context.Request.Headers["Stripe-Signature"], payload, secret, time.GetUtcNow(), options.Value.WebhookTolerance);
        if (check != SignatureCheck.Valid)
        {
            return TypedResults.BadRequest(new ApiError("invalid_signature", check switch
            {
                SignatureCheck.Stale => "the Stripe-Signature timestamp is outside the tolerance (replayed or delayed event)",
                SignatureCheck.Mismatch => "no v1 signature in Stripe-Signature matches this payload",
                _ => "the Stripe-Signature header is missing or malformed",
            }));
        }

        // Read as JSON rather than through EventUtility.ConstructEvent: Stripe.net's typed Event follows its own pinned
        // API version, refusing events of any other release train (or, told not to, possibly misreading them), while the
        // endpoint sends events in the version it was created with. The few fields BillingStore reads are the same in all.
        JsonElement stripeEvent;
        try
        {
            stripeEvent = JsonDocument.Parse(payload).RootElement.Clone();
            if (JsonText.Problems(stripeEvent) is { Count: > 0 } problems)
            {
                return TypedResults.BadRequest(new ApiError("invalid_event", "the payload is not a Stripe event: " + string.Join("; ", problems)));
            }
            _ = stripeEvent.GetProperty("id").GetString() ?? throw new KeyNotFoundException();
            _ = stripeEvent.GetProperty("type").GetString() ?? throw new KeyNotFoundException();
            _ = stripeEvent.GetProperty("data").GetProperty("object");
        }
        catch (Exception exception) when (exception is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return TypedResults.BadRequest(new ApiError("invalid_event", "the payload is not a Stripe event"));
        }
        var outcome = await billing.ApplyAsync(stripeEvent, context.RequestAborted);
        return TypedResults.Ok(new WebhookReceivedDto(true, outcome.ToString().ToLowerInvariant()));
    }
}
