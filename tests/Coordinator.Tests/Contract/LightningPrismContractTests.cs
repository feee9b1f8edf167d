using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Lightning.Agent;
using Coordinator.Tests.Lightning.Payments;

namespace Coordinator.Tests.Contract;

/// <summary>
/// The Lightning agent API through Prism's validating proxy (<c>prism proxy lightning-agent-api.openapi.yaml
/// http://node/api --errors</c>): every operation of the spec that answers JSON, with the statuses it declares, driven
/// through a whole pay-per-job life (stub payments, a worker of the grid answering the eval and the work), and the
/// conversations and images (with a grid key, which the spec does not declare), must match it.
/// </summary>
public sealed class LightningPrismContractTests : IAsyncLifetime
{
    private readonly string _evalModel = ApiClient.Unique("eval") + ":1b";
    private readonly string _workModel = ApiClient.Unique("work") + ":8b";
    private FakePriceOracle _oracle = null!;
    private GridHost _host = null!;
    private PrismProxy _prism = null!;

    public async Task InitializeAsync()
    {
        _oracle = await FakePriceOracle.StartAsync();
        _host = await GridHost.StartAsync(settings: AgentSettings.For(_evalModel, _workModel, _oracle));
        _prism = await PrismProxy.StartAsync(PrismProxy.Spec("lightning-agent-api.openapi.yaml"), new Uri(_host.BaseAddress, "/api"));
    }

    public async Task DisposeAsync()
    {
        await _prism.DisposeAsync();
        await _host.DisposeAsync();
        await _oracle.DisposeAsync();
    }

    [Fact]
    public async Task PayPerJob_AndHealth_ConformToTheSpec()
    {
        var worker = await AgentWorkers.NewAsync(_host, _evalModel, _workModel);
        using var dev = new AgentApi(_host);

        var health = await CallAsync(HttpMethod.Get, "healthz", null, HttpStatusCode.OK);
        Assert.Equal("ok", health.GetProperty("status").GetString());

        // Accepted, paid twice, run, refunded.
        var created = await CallAsync(HttpMethod.Post, "jobs", new { request = "Write a haiku about receipts." }, HttpStatusCode.Created);
        var id = created.GetProperty("jobId").GetString()!;
        Assert.Equal("awaiting_eval_payment", (await CallAsync(HttpMethod.Get, $"jobs/{id}", null, HttpStatusCode.OK)).GetProperty("state").GetString());
        await dev.PayStubAsync(created.GetProperty("evalInvoice"));
        await CallAsync(HttpMethod.Get, $"jobs/{id}", null, HttpStatusCode.OK);
        var eval = await AgentWorkers.TakeAsync(worker, _evalModel);
        await AgentWorkers.CompleteAsync(worker, eval.Id, AgentSettings.Verdict(true, "harmless", 4000));
        var quoted = await UntilAsync(id, "awaiting_work_payment");
        await dev.PayStubAsync(quoted.GetProperty("workInvoice"));
        await UntilAsync(id, "executing");
        var work = await AgentWorkers.TakeAsync(worker, _workModel);
        await AgentWorkers.CompleteAsync(worker, work.Id, "Signed and sealed, / a chain of small promises / kept block after block.");
        var complete = await UntilAsync(id, "complete");
        var refund = complete.GetProperty("costLedger").GetProperty("refundAmountSats").GetInt64();
        Assert.True(refund > 0, $"no refund owed: {complete}");

        await CallAsync(HttpMethod.Post, $"jobs/{id}/refund", new { invoice = "lnbcrt1garbage" }, HttpStatusCode.BadRequest);
        await CallAsync(HttpMethod.Post, $"jobs/{id}/refund", new { invoice = AgentApi.Invoice(refund + 1) }, HttpStatusCode.BadRequest);
        var paid = await CallAsync(HttpMethod.Post, $"jobs/{id}/refund", new { invoice = AgentApi.Invoice(refund) }, HttpStatusCode.OK);
        Assert.Equal(refund, paid.GetProperty("refundAmountSats").GetInt64());
        await CallAsync(HttpMethod.Post, $"jobs/{id}/refund", new { invoice = AgentApi.Invoice(refund) }, HttpStatusCode.Conflict);
        await CallAsync(HttpMethod.Get, $"jobs/{id}", null, HttpStatusCode.OK);

        // Rejected by the evaluator; a refund before completion; unknown jobs; a request too large for the node.
        var rejected = (await CallAsync(HttpMethod.Post, "jobs", new { request = "Something the evaluator refuses." }, HttpStatusCode.Created));
        var rejectedId = rejected.GetProperty("jobId").GetString()!;
        await CallAsync(HttpMethod.Post, $"jobs/{rejectedId}/refund", new { invoice = AgentApi.Invoice(1) }, HttpStatusCode.Conflict);
        await dev.PayStubAsync(rejected.GetProperty("evalInvoice"));
        await CallAsync(HttpMethod.Get, $"jobs/{rejectedId}", null, HttpStatusCode.OK);
        var refused = await AgentWorkers.TakeAsync(worker, _evalModel);
        await AgentWorkers.CompleteAsync(worker, refused.Id, AgentSettings.Verdict(false, "not something we do", 10));
        Assert.Equal("not something we do", (await UntilAsync(rejectedId, "rejected")).GetProperty("reason").GetString());

        await CallAsync(HttpMethod.Get, "jobs/no-such-job", null, HttpStatusCode.NotFound);
        await CallAsync(HttpMethod.Post, "jobs/no-such-job/refund", new { invoice = AgentApi.Invoice(1) }, HttpStatusCode.NotFound);
        await CallAsync(HttpMethod.Post, "jobs", new { request = new string('x', 100_000) }, HttpStatusCode.BadRequest);

        _prism.AssertNoViolations();
    }

