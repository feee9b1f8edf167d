using System.Net;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Billing;
using Coordinator.Tests.Infrastructure;
using Stripe;

namespace Coordinator.Tests.Billing;

/// <summary>Checkout, webhooks and priority boosts against a fake Stripe speaking Stripe's wire format.</summary>
public sealed class BillingTests : IAsyncLifetime
{
    private const string WebhookSecret = "whsec_test_coordinator";
    private FakeStripe _stripe = null!;
    private GridHost _host = null!;

    public async Task InitializeAsync()
    {
        _stripe = await FakeStripe.StartAsync();
        _host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
        {
            ["Billing:SecretKey"] = FakeStripe.SecretKey,
            ["Billing:WebhookSecret"] = WebhookSecret,
            ["Billing:ApiBase"] = _stripe.BaseAddress.ToString(),
            ["Billing:Plans:0:Id"] = "pro",
            ["Billing:Plans:0:Name"] = "Pro",
            ["Billing:Plans:0:PriceId"] = "price_pro",
            ["Billing:Plans:0:PriorityBoost"] = "10",
        });
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _stripe.DisposeAsync();
    }

    private async Task<HttpResponseMessage> DeliverAsync(object stripeEvent, DateTimeOffset? signedAt = null, string? secret = null)
    {
        var payload = JsonSerializer.Serialize(stripeEvent);
        using var request = new HttpRequestMessage(HttpMethod.Post, "billing/stripe/webhook") { Content = new StringContent(payload, Encoding.UTF8, "application/json") };
        request.Headers.Add("Stripe-Signature", StripeSignature.Sign(payload, secret ?? WebhookSecret, signedAt ?? DateTimeOffset.UtcNow));
        return await _host.Http.SendAsync(request);
    }

    private static object SubscriptionEvent(string eventId, string type, long accountId, string status = "active", string paymentMethod = "pm_card_visa") => new
    {
        id = eventId, @object = "event", type,
        data = new
        {
            @object = new
            {
                id = "sub_" + accountId, @object = "subscription", customer = "cus_" + accountId, status,
                default_payment_method = paymentMethod, metadata = new { account_id = accountId.ToString() },
                items = new { @object = "list", data = new[] { new { id = "si_1", price = new { id = "price_pro", @object = "price" } } } },
            },
        },
    };

    private static string NewEventId() => "evt_" + Guid.NewGuid().ToString("N");

    private async Task<(long AccountId, ApiClient Client)> SubscribedAccountAsync(string paymentMethod = "pm_card_visa")
    {
        var (accountId, key) = await _host.Anonymous().SignUpAsync("subscriber");
        await ApiClient.ExpectAsync(await DeliverAsync(SubscriptionEvent(NewEventId(), "customer.subscription.created", accountId, paymentMethod: paymentMethod)), HttpStatusCode.OK);
        return (accountId, _host.WithKey(key));
    }

    [Fact]
    public async Task Checkout_OpensASubscriptionSessionForThePlan()
    {
        var (accountId, key) = await _host.Anonymous().SignUpAsync("buyer");
        var body = await ApiClient.ExpectAsync(await _host.WithKey(key).PostAsync("billing/checkout", new { plan = "pro" }), HttpStatusCode.OK);
        Assert.StartsWith("https://checkout.stripe.com/c/pay/cs_test_", body.GetProperty("url").GetString());

        var sent = _stripe.Requests.Last(r => r.Path == "/v1/checkout/sessions").Form;
        Assert.Equal("subscription", sent["mode"]);
        Assert.Equal("price_pro", sent["line_items[0][price]"]);
        Assert.Equal(accountId.ToString(), sent["client_reference_id"]);
        Assert.Equal(accountId.ToString(), sent["subscription_data[metadata][account_id]"]);

        await ApiClient.ExpectAsync(await _host.WithKey(key).PostAsync("billing/checkout", new { plan = "platinum" }), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task SubscriptionEvents_SetThePlan_AndItsDefaultPriority()
    {
        var (accountId, client) = await SubscribedAccountAsync();
        Assert.Equal(10, (await client.GetJobAsync(await client.SubmitAsync(new { prompt = "p" }))).GetProperty("priority").GetInt32());

        await ApiClient.ExpectAsync(await DeliverAsync(SubscriptionEvent(NewEventId(), "customer.subscription.deleted", accountId, status: "canceled")), HttpStatusCode.OK);
        Assert.Equal(0, (await client.GetJobAsync(await client.SubmitAsync(new { prompt = "p" }))).GetProperty("priority").GetInt32());
    }

    [Fact]
    public async Task CheckoutCompletion_LinksTheStripeCustomer()
    {
        var (accountId, key) = await _host.Anonymous().SignUpAsync("linker");
        var completed = new
        {
            id = NewEventId(), @object = "event", type = "checkout.session.completed",
            data = new { @object = new { id = "cs_test_x", @object = "checkout.session", client_reference_id = accountId.ToString(), customer = "cus_linked", subscription = "sub_linked" } },
        };
        var body = await ApiClient.ExpectAsync(await DeliverAsync(completed), HttpStatusCode.OK);
        Assert.Equal("applied", body.GetProperty("outcome").GetString());
        var billing = await _host.Get<BillingStore>().GetAsync(accountId);
        Assert.Equal("cus_linked", billing.CustomerId);
        _ = key;
    }

    [Fact]
    public async Task TheSameEventTwice_ChangesNothingTheSecondTime()
    {
        var (accountId, client) = await SubscribedAccountAsync();
        var cancel = SubscriptionEvent(NewEventId(), "customer.subscription.deleted", accountId, status: "canceled");
        var upgrade = SubscriptionEvent(NewEventId(), "customer.subscription.updated", accountId);
        Assert.Equal("applied", (await ApiClient.ExpectAsync(await DeliverAsync(cancel), HttpStatusCode.OK)).GetProperty("outcome").GetString());
        await ApiClient.ExpectAsync(await DeliverAsync(upgrade), HttpStatusCode.OK);
        // A replay of the cancellation (same event id) must not downgrade the account again.
        Assert.Equal("duplicate", (await ApiClient.ExpectAsync(await DeliverAsync(cancel), HttpStatusCode.OK)).GetProperty("outcome").GetString());
        Assert.Equal("pro", (await _host.Get<BillingStore>().GetAsync(accountId)).Plan);
        _ = client;
    }

    [Fact]
    public async Task BadSignatures_AndStaleTimestamps_AreRefused()
    {
        var (accountId, _) = await _host.Anonymous().SignUpAsync("target");
        var forged = await DeliverAsync(SubscriptionEvent(NewEventId(), "customer.subscription.created", accountId), secret: "whsec_wrong");
        Assert.Equal("invalid_signature", (await ApiClient.ExpectAsync(forged, HttpStatusCode.BadRequest)).GetProperty("error").GetString());
        var stale = await DeliverAsync(SubscriptionEvent(NewEventId(), "customer.subscription.created", accountId), signedAt: DateTimeOffset.UtcNow.AddMinutes(-6));
        Assert.Contains("tolerance", (await ApiClient.ExpectAsync(stale, HttpStatusCode.BadRequest)).GetProperty("message").GetString());

        using var unsigned = new HttpRequestMessage(HttpMethod.Post, "billing/stripe/webhook") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        await ApiClient.ExpectAsync(await _host.Http.SendAsync(unsigned), HttpStatusCode.BadRequest);
        Assert.Equal("free", (await _host.Get<BillingStore>().GetAsync(accountId)).Plan);
    }

    [Fact]
    public async Task PriorityBoost_WithoutASavedPaymentMethod_Is422_AndCreatesNoJob()
    {
        var client = await _host.NewAccountAsync();
        var body = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", priority_boost = true }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("saved payment method", body.GetProperty("errors")[0].GetString());
        Assert.Empty((await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task PriorityBoost_ChargesTheSavedMethod_AndAdds50()
    {
        var (accountId, client) = await SubscribedAccountAsync();
        var job = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", priority = 5, priority_boost = true }), HttpStatusCode.Created);
        Assert.Equal(55, job.GetProperty("priority").GetInt32());
        Assert.Equal("charged", job.GetProperty("boost_status").GetString());

        var charge = _stripe.Requests.Last(r => r.Path == "/v1/payment_intents" && r.Form["customer"] == "cus_" + accountId);
        Assert.Equal("pm_card_visa", charge.Form["payment_method"]);
        Assert.Equal("true", charge.Form["off_session"]);
        Assert.Equal("true", charge.Form["confirm"]);
        Assert.Equal("100", charge.Form["amount"]);
        Assert.Equal("usd", charge.Form["currency"]);
        Assert.False(string.IsNullOrEmpty(charge.IdempotencyKey));
    }

    [Fact]
    public async Task ADeclinedBoost_LeavesTheJobUnboosted_AndSaysWhy()
    {
        var (_, client) = await SubscribedAccountAsync(FakeStripe.DeclinedPaymentMethod);
        var job = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", priority_boost = true }), HttpStatusCode.Created);
        Assert.Equal(10, job.GetProperty("priority").GetInt32());
        Assert.Equal("failed", job.GetProperty("boost_status").GetString());
        Assert.Contains("card_declined", job.GetProperty("boost_error").GetString());
    }

    [Fact]
    public async Task Upgrading_ReleasesJobsHeldByTheFreeQuota()
    {
        var (accountId, key) = await _host.Anonymous().SignUpAsync("upgrader");
        var client = _host.WithKey(key);
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        // Use up the free plan's 100 requests.
        for (var i = 0; i < 100; i++)
        {
            var id = await client.SubmitAsync(new { model, prompt = "p" });
            Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        }
        var held = await client.GetJobAsync(await client.SubmitAsync(new { model, prompt = "over quota" }));
        Assert.True(held.GetProperty("held").GetBoolean());

        await ApiClient.ExpectAsync(await DeliverAsync(SubscriptionEvent(NewEventId(), "customer.subscription.created", accountId)), HttpStatusCode.OK);
        var released = await client.GetJobAsync(held.GetProperty("job_id").GetInt64());
        Assert.False(released.GetProperty("held").GetBoolean());
        Assert.Equal(released.GetProperty("job_id").GetInt64(), (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task StripeCalls_AreMadeByStripeNet_OnItsPinnedApiVersion()
    {
        var (_, key) = await _host.Anonymous().SignUpAsync("stripe-net");
        await ApiClient.ExpectAsync(await _host.WithKey(key).PostAsync("billing/checkout", new { plan = "pro" }), HttpStatusCode.OK);

        var sent = _stripe.Requests.Last(r => r.Path == "/v1/checkout/sessions");
        Assert.StartsWith("Stripe/", sent.UserAgent);
        Assert.Contains($" .NetBindings/{StripeConfiguration.StripeNetVersion}", sent.UserAgent);
        var client = JsonDocument.Parse(sent.ClientUserAgent!).RootElement;
        Assert.Equal(".net", client.GetProperty("lang").GetString());
        Assert.Equal(StripeConfiguration.StripeNetVersion, client.GetProperty("bindings_version").GetString());
        // Telemetry is off: nothing about the host, no id of this installation.
        Assert.False(client.TryGetProperty("platform", out _));
        Assert.False(client.TryGetProperty("telemetry_id", out _));
        Assert.Equal(StripeConfiguration.ApiVersion, sent.StripeVersion);
        // Stripe.net keys every POST, which is what makes its retries safe.
        Assert.False(string.IsNullOrEmpty(sent.IdempotencyKey));
    }

    [Fact]
    public async Task AFailureOnStripesSide_IsRetriedOnce_WithTheSameIdempotencyKey()
    {
        var (accountId, client) = await SubscribedAccountAsync(FakeStripe.FlakyPaymentMethod);
        var job = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { prompt = "p", priority_boost = true }), HttpStatusCode.Created);
        Assert.Equal("charged", job.GetProperty("boost_status").GetString());
        Assert.Equal(60, job.GetProperty("priority").GetInt32());

        var attempts = _stripe.Requests.Where(r => r.Path == "/v1/payment_intents" && r.Form["customer"] == "cus_" + accountId).ToList();
        Assert.Equal(2, attempts.Count);
        Assert.Equal(attempts[0].IdempotencyKey, attempts[1].IdempotencyKey);
    }

    [Fact]
    public async Task EventsOfAnyApiVersion_AreApplied()
    {
        // A webhook endpoint sends events in the API version it was created with, not the one Stripe.net pins.
        foreach (var apiVersion in new[] { "2024-06-20", "2025-03-31.basil", StripeConfiguration.ApiVersion })
        {
            var (accountId, _) = await _host.Anonymous().SignUpAsync("versioned");
            var created = new
            {
                id = NewEventId(), @object = "event", api_version = apiVersion, type = "customer.subscription.created",
                data = new
                {
                    @object = new
                    {
                        id = "sub_" + accountId, @object = "subscription", customer = "cus_" + accountId, status = "active",
                        metadata = new { account_id = accountId.ToString() },
                        items = new { @object = "list", data = new[] { new { id = "si_1", price = new { id = "price_pro", @object = "price" } } } },
                    },
                },
            };
            Assert.Equal("applied", (await ApiClient.ExpectAsync(await DeliverAsync(created), HttpStatusCode.OK)).GetProperty("outcome").GetString());
            Assert.Equal("pro", (await _host.Get<BillingStore>().GetAsync(accountId)).Plan);
        }
    }
}
