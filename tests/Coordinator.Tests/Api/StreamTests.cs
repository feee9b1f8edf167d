using System.Net;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Api;

/// <summary>
/// A job's output as it is made: a worker's chunks (<c>POST /worker/jobs/{id}/chunks</c>) and a client's event stream
/// (<c>GET /jobs/{id}/stream</c>), over real HTTP.
/// </summary>
public class StreamTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private static async Task<JsonChunk> ChunkAsync(ApiClient worker, long id, int index, string text, HttpStatusCode expected = HttpStatusCode.OK)
    {
        var json = await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index, text }), expected);
        return expected == HttpStatusCode.OK
            ? new JsonChunk(json.GetProperty("status").GetString()!, json.GetProperty("next_index").GetInt32())
            : new JsonChunk(json.GetProperty("error").GetString()!, -1);
    }

    private sealed record JsonChunk(string Status, int NextIndex);

    private static async Task ResultAsync(ApiClient worker, long id, string output) =>
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output, output_tokens = 3, duration_ms = 10 }), HttpStatusCode.OK);

    private static async Task<string> ChunkTextAsync(EventStreamReader stream, string expectedId)
    {
        var chunk = await stream.ExpectAsync("chunk");
        Assert.Equal(expectedId, chunk.Id);
        return chunk.Json.GetProperty("text").GetString()!;
    }

    [Fact]
    public async Task AReader_GetsTheTextSoFar_ThenEachChunkAsItComes_ThenTheJob_AndTheStreamEnds()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        Assert.Equal(new JsonChunk("accepted", 1), await ChunkAsync(worker, id, 0, "Hel"));

        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        Assert.Equal("no-cache", stream.Response.Headers.CacheControl?.ToString());
        Assert.Equal("Hel", await ChunkTextAsync(stream, "0-3"));

        await ChunkAsync(worker, id, 1, "lo, ");
        var second = await stream.ExpectAsync("chunk");
        Assert.Equal(("lo, ", 3, "0-7"), (second.Json.GetProperty("text").GetString(), second.Json.GetProperty("offset").GetInt32(), second.Id));
        await ChunkAsync(worker, id, 2, "wörld 🌍");
        Assert.Equal("wörld 🌍", await ChunkTextAsync(stream, "0-15"));

        await ResultAsync(worker, id, "Hello, wörld 🌍");
        var job = (await stream.ExpectAsync("job")).Json;
        Assert.Equal((id, "completed", "Hello, wörld 🌍"), (job.GetProperty("job_id").GetInt64(), job.GetProperty("status").GetString(), job.GetProperty("output").GetString()));
        Assert.Null(await stream.NextAsync());

        // The chunks were held in memory only; the result wrote the output once.
        Assert.Equal("completed", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task ChunksComeInOrder_OneSentAgainIsADuplicate_AndOnlyTheWorkerRunningTheJobMaySendThem()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, model) = await client.SubmitAndClaimAsync();
        // Claimed but not started: not yet running.
        Assert.Equal("not_found", (await ChunkAsync(worker, id, 0, "early", HttpStatusCode.NotFound)).Status);
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);

        Assert.Equal(new JsonChunk("accepted", 1), await ChunkAsync(worker, id, 0, "a"));
        Assert.Equal(new JsonChunk("duplicate", 1), await ChunkAsync(worker, id, 0, "a"));
        Assert.Equal("invalid_request", (await ChunkAsync(worker, id, 2, "c", HttpStatusCode.UnprocessableEntity)).Status);
        Assert.Equal(new JsonChunk("accepted", 2), await ChunkAsync(worker, id, 1, "b"));

        // Another worker, of the same account or not, does not hold it.
        var (other, _) = await client.NewWorkerAsync("other", model);
        Assert.Equal("not_found", (await ChunkAsync(other, id, 2, "x", HttpStatusCode.NotFound)).Status);
        var (stranger, _) = await (await Host.NewAccountAsync()).NewWorkerAsync("stranger", model);
        Assert.Equal("not_found", (await ChunkAsync(stranger, id, 2, "x", HttpStatusCode.NotFound)).Status);

        // Bad chunks are 422s in the error shape, as a bad request body is everywhere in the Grid API.
        foreach (var body in new object[] { new { index = -1, text = "x" }, new { index = 2 }, new { text = "x" }, new { index = "2", text = "x" },
                     new { index = 2, text = new string('x', 64 * 1024 + 1) } })
        {
            var error = await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", body), HttpStatusCode.UnprocessableEntity);
            Assert.Equal("invalid_request", error.GetProperty("error").GetString());
        }
        await ApiClient.ExpectAsync(await client.PostAsync($"worker/jobs/{id}/chunks", new { index = 2, text = "x" }), HttpStatusCode.Unauthorized);

        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        Assert.Equal("ab", await ChunkTextAsync(stream, "0-2"));
    }

    [Fact]
    public async Task AnotherAccountsJob_AndAJobThatDoesNotExist_Are404()
    {
        var client = await Host.NewAccountAsync();
        var id = await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "p" });
        var stranger = await Host.NewAccountAsync();

        foreach (var (who, path) in new[] { (stranger, $"jobs/{id}/stream"), (client, $"jobs/{id + 1_000_000}/stream") })
        {
            var (stream, response) = await EventStreamReader.OpenAsync(Host.Http, who.Key, path);
            Assert.Null(stream);
            var error = await ApiClient.ExpectAsync(response, HttpStatusCode.NotFound);
            Assert.Equal("not_found", error.GetProperty("error").GetString());
        }
        var (anonymous, unauthorized) = await EventStreamReader.OpenAsync(Host.Http, null, $"jobs/{id}/stream");
        Assert.Null(anonymous);
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
        // Looking was not watching: the stranger's read marked nothing.
        await using var connection = await Host.OpenConnectionAsync();
        Assert.False(await connection.QuerySingleAsync<bool>("SELECT watched FROM jobs WHERE id = @id", new { id }));
    }

    [Fact]
    public async Task AReaderThatReconnectsWithLastEventId_GetsOnlyWhatItMissed()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        await ChunkAsync(worker, id, 0, "one ");

        string lastId;
        await using (var first = await EventStreamReader.OpenJobAsync(client, id))
        {
            lastId = (await first.ExpectAsync("chunk")).Id!;
            Assert.Equal("0-4", lastId);
        }
        await ChunkAsync(worker, id, 1, "two ");
        await ChunkAsync(worker, id, 2, "three");

        await using var again = await EventStreamReader.OpenJobAsync(client, id, lastId);
        Assert.Equal("two three", await ChunkTextAsync(again, "0-13"));
        await ResultAsync(worker, id, "one two three");
        Assert.Equal("completed", (await again.ExpectAsync("job")).Json.GetProperty("status").GetString());

        // After the end, resuming at the end gives the job alone; a made-up id starts from the beginning.
        await using var atEnd = await EventStreamReader.OpenJobAsync(client, id, "0-13");
        Assert.Equal("job", (await atEnd.NextAsync())!.Name);
        await using var madeUp = await EventStreamReader.OpenJobAsync(client, id, "not-an-id");
        Assert.Equal("one two three", await ChunkTextAsync(madeUp, "0-13"));
    }

    [Fact]
    public async Task AResultThatIsNotTheStreamedText_IsSentAsAReplace_BeforeTheJob()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        await ChunkAsync(worker, id, 0, "draft");
        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        Assert.Equal("draft", await ChunkTextAsync(stream, "0-5"));

        await ResultAsync(worker, id, "final answer");

        Assert.Equal("final answer", (await stream.ExpectAsync("replace")).Json.GetProperty("text").GetString());
        var job = await stream.ExpectAsync("job");
        Assert.Equal(("final answer", "0-12"), (job.Json.GetProperty("output").GetString(), job.Id));
        Assert.Null(await stream.NextAsync());
    }

    [Fact]
    public async Task AJobThatIsNotStreamed_OpensItsStreamAtOnce_AndGivesItsWholeOutputAtTheEnd()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });

        // The response starts before there is anything to send.
        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        var (worker, _) = await client.NewWorkerAsync("w", model);
        Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        await ResultAsync(worker, id, "all at once");

        Assert.Equal("all at once", await ChunkTextAsync(stream, "0-11"));
        Assert.Equal("completed", (await stream.ExpectAsync("job")).Json.GetProperty("status").GetString());
        Assert.Null(await stream.NextAsync());
        Assert.True(stream.Comments >= 1, "the stream opened with a comment");
    }

    [Fact]
    public async Task TheStreamOfAJobThatEnded_IsItsOutputAndTheJob_AndAFailureOrACancelEndsItToo()
    {
        var client = await Host.NewAccountAsync();
        var (worker, done, _) = await client.SubmitAndClaimAsync(start: true);
        await ResultAsync(worker, done, "done");
        await using (var stream = await EventStreamReader.OpenJobAsync(client, done))
        {
            Assert.Equal("done", await ChunkTextAsync(stream, "0-4"));
            Assert.Equal("completed", (await stream.ExpectAsync("job")).Json.GetProperty("status").GetString());
        }

        var (failing, failed, _) = await client.SubmitAndClaimAsync(start: true);
        await ChunkAsync(failing, failed, 0, "partial");
        await using (var stream = await EventStreamReader.OpenJobAsync(client, failed))
        {
            await stream.ExpectAsync("chunk");
            await ApiClient.ExpectAsync(await failing.PostAsync($"worker/jobs/{failed}/fail", new { error = "backend crashed", retryable = false }), HttpStatusCode.OK);
            var job = (await stream.ExpectAsync("job")).Json;
            Assert.Equal("failed", job.GetProperty("status").GetString());
            Assert.Null(await stream.NextAsync());
        }

        var pending = await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "never run" });
        await using (var stream = await EventStreamReader.OpenJobAsync(client, pending))
        {
            await ApiClient.ExpectAsync(await client.DeleteAsync($"jobs/{pending}"), HttpStatusCode.OK);
            Assert.Equal("cancelled", (await stream.ExpectAsync("job")).Json.GetProperty("status").GetString());
        }

        var alsoPending = await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "never run either" });
        await using (var stream = await EventStreamReader.OpenJobAsync(client, alsoPending))
        {
            await ApiClient.ExpectAsync(await client.DeleteAsync("jobs/cancel_all"), HttpStatusCode.OK);
            Assert.Equal("cancelled", (await stream.ExpectAsync("job")).Json.GetProperty("status").GetString());
        }
    }

    [Fact]
    public async Task AGrainThatLostTheBeginning_TakesTheNextChunksInOrder_AndGivesItsReaderTheOutputAtTheEnd()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        await ChunkAsync(worker, id, 0, "a");
        await ChunkAsync(worker, id, 1, "b");
        // The job's grain is idle between chunks: collecting idle activations loses what it held, as a silo's death would.
        await Host.Grains.GetGrain<Orleans.Runtime.IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);

        await using var stream = await EventStreamReader.OpenJobAsync(client, id, "0-2");
        Assert.Equal(new JsonChunk("accepted", 3), await ChunkAsync(worker, id, 2, "c"));
        Assert.Equal(new JsonChunk("duplicate", 3), await ChunkAsync(worker, id, 1, "b"));
        Assert.Equal("invalid_request", (await ChunkAsync(worker, id, 4, "e", HttpStatusCode.UnprocessableEntity)).Status);
        await ResultAsync(worker, id, "abc");

        // Nothing was served without the beginning; the end brings the rest past the reader's place.
        Assert.Equal("c", await ChunkTextAsync(stream, "0-3"));
        Assert.Equal("abc", (await stream.ExpectAsync("job")).Json.GetProperty("output").GetString());
    }

    [Fact]
    public async Task TheNextAttemptsFirstChunk_RestartsTheStream_EvenBeforeTheNoticeOfTheRestart_WhichThenChangesNothing()
    {
        var client = await Host.NewAccountAsync();
        var (first, id, model) = await client.SubmitAndClaimAsync(start: true);
        await ChunkAsync(first, id, 0, "stale");
        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        Assert.Equal("stale", await ChunkTextAsync(stream, "0-5"));

        // The job goes back to the queue the way the duties do it, but their notice to the grain is held back.
        await using var connection = await Host.OpenConnectionAsync();
        var accountId = await connection.QuerySingleAsync<long>("""
            UPDATE jobs SET status = 'pending', worker_id = NULL, claimed_at = NULL, started_at = NULL WHERE id = @id RETURNING account_id
            """, new { id });
        await Host.Get<Coordinator.Grains.Dispatch.Dispatchers>().AddAsync(
            [new Coordinator.Grains.Dispatch.QueuedJob(id, model, Coordinator.Grains.ModelNames.FamilyOf(model), "exact", 0, accountId)]);
        var (second, _) = await client.NewWorkerAsync("second", model);
        Assert.Equal(id, (await second.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await second.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);

        Assert.Equal(new JsonChunk("accepted", 1), await ChunkAsync(second, id, 0, "fresh"));
        Assert.Equal("1-0", (await stream.ExpectAsync("restart")).Id);
        Assert.Equal("fresh", await ChunkTextAsync(stream, "1-5"));

        // The late notice of the first attempt's end is stale: the second attempt's text stays.
        await Host.Grains.GetGrain<Coordinator.Grains.Jobs.IJobGrain>(id).RestartedAsync(1);
        Assert.Equal(new JsonChunk("accepted", 2), await ChunkAsync(second, id, 1, " text"));
        Assert.Equal(" text", await ChunkTextAsync(stream, "1-10"));
        await ResultAsync(second, id, "fresh text");
        Assert.Equal("fresh text", (await stream.ExpectAsync("job")).Json.GetProperty("output").GetString());
    }

    [Fact]
    public async Task AJobWhoseClientWentAway_RefusesItsWorkersNextChunk()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        await ChunkAsync(worker, id, 0, "a");
        await using var connection = await Host.OpenConnectionAsync();
        var accountId = await connection.QuerySingleAsync<long>("SELECT account_id FROM jobs WHERE id = @id", new { id });

        await Host.Grains.GetGrain<Coordinator.Grains.Jobs.IJobGrain>(id).AbandonAsync(accountId);

        var refused = await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = 1, text = "b" }), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("invalid_state", refused.GetProperty("error").GetString());
        Assert.Contains("cancelled", refused.GetProperty("message").GetString());
        Assert.Equal("cancelled", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }
}

