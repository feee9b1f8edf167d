using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Aitbc;

/// <summary>The AITBC API's client and miner operations over real HTTP, on the same grid as the Grid API.</summary>
public sealed class AitbcApiTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private async Task<(ApiClient Grid, AitbcClient Aitbc)> NewAccountAsync()
    {
        var grid = await Host.NewAccountAsync("aitbc");
        return (grid, Host.AitbcWithKey(grid.Key));
    }

    /// <summary>A miner on an account of its own: a fresh key of that account registered as the miner.</summary>
    private async Task<(AitbcClient Miner, string MinerId, ApiClient Owner)> NewMinerAsync(params string[] capabilities)
    {
        var (owner, _) = await NewAccountAsync();
        var key = (await ApiClient.ExpectAsync(await owner.PostAsync("keys", new { name = "miner" }), HttpStatusCode.Created)).GetProperty("key").GetString()!;
        var miner = Host.AitbcWithKey(key);
        var minerId = ApiClient.Unique("miner-");
        var registered = await miner.RegisterMinerAsync(minerId, capabilities);
        Assert.Equal(minerId, registered.GetProperty("miner_id").GetString());
        return (miner, minerId, owner);
    }

    [Fact]
    public async Task Submit_AppliesTheSpecDefaults_AndTheJobIsReadableThroughBothApis()
    {
        var (grid, aitbc) = await NewAccountAsync();
        var job = await aitbc.SubmitAsync(new { prompt = "Explain Merkle trees." });
        var id = job.GetProperty("job_id").GetString()!;
        Assert.Equal("pending", job.GetProperty("status").GetString());
        Assert.Equal("llama3.2", job.GetProperty("model").GetString());
        Assert.Equal("Explain Merkle trees.", job.GetProperty("prompt").GetString());
        Assert.Equal(256, job.GetProperty("params").GetProperty("max_tokens").GetInt32());
        Assert.Equal(0.7, job.GetProperty("params").GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, job.GetProperty("params").GetProperty("top_p").GetDouble());
        Assert.True(job.TryGetProperty("created_at", out _));
        Assert.False(job.TryGetProperty("result", out _));

        // The Grid API sees the same job, as a family job of llama3.2.
        var seen = await grid.GetJobAsync(long.Parse(id, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("family", seen.GetProperty("model_match").GetString());
        Assert.Equal("llama3.2", seen.GetProperty("model").GetString());

        // And a Grid API job is readable through AITBC.
        var gridJob = await grid.SubmitAsync(new { model = "llama3:8b", model_match = "exact", prompt = "Hi." });
        var read = await ApiClient.ExpectAsync(await aitbc.GetAsync($"v1/jobs/{gridJob}"), HttpStatusCode.OK);
        Assert.Equal(gridJob.ToString(System.Globalization.CultureInfo.InvariantCulture), read.GetProperty("job_id").GetString());
        Assert.Equal("llama3:8b", read.GetProperty("model").GetString());
    }

    [Fact]
    public async Task Submit_ExplicitModelAndParams_AreKept()
    {
        var (grid, aitbc) = await NewAccountAsync();
        var job = await aitbc.SubmitAsync(new { prompt = "p", model = "qwen2.5:7b", @params = new { max_tokens = 12, temperature = 0.1, top_p = 0.5 } });
        Assert.Equal("qwen2.5:7b", job.GetProperty("model").GetString());
        Assert.Equal(12, job.GetProperty("params").GetProperty("max_tokens").GetInt32());
        var seen = await grid.GetJobAsync(long.Parse(job.GetProperty("job_id").GetString()!, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("exact", seen.GetProperty("model_match").GetString());
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"prompt\": 5}")]
    [InlineData("{\"prompt\": \"p\", \"model\": \"no spaces allowed\"}")]
    [InlineData("{\"prompt\": \"p\", \"params\": {\"max_tokens\": 0}}")]
    [InlineData("{\"prompt\": \"p\", \"params\": {\"temperature\": \"hot\"}}")]
    [InlineData("{\"prompt\": \"p\", \"params\": {\"top_k\": 3}}")]
    [InlineData("{\"prompt\": \"p\", \"params\": []}")]
    [InlineData("[]")]
    [InlineData("{\"prompt\": \"p\"")]
    public async Task Submit_BadBodies_Are400InTheSpecShape_AndInsertNothing(string body)
    {
        var (grid, aitbc) = await NewAccountAsync();
        Assert.Equal("invalid_request", await AitbcClient.ErrorCodeAsync(await aitbc.SendRawAsync(HttpMethod.Post, "v1/jobs", body), HttpStatusCode.BadRequest));
        Assert.Empty((await ApiClient.ExpectAsync(await grid.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task OversizedInput_IsRefusedInTheSpecShape_AndInsertsNothing()
    {
        var (grid, aitbc) = await NewAccountAsync();
        // A prompt past Jobs:MaxPromptBytes (1 MiB), in a body the server still reads.
        var longPrompt = new string('a', 1024 * 1024 + 1);
        Assert.Equal("invalid_request", await AitbcClient.ErrorCodeAsync(await aitbc.PostAsync("v1/jobs", new { prompt = longPrompt }), HttpStatusCode.BadRequest));
        // A body past Http:MaxRequestBodyBytes (8 MiB).
        var huge = new string('a', 9 * 1024 * 1024);
        try
        {
            Assert.Equal("payload_too_large", await AitbcClient.ErrorCodeAsync(await aitbc.PostAsync("v1/jobs", new { prompt = huge }), HttpStatusCode.RequestEntityTooLarge));
        }
        catch (HttpRequestException)
        {
            // The server may answer and close the connection before the client has finished sending.
        }
        Assert.Empty((await ApiClient.ExpectAsync(await grid.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task WithoutAValidKey_EveryOperationIs401()
    {
        var anonymous = Host.AitbcWithKey(null);
        var forged = Host.AitbcWithKey("vk_live_not_a_real_key_at_all_0000000000000000");
        foreach (var client in new[] { anonymous, forged })
        {
            Assert.Equal("unauthorized", await AitbcClient.ErrorCodeAsync(await client.PostAsync("v1/jobs", new { prompt = "p" }), HttpStatusCode.Unauthorized));
            Assert.Equal("unauthorized", await AitbcClient.ErrorCodeAsync(await client.GetAsync("v1/jobs"), HttpStatusCode.Unauthorized));
            Assert.Equal("unauthorized", await AitbcClient.ErrorCodeAsync(await client.GetAsync("v1/jobs/1"), HttpStatusCode.Unauthorized));
            Assert.Equal("unauthorized", await AitbcClient.ErrorCodeAsync(await client.PostAsync("v1/miners/register", new { miner_id = "m", capabilities = new[] { "x" } }), HttpStatusCode.Unauthorized));
            Assert.Equal("unauthorized", await AitbcClient.ErrorCodeAsync(await client.GetAsync("v1/jobs/available?miner_id=m"), HttpStatusCode.Unauthorized));
        }
    }

    [Fact]
    public async Task List_FiltersByStatus_AndChecksItsParameters()
    {
        var (_, aitbc) = await NewAccountAsync();
        var first = (await aitbc.SubmitAsync(new { prompt = "one" })).GetProperty("job_id").GetString();
        var second = (await aitbc.SubmitAsync(new { prompt = "two" })).GetProperty("job_id").GetString();
        await ApiClient.ExpectAsync(await aitbc.PostAsync($"v1/jobs/{first}/cancel"), HttpStatusCode.OK);

        var all = (await ApiClient.ExpectAsync(await aitbc.GetAsync("v1/jobs"), HttpStatusCode.OK)).EnumerateArray().Select(j => j.GetProperty("job_id").GetString()).ToList();
        Assert.Equal([second, first], all);
        var pending = (await ApiClient.ExpectAsync(await aitbc.GetAsync("v1/jobs?status=pending"), HttpStatusCode.OK)).EnumerateArray().Select(j => j.GetProperty("job_id").GetString()).ToList();
        Assert.Equal([second], pending);
        var paged = (await ApiClient.ExpectAsync(await aitbc.GetAsync("v1/jobs?limit=1&offset=1"), HttpStatusCode.OK)).EnumerateArray().Select(j => j.GetProperty("job_id").GetString()).ToList();
        Assert.Equal([first], paged);

        foreach (var query in new[] { "status=claimed", "limit=101", "limit=0", "offset=-1", "limit=ten" })
        {
            Assert.Equal("invalid_request", await AitbcClient.ErrorCodeAsync(await aitbc.GetAsync("v1/jobs?" + query), HttpStatusCode.BadRequest));
        }
    }

    [Fact]
    public async Task AForeignOrMalformedJobId_IsNotFound()
    {
        var (_, owner) = await NewAccountAsync();
        var (_, stranger) = await NewAccountAsync();
        var id = (await owner.SubmitAsync(new { prompt = "mine" })).GetProperty("job_id").GetString();
        foreach (var path in new[] { $"v1/jobs/{id}", "v1/jobs/abc", "v1/jobs/-1", "v1/jobs/99999999999999999999" })
        {
            Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await stranger.GetAsync(path), HttpStatusCode.NotFound));
        }
        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await stranger.PostAsync($"v1/jobs/{id}/cancel"), HttpStatusCode.NotFound));
        await ApiClient.ExpectAsync(await owner.GetAsync($"v1/jobs/{id}"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task AMiner_RegistersAsksClaimsAndCompletes_AndTheClientReadsTheResult()
    {
        var model = ApiClient.Unique() + ":1b";
        var (miner, minerId, owner) = await NewMinerAsync(model);
        var (_, client) = await NewAccountAsync();
        Assert.Null(await miner.AvailableAsync(minerId));

        var id = (await client.SubmitAsync(new { prompt = "Count to three.", model })).GetProperty("job_id").GetString()!;
        var offered = await miner.AvailableAsync(minerId);
        Assert.Equal(id, offered!.Value.GetProperty("job_id").GetString());
        Assert.Equal("Count to three.", offered.Value.GetProperty("prompt").GetString());
        Assert.Equal("pending", offered.Value.GetProperty("status").GetString());

        var claimed = await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{id}/claim", new { miner_id = minerId }), HttpStatusCode.OK);
        Assert.Equal("running", claimed.GetProperty("status").GetString());
        Assert.Equal(minerId, claimed.GetProperty("miner_id").GetString());
        Assert.Null(await miner.AvailableAsync(minerId));
        var running = await ApiClient.ExpectAsync(await client.GetAsync($"v1/jobs/{id}"), HttpStatusCode.OK);
        Assert.Equal("running", running.GetProperty("status").GetString());
        Assert.True(running.TryGetProperty("started_at", out _));

        // The answer is the job's signed receipt: the miner is its provider, the client's account its client.
        var receipt = await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{id}/complete", new { miner_id = minerId, result = "one, two, three", tokens = 6 }), HttpStatusCode.OK);
        Assert.Equal(id, receipt.GetProperty("job_id").GetString());
        Assert.Equal(minerId, receipt.GetProperty("provider").GetString());
        Assert.StartsWith("account-", receipt.GetProperty("client").GetString(), StringComparison.Ordinal);
        Assert.Equal("gpu_seconds", receipt.GetProperty("unit_type").GetString());
        Assert.Equal(model, receipt.GetProperty("model").GetString());
        Assert.Equal("Ed25519", receipt.GetProperty("signature").GetProperty("alg").GetString());
        Assert.Null(await Host.Get<Coordinator.Grains.Receipts.IReceiptVerifier>().VerifyAsync(receipt.GetRawText()));
        var stored = await ApiClient.ExpectAsync(await client.GetAsync($"v1/jobs/{id}/receipt"), HttpStatusCode.OK);
        Assert.Equal(receipt.GetProperty("receipt_id").GetString(), stored.GetProperty("receipt_id").GetString());
        var done = await ApiClient.ExpectAsync(await client.GetAsync($"v1/jobs/{id}"), HttpStatusCode.OK);
        Assert.Equal("completed", done.GetProperty("status").GetString());
        Assert.Equal("one, two, three", done.GetProperty("result").GetString());
        Assert.Equal(minerId, done.GetProperty("miner_id").GetString());
        Assert.True(done.TryGetProperty("completed_at", out _));

        // The miner's worker earned credits for its tokens, like any worker.
        var credits = await ApiClient.ExpectAsync(await Host.WithKey(miner.Key).GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.True(credits.GetProperty("total_earned").GetDecimal() > 0, credits.ToString());
        _ = owner;
    }

    [Fact]
    public async Task ASecondMinersClaim_Is409_AndOnlyTheHolderMayComplete()
    {
        var model = ApiClient.Unique() + ":1b";
        var (first, firstId, _) = await NewMinerAsync(model);
        var (second, secondId, _) = await NewMinerAsync(model);
        var (_, client) = await NewAccountAsync();
        var id = (await client.SubmitAsync(new { prompt = "p", model })).GetProperty("job_id").GetString()!;

        await ApiClient.ExpectAsync(await first.PostAsync($"v1/jobs/{id}/claim", new { miner_id = firstId }), HttpStatusCode.OK);
        Assert.Equal("already_claimed", await AitbcClient.ErrorCodeAsync(await second.PostAsync($"v1/jobs/{id}/claim", new { miner_id = secondId }), HttpStatusCode.Conflict));
        // Claiming again is harmless for the holder.
        await ApiClient.ExpectAsync(await first.PostAsync($"v1/jobs/{id}/claim", new { miner_id = firstId }), HttpStatusCode.OK);

        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await second.PostAsync($"v1/jobs/{id}/complete", new { miner_id = secondId, result = "stolen" }), HttpStatusCode.NotFound));
        await ApiClient.ExpectAsync(await first.PostAsync($"v1/jobs/{id}/complete", new { miner_id = firstId, result = "mine" }), HttpStatusCode.OK);
        Assert.Equal("already_completed", await AitbcClient.ErrorCodeAsync(await first.PostAsync($"v1/jobs/{id}/complete", new { miner_id = firstId, result = "again" }), HttpStatusCode.Conflict));
        Assert.Equal("job_not_available", await AitbcClient.ErrorCodeAsync(await second.PostAsync($"v1/jobs/{id}/claim", new { miner_id = secondId }), HttpStatusCode.Conflict));
        var done = await ApiClient.ExpectAsync(await client.GetAsync($"v1/jobs/{id}"), HttpStatusCode.OK);
        Assert.Equal("mine", done.GetProperty("result").GetString());
    }

    [Fact]
    public async Task MinersAreTheCallersOwn()
    {
        var model = ApiClient.Unique() + ":1b";
        var (miner, minerId, owner) = await NewMinerAsync(model);
        var (_, stranger) = await NewAccountAsync();
        // Another account naming the miner: not found, whatever the call.
        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await stranger.GetAsync($"v1/jobs/available?miner_id={minerId}"), HttpStatusCode.NotFound));
        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await stranger.PostAsync("v1/jobs/1/claim", new { miner_id = minerId }), HttpStatusCode.NotFound));
        // Another key of the same account, not bound to the miner: forbidden.
        var sameAccount = Host.AitbcWithKey(owner.Key);
        Assert.Equal("miner_mismatch", await AitbcClient.ErrorCodeAsync(await sameAccount.GetAsync($"v1/jobs/available?miner_id={minerId}"), HttpStatusCode.Forbidden));
        // An unknown miner, a missing miner id.
        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await miner.GetAsync("v1/jobs/available?miner_id=nobody-here"), HttpStatusCode.NotFound));
        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await miner.GetAsync("v1/jobs/available?miner_id=a%00b"), HttpStatusCode.NotFound));
        Assert.Equal("invalid_request", await AitbcClient.ErrorCodeAsync(await miner.GetAsync("v1/jobs/available"), HttpStatusCode.BadRequest));
        Assert.Equal("invalid_request", await AitbcClient.ErrorCodeAsync(await miner.PostAsync("v1/jobs/1/claim", new { }), HttpStatusCode.BadRequest));
        // Another account cannot take the miner id.
        Assert.Equal("miner_id_taken", await AitbcClient.ErrorCodeAsync(await stranger.PostAsync("v1/miners/register", new { miner_id = minerId, capabilities = new[] { model } }), HttpStatusCode.Conflict));
    }

    [Theory]
    [InlineData("{\"capabilities\": [\"llama3\"]}")]
    [InlineData("{\"miner_id\": \"m1\"}")]
    [InlineData("{\"miner_id\": \"worker-12\", \"capabilities\": []}")]
    [InlineData("{\"miner_id\": \"has space\", \"capabilities\": []}")]
    [InlineData("{\"miner_id\": \"m1\", \"capabilities\": [5]}")]
    [InlineData("{\"miner_id\": \"m1\", \"capabilities\": \"llama3\"}")]
    [InlineData("{\"miner_id\": \"m1\", \"capabilities\": [], \"gpu_info\": \"big\"}")]
    public async Task Register_BadBodies_Are400(string body)
    {
        var (_, aitbc) = await NewAccountAsync();
        Assert.Equal("invalid_request", await AitbcClient.ErrorCodeAsync(await aitbc.SendRawAsync(HttpMethod.Post, "v1/miners/register", body), HttpStatusCode.BadRequest));
    }

    [Fact]
    public async Task AClaimOfAModelTheMinerDoesNotServe_Is409()
    {
        var (miner, minerId, _) = await NewMinerAsync(ApiClient.Unique() + ":1b");
        var (_, client) = await NewAccountAsync();
        var id = (await client.SubmitAsync(new { prompt = "p", model = ApiClient.Unique() + ":1b" })).GetProperty("job_id").GetString();
        Assert.Equal("model_not_served", await AitbcClient.ErrorCodeAsync(await miner.PostAsync($"v1/jobs/{id}/claim", new { miner_id = minerId }), HttpStatusCode.Conflict));
        Assert.Equal("not_found", await AitbcClient.ErrorCodeAsync(await miner.PostAsync("v1/jobs/999999999/claim", new { miner_id = minerId }), HttpStatusCode.NotFound));
    }

    [Fact]
    public async Task Cancel_WorksUntilTheJobEnds_Then409()
    {
        var model = ApiClient.Unique() + ":1b";
        var (miner, minerId, _) = await NewMinerAsync(model);
        var (_, client) = await NewAccountAsync();

        var pending = (await client.SubmitAsync(new { prompt = "p", model })).GetProperty("job_id").GetString();
        var cancelled = await ApiClient.ExpectAsync(await client.PostAsync($"v1/jobs/{pending}/cancel"), HttpStatusCode.OK);
        Assert.Equal("cancelled", cancelled.GetProperty("status").GetString());
        Assert.Equal("job_not_cancellable", await AitbcClient.ErrorCodeAsync(await client.PostAsync($"v1/jobs/{pending}/cancel"), HttpStatusCode.Conflict));

        // A running job can be cancelled; its miner's result is then refused.
        var running = (await client.SubmitAsync(new { prompt = "p", model })).GetProperty("job_id").GetString();
        await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{running}/claim", new { miner_id = minerId }), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await client.PostAsync($"v1/jobs/{running}/cancel"), HttpStatusCode.OK);
        Assert.Equal("job_not_running", await AitbcClient.ErrorCodeAsync(await miner.PostAsync($"v1/jobs/{running}/complete", new { miner_id = minerId, result = "late" }), HttpStatusCode.Conflict));

        // A completed job cannot be.
        var completed = (await client.SubmitAsync(new { prompt = "p", model })).GetProperty("job_id").GetString();
        await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{completed}/claim", new { miner_id = minerId }), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{completed}/complete", new { miner_id = minerId, result = "done" }), HttpStatusCode.OK);
        Assert.Equal("job_not_cancellable", await AitbcClient.ErrorCodeAsync(await client.PostAsync($"v1/jobs/{completed}/cancel"), HttpStatusCode.Conflict));
    }

    [Fact]
    public async Task OneGrid_AGridWorkerRunsAnAitbcJob_AndAMinerRunsAGridJob()
    {
        var model = ApiClient.Unique() + ":1b";
        var (grid, aitbc) = await NewAccountAsync();

        // An AITBC job, run by a grid-worker through the Grid API's worker protocol.
        var aitbcJob = (await aitbc.SubmitAsync(new { prompt = "from aitbc", model })).GetProperty("job_id").GetString()!;
        var (worker, _) = await grid.NewWorkerAsync(ApiClient.Unique("w"), model);
        var assignment = await worker.PollAsync($"models[]={model}");
        Assert.Equal(aitbcJob, assignment!.Value.GetProperty("job_id").GetInt64().ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(256, assignment.Value.GetProperty("params").GetProperty("max_tokens").GetInt32());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{aitbcJob}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{aitbcJob}/result", new { output = "ok", output_tokens = 1, duration_ms = 5 }), HttpStatusCode.OK);
        var read = await ApiClient.ExpectAsync(await aitbc.GetAsync($"v1/jobs/{aitbcJob}"), HttpStatusCode.OK);
        Assert.Equal("completed", read.GetProperty("status").GetString());
        Assert.StartsWith("worker-", read.GetProperty("miner_id").GetString(), StringComparison.Ordinal);

        // A Grid API job, run by an AITBC miner.
        var (miner, minerId, _) = await NewMinerAsync(model);
        var gridJob = await grid.SubmitAsync(new { model, model_match = "exact", prompt = "from the grid api" });
        var offered = await miner.AvailableAsync(minerId);
        Assert.Equal(gridJob.ToString(System.Globalization.CultureInfo.InvariantCulture), offered!.Value.GetProperty("job_id").GetString());
        await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{gridJob}/claim", new { miner_id = minerId }), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{gridJob}/complete", new { miner_id = minerId, result = "answered" }), HttpStatusCode.OK);
        var seen = await grid.GetJobAsync(gridJob);
        Assert.Equal("completed", seen.GetProperty("status").GetString());
        Assert.Equal("answered", seen.GetProperty("output").GetString());
    }

    [Fact]
    public async Task Available_OffersTheBestJobAcrossTheMinersModels()
    {
        var low = ApiClient.Unique() + ":1b";
        var high = ApiClient.Unique() + ":1b";
        var (miner, minerId, _) = await NewMinerAsync(low, high);
        var (grid, _) = await NewAccountAsync();
        await grid.SubmitAsync(new { model = low, model_match = "exact", prompt = "older, lower priority", priority = 0 });
        var urgent = await grid.SubmitAsync(new { model = high, model_match = "exact", prompt = "newer, higher priority", priority = 5 });
        var offered = await miner.AvailableAsync(minerId);
        Assert.Equal(urgent.ToString(System.Globalization.CultureInfo.InvariantCulture), offered!.Value.GetProperty("job_id").GetString());
    }
}
