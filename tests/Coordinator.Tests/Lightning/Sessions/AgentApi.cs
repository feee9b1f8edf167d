using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// What the session and demo tests share: nodes in stub mode whose agent runs on two models of the test's own, priced so
/// that a work's cost is easy to follow (0.1 USD per 1,000 tokens, no infrastructure cost, a 20 % margin, the fallback
/// price of 100,000 USD a bitcoin: 1,000 tokens cost 120 sats), a minimum balance above the smallest deposit (so that a
/// fresh session can be short of it), and a client of <c>/api/</c>.
/// </summary>
internal static class AgentApi
{
    public const decimal UsdPerThousandTokens = 0.1m;
    public const decimal MarginPercent = 20m;
    public const decimal BtcUsd = 100_000m;
    public const long EvalFeeSats = 10;
    public const long MinimumBalanceSats = 150;

    /// <summary>Below the default 16 KiB, so that a too-long demo request fits in a URL Kestrel accepts.</summary>
    public const int MaxRequestBytes = 2_000;

    /// <summary>Settings for a node whose agent runs on <paramref name="evalModel"/> and <paramref name="workModel"/>.</summary>
    public static Dictionary<string, string?> Settings(string evalModel, string workModel) => new()
    {
        ["Lightning:Agent:EvalModel"] = evalModel,
        ["Lightning:Agent:WorkModel"] = workModel,
        ["Lightning:Agent:UsdPerThousandTokens"] = UsdPerThousandTokens.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Lightning:Agent:InfrastructureUsd"] = "0",
        ["Lightning:Agent:MarginPercent"] = MarginPercent.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Lightning:Agent:EvalFeeSats"] = EvalFeeSats.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Lightning:Price:FallbackUsd"] = BtcUsd.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Lightning:Agent:MaxRequestBytes"] = MaxRequestBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Lightning:Sessions:MinimumBalanceSats"] = MinimumBalanceSats.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>The work's charge for <paramref name="tokens"/>, worked out here from the spec's formula: ceil((tokens × rate) × (1 + margin) / price × 1e8).</summary>
    public static long WorkSats(long tokens) =>
        (long)Math.Ceiling(tokens / 1000m * UsdPerThousandTokens * (1 + MarginPercent / 100m) / BtcUsd * 100_000_000m);

    /// <summary>A client of <c>http://host/api/</c>.</summary>
    public static HttpClient Client(GridHost host) => new() { BaseAddress = new Uri(host.BaseAddress, "/api/"), Timeout = TimeSpan.FromSeconds(100) };

    public static async Task<JsonElement> ExpectAsync(HttpResponseMessage response, HttpStatusCode status) => await ApiClient.ExpectAsync(response, status);

    /// <summary>An error answer in the spec's <c>ErrorResponse</c>: exactly <c>{"error": "…"}</c>; answers the message.</summary>
    public static async Task<string> ErrorAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await ApiClient.ExpectAsync(response, status);
        Assert.Equal(["error"], body.EnumerateObject().Select(p => p.Name));
        return body.GetProperty("error").GetString()!;
    }

    public static async Task<HttpResponseMessage> PostJsonAsync(HttpClient client, string path, string json, string? macaroon = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (macaroon is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", macaroon);
        return await client.SendAsync(request);
    }

    public static Task<HttpResponseMessage> PostAsync(HttpClient client, string path, object body, string? macaroon = null) =>
        PostJsonAsync(client, path, JsonSerializer.Serialize(body), macaroon);

    /// <summary>Opens a session for <paramref name="amountSats"/>; answers its id and the deposit's payment hash.</summary>
    public static async Task<(string Id, string PaymentHash)> OpenAsync(HttpClient client, long amountSats)
    {
        var created = await ExpectAsync(await PostAsync(client, "sessions", new { amount_sats = amountSats }), HttpStatusCode.Created);
        return (created.GetProperty("sessionId").GetString()!, created.GetProperty("invoice").GetProperty("paymentHash").GetString()!);
    }

    /// <summary>Pays a stub invoice through the development route.</summary>
    public static async Task PayAsync(HttpClient client, string paymentHash) =>
        await ExpectAsync(await client.PostAsync($"dev/stub/pay/{paymentHash}", null), HttpStatusCode.OK);

    public static async Task<JsonElement> GetAsync(HttpClient client, string id) => await ExpectAsync(await client.GetAsync($"sessions/{id}"), HttpStatusCode.OK);

    /// <summary>Opens and pays a session; answers its id and a macaroon for it.</summary>
    public static async Task<(string Id, string Macaroon)> OpenActiveAsync(HttpClient client, long amountSats)
    {
        var (id, hash) = await OpenAsync(client, amountSats);
        await PayAsync(client, hash);
        var session = await GetAsync(client, id);
        Assert.Equal("active", session.GetProperty("state").GetString());
        return (id, session.GetProperty("macaroon").GetString()!);
    }

    public static Task<HttpResponseMessage> RequestAsync(HttpClient client, string id, string macaroon, string request) =>
        PostAsync(client, $"sessions/{id}/request", new { request }, macaroon);

    /// <summary>Runs a request that must answer 200; answers the body.</summary>
    public static async Task<JsonElement> RunAsync(HttpClient client, string id, string macaroon, string request) =>
        await ExpectAsync(await RequestAsync(client, id, macaroon, request), HttpStatusCode.OK);
}