/// <summary>Streams of jobs that time out or go back to the queue, driven by a fake clock.</summary>
public class StreamDutiesTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private Task<Coordinator.Grains.Duties.DutyReport> RunDutiesAsync() => Host.Get<Coordinator.Grains.Duties.GridDuties>().RunOnceAsync();

    [Fact]
    public async Task AJobThatTimesOut_EndsItsStream_AndItsWorkerHearsAtItsNextChunk()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(new { timeout_seconds = 60 }, start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = 0, text = "slow" }), HttpStatusCode.OK);
        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        await stream.ExpectAsync("chunk");

        fixture.Clock.Advance(TimeSpan.FromSeconds(61));
        await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK);
        await RunDutiesAsync();

        var job = (await stream.ExpectAsync("job")).Json;
        Assert.Equal("cancelled", job.GetProperty("status").GetString());
        Assert.Contains("timed out", job.GetProperty("error").GetString());
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = 1, text = "er" }), HttpStatusCode.UnprocessableEntity);
    }

    [Fact]
    public async Task AJobRequeuedAfterItsWorkerWentMissing_RestartsItsStream_AndTheNextWorkerStreamsItAgain()
    {
        var client = await Host.NewAccountAsync();
        var (dead, id, model) = await client.SubmitAndClaimAsync(start: true);
        await ApiClient.ExpectAsync(await dead.PostAsync($"worker/jobs/{id}/chunks", new { index = 0, text = "lost" }), HttpStatusCode.OK);
        await using var stream = await EventStreamReader.OpenJobAsync(client, id);
        Assert.Equal("0-4", (await stream.ExpectAsync("chunk")).Id);

        fixture.Clock.Advance(TimeSpan.FromSeconds(91));
        await RunDutiesAsync();
        Assert.Equal("pending", (await client.GetJobAsync(id)).GetProperty("status").GetString());
        Assert.Equal("1-0", (await stream.ExpectAsync("restart")).Id);
        // The dead worker's chunks are refused from now on.
        await ApiClient.ExpectAsync(await dead.PostAsync($"worker/jobs/{id}/chunks", new { index = 1, text = "!" }), HttpStatusCode.NotFound);

        var (alive, _) = await client.NewWorkerAsync("alive", model);
        Assert.Equal(id, (await alive.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await alive.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await alive.PostAsync($"worker/jobs/{id}/chunks", new { index = 0, text = "found" }), HttpStatusCode.OK);
        var chunk = await stream.ExpectAsync("chunk");
        Assert.Equal(("found", "1-5"), (chunk.Json.GetProperty("text").GetString(), chunk.Id));
        await ApiClient.ExpectAsync(await alive.PostAsync($"worker/jobs/{id}/result", new { output = "found", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.OK);
        Assert.Equal("completed", (await stream.ExpectAsync("job")).Json.GetProperty("status").GetString());

        // A reader resuming from the first attempt is told to start again.
        await using var late = await EventStreamReader.OpenJobAsync(client, id, "0-4");
        Assert.Equal("1-0", (await late.ExpectAsync("restart")).Id);
        Assert.Equal("found", (await late.ExpectAsync("chunk")).Json.GetProperty("text").GetString());
    }
}

/// <summary>A stream read on one silo while the worker sends its chunks to the other.</summary>
public sealed class CrossSiloStreamTests : IAsyncLifetime
{
    private GridHost _nodeA = null!;
    private GridHost _nodeB = null!;

    public async Task InitializeAsync()
    {
        (_nodeA, _nodeB) = await TwoNodes.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _nodeA.DisposeAsync();
        await _nodeB.DisposeAsync();
    }

    [Fact]
    public async Task AReaderOnOneSilo_GetsTheChunksAWorkerSendsToTheOther_AsTheyCome()
    {
        var clientOnA = await _nodeA.NewAccountAsync();
        var (workerOnA, id, _) = await clientOnA.SubmitAndClaimAsync(start: true);
        var workerOnB = _nodeB.WithKey(workerOnA.Key);
        // Both ways round: the grain lives where it was first called (the reader's silo here), and the worker's calls cross.
        await using var stream = await EventStreamReader.OpenJobAsync(_nodeA.WithKey(clientOnA.Key), id);
        var texts = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var worker = i % 2 == 0 ? workerOnB : workerOnA;
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = i, text = $"t{i} " }), HttpStatusCode.OK);
            texts.Add((await stream.ExpectAsync("chunk")).Json.GetProperty("text").GetString()!);
        }
        Assert.Equal(string.Concat(Enumerable.Range(0, 20).Select(i => $"t{i} ")), string.Concat(texts));

        await using var onB = await EventStreamReader.OpenJobAsync(_nodeB.WithKey(clientOnA.Key), id);
        Assert.Equal(string.Concat(texts), (await onB.ExpectAsync("chunk")).Json.GetProperty("text").GetString());
        await ApiClient.ExpectAsync(await workerOnB.PostAsync($"worker/jobs/{id}/result", new { output = string.Concat(texts), output_tokens = 20, duration_ms = 1 }), HttpStatusCode.OK);
        Assert.Equal("completed", (await stream.ExpectAsync("job")).Json.GetProperty("status").GetString());
        Assert.Equal("completed", (await onB.ExpectAsync("job")).Json.GetProperty("status").GetString());
    }
}

/// <summary>A node that stops ends the streams it serves, rather than holding its shutdown for them.</summary>
public sealed class StoppingNodeStreamTests
{
    [Fact]
    public async Task AStoppingNode_EndsItsStreams_SoTheirClientsCanReconnectElsewhere()
    {
        var host = await GridHost.StartAsync();
        try
        {
            var client = await host.NewAccountAsync();
            var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index = 0, text = "so far" }), HttpStatusCode.OK);
            // A client of its own: the host's goes with it.
            using var http = new HttpClient { BaseAddress = host.BaseAddress };
            var (opened, response) = await EventStreamReader.OpenAsync(http, client.Key, $"jobs/{id}/stream");
            Assert.True(opened is not null, $"no event stream: {(int)response.StatusCode}");
            await using var stream = opened!;
            Assert.Equal("0-6", (await stream.ExpectAsync("chunk")).Id);

            // The reader's next read waits in the job's grain; the node stops meanwhile.
            var stopping = host.DisposeAsync().AsTask();
            Assert.Null(await stream.NextAsync(TimeSpan.FromSeconds(30)));
            await stopping;
        }
        finally
        {
            await host.DisposeAsync();
        }
    }
}
