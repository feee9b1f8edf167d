using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Contract;

/// <summary>
/// The AITBC API through Prism's validating proxy (<c>prism proxy aitbc-api.openapi.yaml http://127.0.0.1:AITBC-PORT --errors</c>):
/// every operation of the spec, with the statuses it declares, must match the spec.
/// </summary>
public sealed class AitbcPrismContractTests : IAsyncLifetime
{
    private GridHost _host = null!;
    private PrismProxy _prism = null!;

    public async Task InitializeAsync()
    {
        _host = await GridHost.StartAsync();
        _prism = await PrismProxy.StartAsync(PrismProxy.Spec("aitbc-api.openapi.yaml"), _host.Aitbc.BaseAddress!);
    }

    public async Task DisposeAsync()
    {
        await _prism.DisposeAsync();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task EveryOperation_ConformsToTheSpec()
    {
        var (_, client) = await _host.Anonymous().SignUpAsync("aitbc-prism");
        var (_, minerAccount) = await _host.Anonymous().SignUpAsync("aitbc-prism-miner");
        var (_, rivalAccount) = await _host.Anonymous().SignUpAsync("aitbc-prism-rival");
        var model = ApiClient.Unique() + ":1b";
        var minerId = ApiClient.Unique("prism-miner-");
        var rivalId = ApiClient.Unique("prism-rival-");

        var health = await CallAsync(HttpMethod.Get, "health", null, null, HttpStatusCode.OK);
        Assert.Equal("ok", health.GetProperty("status").GetString());

        var job = await CallAsync(HttpMethod.Post, "v1/jobs", client, new { prompt = "Explain receipts.", model, @params = new { max_tokens = 64, temperature = 0.2, top_p = 0.8 } }, HttpStatusCode.Created);
        var id = job.GetProperty("job_id").GetString();
        await CallAsync(HttpMethod.Post, "v1/jobs", client, new { prompt = "Defaults." }, HttpStatusCode.Created);
        // Prism refuses a request the spec says is invalid itself (422) without forwarding it: the 400s are checked against
        // the spec's error shape with a body it accepts and the node does not.
        await CallAsync(HttpMethod.Post, "v1/jobs", client, new { prompt = "Bad parameters.", @params = new { max_tokens = -1 } }, HttpStatusCode.BadRequest);
        await CallAsync(HttpMethod.Post, "v1/jobs", "vk_live_not_a_real_key_at_all_0000000000000000", new { prompt = "Bad key." }, HttpStatusCode.Unauthorized);
        await CallAsync(HttpMethod.Get, "v1/jobs", client, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "v1/jobs?status=pending&limit=5&offset=0", client, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, $"v1/jobs/{id}", client, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "v1/jobs/999999999", client, null, HttpStatusCode.NotFound);

        await CallAsync(HttpMethod.Post, "v1/miners/register", minerAccount, new { miner_id = minerId, capabilities = new[] { model }, gpu_info = new { name = "RTX 4090", memory = "24GB" } }, HttpStatusCode.Created);
        await CallAsync(HttpMethod.Post, "v1/miners/register", rivalAccount, new { miner_id = rivalId, capabilities = new[] { model } }, HttpStatusCode.Created);
        await CallAsync(HttpMethod.Post, "v1/miners/register", minerAccount, new { miner_id = "worker-1", capabilities = new[] { model } }, HttpStatusCode.BadRequest);
        var offered = await CallAsync(HttpMethod.Get, $"v1/jobs/available?miner_id={minerId}", minerAccount, null, HttpStatusCode.OK);
        Assert.Equal(id, offered.GetProperty("job_id").GetString());
        await CallAsync(HttpMethod.Post, $"v1/jobs/{id}/claim", minerAccount, new { miner_id = minerId }, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Post, $"v1/jobs/{id}/claim", rivalAccount, new { miner_id = rivalId }, HttpStatusCode.Conflict);
        var receipt = await CallAsync(HttpMethod.Post, $"v1/jobs/{id}/complete", minerAccount,
            new { miner_id = minerId, result = "Receipts are signed.", completed_at = DateTimeOffset.UtcNow }, HttpStatusCode.OK);
        Assert.Equal(id, receipt.GetProperty("job_id").GetString());
        var receiptId = receipt.GetProperty("receipt_id").GetString();
        await CallAsync(HttpMethod.Get, $"v1/jobs/{id}", client, null, HttpStatusCode.OK);

        await CallAsync(HttpMethod.Get, "v1/receipts", client, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, $"v1/receipts?provider={minerId}&limit=5", minerAccount, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, $"v1/receipts/{receiptId}", client, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "v1/receipts/rcpt_none", client, null, HttpStatusCode.NotFound);

        await _host.Grains.GetGrain<Coordinator.Grains.Ledger.ILedgerGrain>(Coordinator.Grains.Ledger.ILedgerGrain.Key).SealNowAsync();
        var blocks = await CallAsync(HttpMethod.Get, "explorer/blocks?limit=5", null, null, HttpStatusCode.OK);
        Assert.NotEmpty(blocks.EnumerateArray());
        await CallAsync(HttpMethod.Get, "explorer/transactions", null, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Get, "explorer/receipts", null, null, HttpStatusCode.OK);
        var stats = await CallAsync(HttpMethod.Get, "explorer/stats", null, null, HttpStatusCode.OK);
        Assert.True(stats.GetProperty("block_height").GetInt64() >= 1);

        var cancelMe = (await CallAsync(HttpMethod.Post, "v1/jobs", client, new { prompt = "Never mind.", model }, HttpStatusCode.Created)).GetProperty("job_id").GetString();
        await CallAsync(HttpMethod.Post, $"v1/jobs/{cancelMe}/cancel", client, null, HttpStatusCode.OK);
        await CallAsync(HttpMethod.Post, $"v1/jobs/{id}/cancel", client, null, HttpStatusCode.Conflict);
        await CallAsync(HttpMethod.Post, "v1/jobs/999999999/cancel", client, null, HttpStatusCode.NotFound);

        _prism.AssertNoViolations();
    }

    private Task<JsonElement> CallAsync(HttpMethod method, string path, string? key, object? body, HttpStatusCode expected) =>
        _prism.CallAsync(method, path, request =>
        {
            if (key is not null) request.Headers.Add("X-Api-Key", key);
        }, body, expected);
}
