using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Billing;

/// <summary>
/// A stand-in for api.stripe.com on loopback speaking Stripe's wire format: form-encoded requests with bracket
/// notation, Bearer secret key, JSON objects back, and Stripe error objects (<c>{"error": {"type", "code", "message"}}</c>)
/// with Stripe's status codes (401 bad key, 400 invalid request, 402 card declined, 500 on its side), and a
/// <c>Request-Id</c> header on every answer. It records what each request said about its client.
/// </summary>
public sealed class FakeStripe : IAsyncDisposable
{
    public const string SecretKey = "sk_test_fake_coordinator";
    public const string DeclinedPaymentMethod = "pm_card_chargeDeclined";

    /// <summary>Charging it fails once with a 500 per Idempotency-Key, as a request that hit a bad moment at Stripe does.</summary>
    public const string FlakyPaymentMethod = "pm_fake_flaky";

    private readonly ConcurrentDictionary<string, bool> _failedOnce = new(StringComparer.Ordinal);

    private readonly WebApplication _app;

    private FakeStripe(WebApplication app) => _app = app;

    public ConcurrentQueue<FakeStripeRequest> Requests { get; } = new();

    public Uri BaseAddress { get; private set; } = null!;

    public static async Task<FakeStripe> StartAsync()
    {
        var builder = Loopback.CreateBuilder();
        var app = builder.Build();
        var fake = new FakeStripe(app);
        app.MapPost("/v1/checkout/sessions", (Delegate)((HttpContext context) => fake.HandleAsync(context, form =>
        {
            if (form.GetValueOrDefault("mode") != "subscription") return Error(400, "invalid_request_error", "parameter_invalid_empty", "mode must be subscription here");
            if (!form.TryGetValue("line_items[0][price]", out var price) || !price.StartsWith("price_", StringComparison.Ordinal))
            {
                return Error(400, "invalid_request_error", "resource_missing", $"No such price: '{price}'");
            }
            var id = "cs_test_" + Guid.NewGuid().ToString("N")[..24];
            return Results.Json(new Dictionary<string, object?>
            {
                ["id"] = id, ["object"] = "checkout.session", ["mode"] = "subscription", ["status"] = "open",
                ["client_reference_id"] = form.GetValueOrDefault("client_reference_id"), ["customer"] = form.GetValueOrDefault("customer"),
                ["url"] = $"https://checkout.stripe.com/c/pay/{id}",
            });
        })));
        app.MapPost("/v1/payment_intents", (Delegate)((HttpContext context) => fake.HandleAsync(context, form =>
        {
            var id = "pi_" + Guid.NewGuid().ToString("N")[..24];
            if (form.GetValueOrDefault("payment_method") == FlakyPaymentMethod && context.Request.Headers["Idempotency-Key"].FirstOrDefault() is { } key
                && fake._failedOnce.TryAdd(key, true))
            {
                return Error(500, "api_error", null, "An unknown error occurred");
            }
            if (form.GetValueOrDefault("payment_method") == DeclinedPaymentMethod)
            {
                return Results.Json(new { error = new { type = "card_error", code = "card_declined", decline_code = "generic_decline",
                    message = "Your card was declined.", payment_intent = new { id, @object = "payment_intent", status = "requires_payment_method" } } },
                    statusCode: 402);
            }
            return Results.Json(new Dictionary<string, object?>
            {
                ["id"] = id, ["object"] = "payment_intent", ["status"] = "succeeded",
                ["amount"] = long.Parse(form["amount"]), ["currency"] = form["currency"], ["customer"] = form["customer"],
            });
        })));
        await app.StartAsync();
        var address = Loopback.AddressOf(app);
        fake.BaseAddress = new Uri(address);
        return fake;
    }

    private async Task<IResult> HandleAsync(HttpContext context, Func<Dictionary<string, string>, IResult> respond)
    {
        context.Response.Headers["Request-Id"] = "req_" + Guid.NewGuid().ToString("N")[..14];
        if (context.Request.Headers.Authorization != $"Bearer {SecretKey}")
        {
            return Error(401, "invalid_request_error", null, "Invalid API Key provided");
        }
        if (!context.Request.HasFormContentType) return Error(400, "invalid_request_error", null, "requests must be form-encoded");
        var form = (await context.Request.ReadFormAsync()).ToDictionary(f => f.Key, f => f.Value.ToString(), StringComparer.Ordinal);
        var headers = context.Request.Headers;
        Requests.Enqueue(new FakeStripeRequest(context.Request.Path, form, headers["Idempotency-Key"].FirstOrDefault(),
            headers.UserAgent.FirstOrDefault(), headers["X-Stripe-Client-User-Agent"].FirstOrDefault(), headers["Stripe-Version"].FirstOrDefault()));
        return respond(form);
    }

    private static IResult Error(int status, string type, string? code, string message) =>
        Results.Json(new { error = new { type, code, message } }, statusCode: status);

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}

/// <summary>One request as <see cref="FakeStripe"/> received it: the form, and the headers that say which client sent it.</summary>
public sealed record FakeStripeRequest(
    string Path, Dictionary<string, string> Form, string? IdempotencyKey, string? UserAgent, string? ClientUserAgent, string? StripeVersion);