    [Fact]
    public async Task ConversationsAndImages_ConformToTheSpec()
    {
        var grid = await _host.NewAccountAsync("gemini-prism");
        var key = grid.Key;

        var conversation = await CallAsync(HttpMethod.Post, "gemini/conversations", new { title = "Receipts" }, HttpStatusCode.Created, key);
        var id = conversation.GetProperty("id").GetInt64();
        await CallAsync(HttpMethod.Get, "gemini/conversations", null, HttpStatusCode.OK, key);
        Assert.Empty((await CallAsync(HttpMethod.Get, $"gemini/conversations/{id}", null, HttpStatusCode.OK, key)).GetProperty("messages").EnumerateArray());
        await CallAsync(HttpMethod.Get, $"gemini/conversations/{id}/messages", null, HttpStatusCode.OK, key);
        await CallAsync(HttpMethod.Get, "gemini/conversations/999999999", null, HttpStatusCode.NotFound, key);

        var imageWorker = await Coordinator.Tests.Gemini.Gemini.NewFamilyWorkerAsync(grid, "image:sd-prism");
        var image = CallAsync(HttpMethod.Post, "gemini/generate-image", new { prompt = "a ledger of foxes" }, HttpStatusCode.OK, key);
        var assignment = await Coordinator.Tests.Gemini.Gemini.TakeAsync(imageWorker, "image:sd-prism", "image");
        await Coordinator.Tests.Gemini.Gemini.ResultAsync(imageWorker, assignment.GetProperty("job_id").GetInt64(), "data:image/png;base64,iVBORw0KGgo=");
        Assert.Equal("image/png", (await image).GetProperty("mimeType").GetString());

        await CallAsync(HttpMethod.Delete, $"gemini/conversations/{id}", null, HttpStatusCode.NoContent, key);
        await CallAsync(HttpMethod.Delete, $"gemini/conversations/{id}", null, HttpStatusCode.NotFound, key);

        _prism.AssertNoViolations();
    }

    private async Task<JsonElement> UntilAsync(string id, string state)
    {
        var job = await CallAsync(HttpMethod.Get, $"jobs/{id}", null, HttpStatusCode.OK);
        var deadline = Environment.TickCount64 + 10_000;
        while (job.GetProperty("state").GetString() != state)
        {
            Assert.True(Environment.TickCount64 < deadline, $"job {id} stayed {job.GetProperty("state").GetString()}, not {state}: {job}");
            await Task.Delay(5);
            job = await CallAsync(HttpMethod.Get, $"jobs/{id}", null, HttpStatusCode.OK);
        }
        return job;
    }

    private Task<JsonElement> CallAsync(HttpMethod method, string path, object? body, HttpStatusCode expected, string? bearer = null) =>
        _prism.CallAsync(method, path, request =>
        {
            if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }, body, expected);
}
