using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Lightning.Bolt11;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Lightning.Payments;
using NBitcoin;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>The agent API of one node (<c>http://host/api/</c>), spoken as an anonymous client over HTTP.</summary>
internal sealed class AgentApi(GridHost host) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = new Uri(host.BaseAddress, "/api/"), Timeout = TimeSpan.FromSeconds(100) };

    public HttpClient Http => _http;

    public void Dispose() => _http.Dispose();

    public Task<HttpResponseMessage> PostAsync(string path, object body) => PostRawAsync(path, JsonSerializer.Serialize(body));

    public async Task<HttpResponseMessage> PostRawAsync(string path, string body, string contentType = "application/json")
    {
        using var content = new StringContent(body, Encoding.UTF8, contentType);
        return await _http.PostAsync(path, content);
    }

    /// <summary>Creates a job; answers the 201's body.</summary>
    public async Task<JsonElement> CreateAsync(string request) =>
        await ApiClient.ExpectAsync(await PostAsync("jobs", new { request }), HttpStatusCode.Created);

    public async Task<JsonElement> GetAsync(string id) => await ApiClient.ExpectAsync(await _http.GetAsync($"jobs/{id}"), HttpStatusCode.OK);

    /// <summary>Reads the job until it is in <paramref name="state"/> (each read advances it), and answers it then.</summary>
    public async Task<JsonElement> UntilAsync(string id, string state)
    {
        var job = await GetAsync(id);
        var deadline = Environment.TickCount64 + 10_000;
        while (job.GetProperty("state").GetString() != state)
        {
            Assert.True(Environment.TickCount64 < deadline, $"job {id} stayed {job.GetProperty("state").GetString()}, not {state}: {job}");
            await Task.Delay(5);
            job = await GetAsync(id);
        }
        return job;
    }

    /// <summary>Pays a stub invoice through the development route.</summary>
    public async Task PayStubAsync(JsonElement invoice) =>
        await ApiClient.ExpectAsync(await _http.PostAsync($"dev/stub/pay/{invoice.GetProperty("paymentHash").GetString()}", null), HttpStatusCode.OK);

    public Task<HttpResponseMessage> RefundAsync(string id, string invoice) => PostAsync($"jobs/{id}/refund", new { invoice });

    /// <summary>An error answer: its status, exactly the spec's <c>{"error": "…"}</c>, and the message.</summary>
    public static async Task<string> ErrorAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await ApiClient.ExpectAsync(response, status);
        Assert.Equal(["error"], body.EnumerateObject().Select(p => p.Name));
        var message = body.GetProperty("error").GetString();
        Assert.False(string.IsNullOrWhiteSpace(message));
        return message!;
    }

    /// <summary>A real, signed BOLT11 invoice, as a client's wallet would make to receive a refund.</summary>
    public static string Invoice(long? amountSats, Bolt11Network network = Bolt11Network.Regtest, DateTimeOffset? at = null, TimeSpan? expiry = null)
    {
        using var key = new Key();
        return Bolt11Encoder.Encode(new Bolt11InvoiceRequest
        {
            Network = network,
            AmountMsat = amountSats * 1000,
            Timestamp = at ?? DateTimeOffset.UtcNow,
            PaymentHash = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)),
            PaymentSecret = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)),
            Description = "refund",
            Expiry = expiry ?? TimeSpan.FromHours(1),
        }, key);
    }

    public static long Long(JsonElement element, string property) => element.GetProperty(property).GetInt64();

    public static decimal Decimal(JsonElement element, string property) => element.GetProperty(property).GetDecimal();
}

/// <summary>
/// The settings the agent tests run a node with: their own eval and work models (tagged, so exact-matched), a fixed price
/// source, and rates chosen so that the pricing's rounding shows.
/// </summary>
internal static class AgentSettings
{
    public const decimal BtcUsd = 70_000m;

    public static Dictionary<string, string?> For(string evalModel, string workModel, FakePriceOracle oracle, FakeLnbits? lnbits = null)
    {
        oracle.UsdPrice = BtcUsd;
        var settings = new Dictionary<string, string?>
        {
            ["Lightning:Agent:EvalModel"] = evalModel,
            ["Lightning:Agent:WorkModel"] = workModel,
            ["Lightning:Agent:UsdPerThousandTokens"] = "0.5",
            ["Lightning:Agent:InfrastructureUsd"] = "0.01",
            ["Lightning:Agent:MarginPercent"] = "20",
            ["Lightning:Agent:JobTimeoutSeconds"] = "60",
            ["Lightning:Price:Url"] = oracle.Url,
        };
        if (lnbits is not null)
        {
            foreach (var (key, value) in LightningServices.Lnbits(lnbits)) settings[key] = value;
        }
        return settings;
    }

    public static string Verdict(bool accept, string reason, long estimatedTokens) =>
        string.Create(CultureInfo.InvariantCulture, $$"""Here is my verdict: {"accept": {{(accept ? "true" : "false")}}, "reason": "{{reason}}", "estimated_tokens": {{estimatedTokens}}}""");
}
