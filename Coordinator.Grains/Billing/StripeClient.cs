using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Billing;

/// <summary>A Stripe API error: the <c>error</c> object Stripe answers with (type, code, message).</summary>
public sealed class StripeException(int status, string type, string? code, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Code { get; } = code;
}

public sealed record CheckoutSession(string Id, string Url);

public sealed record PaymentIntent(string Id, string Status);

/// <summary>
/// A small typed client for the two Stripe calls we make, over <see cref="HttpClient"/>: form-encoded requests
/// (Stripe's bracket notation for nested fields), JSON responses, Stripe error objects turned into <see cref="StripeException"/>.
/// </summary>
public sealed class StripeClient(HttpClient http, IOptions<BillingOptions> options)
{
    public async Task<CheckoutSession> CreateCheckoutSessionAsync(string priceId, long accountId, string? customerId, CancellationToken cancellationToken = default)
    {
        var form = new List<KeyValuePair<string, string>>
        {
            new("mode", "subscription"),
            new("line_items[0][price]", priceId),
            new("line_items[0][quantity]", "1"),
            new("success_url", options.Value.CheckoutSuccessUrl),
            new("cancel_url", options.Value.CheckoutCancelUrl),
            new("client_reference_id", accountId.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("metadata[account_id]", accountId.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("subscription_data[metadata][account_id]", accountId.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        };
        if (customerId is not null) form.Add(new("customer", customerId));
        var json = await PostAsync("v1/checkout/sessions", form, idempotencyKey: null, cancellationToken);
        return new CheckoutSession(json.GetProperty("id").GetString()!, json.GetProperty("url").GetString()!);
    }

    /// <summary>Charges the customer's saved payment method now, off-session, in one confirmed PaymentIntent.</summary>
    public async Task<PaymentIntent> ChargeAsync(long amount, string customerId, string paymentMethodId, string description, string idempotencyKey, CancellationToken cancellationToken = default)
    {
        var form = new List<KeyValuePair<string, string>>
        {
            new("amount", amount.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("currency", options.Value.Currency),
            new("customer", customerId),
            new("payment_method", paymentMethodId),
            new("off_session", "true"),
            new("confirm", "true"),
            new("description", description),
        };
        var json = await PostAsync("v1/payment_intents", form, idempotencyKey, cancellationToken);
        return new PaymentIntent(json.GetProperty("id").GetString()!, json.GetProperty("status").GetString()!);
    }

    private async Task<JsonElement> PostAsync(string path, List<KeyValuePair<string, string>> form, string? idempotencyKey, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(options.Value.ApiBase, path)) { Content = new FormUrlEncodedContent(form) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", options.Value.SecretKey);
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        using var response = await http.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        JsonElement json;
        try
        {
            json = JsonDocument.Parse(body).RootElement.Clone();
        }
        catch (JsonException)
        {
            throw new StripeException((int)response.StatusCode, "api_error", null, $"Stripe answered {(int)response.StatusCode} with a body that is not JSON");
        }
        if (response.IsSuccessStatusCode) return json;
        var error = json.TryGetProperty("error", out var e) ? e : default;
        throw new StripeException((int)response.StatusCode,
            error.ValueKind == JsonValueKind.Object && error.TryGetProperty("type", out var type) ? type.GetString() ?? "api_error" : "api_error",
            error.ValueKind == JsonValueKind.Object && error.TryGetProperty("code", out var code) ? code.GetString() : null,
            error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message) ? message.GetString() ?? "Stripe refused the request" : "Stripe refused the request");
    }
}
