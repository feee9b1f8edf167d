using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Coordinator.Tests.Contract;
using Coordinator.Tests.Infrastructure;
using static Coordinator.Tests.Lightning.Sessions.AgentApi;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// Sessions and the demo through Prism's validating proxy (<c>prism proxy lightning-agent-api.openapi.yaml
/// http://node/api --errors</c>): a session's life with the statuses the spec declares for it, and the demo's 200 and 429
/// with their headers, must match the spec. Prism answers requests the spec calls invalid (a bad amount, a missing
/// parameter) itself, so their 400s are tested without it.
/// </summary>
public sealed class SessionsPrismContractTests : IAsyncLifetime
{
    private GridHost _host = null!;
    private FakeAgentWorker _worker = null!;
    private PrismProxy _prism = null!;
    private HttpClient _dev = null!;

    public async Task InitializeAsync()
    {
        var (evalModel, workModel) = (ApiClient.Unique("eval"), ApiClient.Unique("work"));
        _host = await GridHost.StartAsync(settings: Settings(evalModel, workModel));
        _worker = await FakeAgentWorker.StartAsync(_host, evalModel, workModel);
        _prism = await PrismProxy.StartAsync(PrismProxy.Spec("lightning-agent-api.openapi.yaml"), new Uri(_host.BaseAddress, "/api"));
        _dev = Client(_host);
    }

    public async Task DisposeAsync()
    {
        _dev.Dispose();
        await _prism.DisposeAsync();
        await _worker.DisposeAsync();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task Sessions_ConformToTheSpec()
    {
        var created = await CallAsync(HttpMethod.Post, "sessions", new { amount_sats = 100 }, HttpStatusCode.Created);
        var id = created.GetProperty("sessionId").GetString()!;
        await CallAsync(HttpMethod.Get, $"sessions/{id}", null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "sessions/ses_00000000000000000000000000000000", null, HttpStatusCode.NotFound);
        await PayAsync(_dev, created.GetProperty("invoice").GetProperty("paymentHash").GetString()!);
        var macaroon = (await CallAsync(HttpMethod.Get, $"sessions/{id}", null, HttpStatusCode.OK)).GetProperty("macaroon").GetString()!;

        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "hi" }, HttpStatusCode.Unauthorized, "forged");
        // 100 sats is below the tests' minimum of 150.
        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "hi" }, HttpStatusCode.PaymentRequired, macaroon);
        await CallAsync(HttpMethod.Post, $"sessions/{id}/topup", new { amount_sats = 100 }, HttpStatusCode.Unauthorized, "forged");
        var topup = await CallAsync(HttpMethod.Post, $"sessions/{id}/topup", new { amount_sats = 200 }, HttpStatusCode.OK, macaroon);
        await CallAsync(HttpMethod.Post, $"sessions/{id}/topup", new { amount_sats = 200 }, HttpStatusCode.Conflict, macaroon);
        await CallAsync(HttpMethod.Get, $"sessions/{id}", null, HttpStatusCode.OK);
        await PayAsync(_dev, topup.GetProperty("topup").GetProperty("paymentHash").GetString()!);
        await CallAsync(HttpMethod.Get, $"sessions/{id}", null, HttpStatusCode.OK);

        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "please reject" }, HttpStatusCode.OK, macaroon);
        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "please fail" }, HttpStatusCode.OK, macaroon);
        // 280 → 150 (still active) → 20: paused.
        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "one, tokens=1000" }, HttpStatusCode.OK, macaroon);
        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "two, tokens=1000" }, HttpStatusCode.OK, macaroon);
        await CallAsync(HttpMethod.Post, $"sessions/{id}/request", new { request = "three" }, HttpStatusCode.Conflict, macaroon);
        Assert.Equal("paused", (await CallAsync(HttpMethod.Get, $"sessions/{id}", null, HttpStatusCode.OK)).GetProperty("state").GetString());

        _prism.AssertNoViolations();
    }

    [Fact]
    public async Task TheDemo_ConformsToTheSpec()
    {
        await CallAsync(HttpMethod.Get, "demo?request=hello", null, HttpStatusCode.OK);
        for (var i = 0; i < 4; i++) await CallAsync(HttpMethod.Get, "demo?request=again", null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "demo?request=more", null, HttpStatusCode.TooManyRequests);
        _prism.AssertNoViolations();
    }

    private Task<JsonElement> CallAsync(HttpMethod method, string path, object? body, HttpStatusCode expected, string? bearer = null) =>
        _prism.CallAsync(method, path, request =>
        {
            if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }, body, expected);
}
