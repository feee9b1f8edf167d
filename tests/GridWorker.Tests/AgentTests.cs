using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;
using Npgsql;

namespace GridWorker.Tests;

/// <summary>The real agent against a real coordinator node (real Kestrel, real PostgreSQL) and a fake backend.</summary>
public class AgentTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private async Task<(ApiClient Account, AgentRun Run)> StartAsync(FakeBackend backend, Func<WorkerSettings, WorkerSettings>? adjust = null)
    {
        var account = await Host.NewAccountOnPlanAsync(null, null);
        var settings = AgentRun.SettingsFor(Host.BaseAddress, await account.NewKeyAsync(), backend.Info());
        return (account, await AgentRun.StartRegisteredAsync(adjust?.Invoke(settings) ?? settings));
    }

    [Fact]
    public async Task Registers_WithVersionPlatformAndTheBackendsModels()
    {
        var model = ApiClient.Unique("reg") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model, "other:1b");
        var (account, run) = await StartAsync(ollama, s => s with { ServesFamily = [model] });
        await using var stopAgent = run;

        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT name, agent_version, platform FROM workers WHERE id = @id", connection);
        command.Parameters.AddWithValue("id", run.Agent.WorkerId);
        await using (var reader = await command.ExecuteReaderAsync())
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal(run.Settings.Name, reader.GetString(0));
            Assert.Equal(WorkerAgent.AgentVersion, reader.GetString(1));
            Assert.Equal(WorkerAgent.Platform, reader.GetString(2));
        }
        Assert.Matches(@"^\d+\.\d+\.\d+", WorkerAgent.AgentVersion);
        Assert.Matches("^(linux|darwin|windows)/", WorkerAgent.Platform);
        Assert.Equal([new WorkerModelEntry("other:1b", false), new WorkerModelEntry(model, true)], run.Agent.AdvertisedModels);
        Assert.Contains(run.Output.Lines, l => l.Contains($"registered as worker {run.Agent.WorkerId}", StringComparison.Ordinal) && l.Contains(model, StringComparison.Ordinal));

        // /models lists what the worker advertised.
        var models = await ApiClient.ExpectAsync(await account.GetAsync("models"), HttpStatusCode.OK);
        Assert.Contains(model, models.GetRawText(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServesJobs_OnOllama_WithTokenCountsDurationAndCredits()
    {
        var model = ApiClient.Unique("serve") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        ollama.Reply = _ => new FakeReply { Pieces = ["Rows wait", " in order"], PromptTokens = 17, OutputTokens = 1234, DurationMs = 2468 };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var first = await account.SubmitAsync(new { model, model_match = "exact", prompt = "Write a haiku about queues." });
        var second = await account.SubmitAsync(new { model, model_match = "exact", prompt = "Another one." });
        foreach (var id in new[] { first, second })
        {
            var job = await account.WaitForJobAsync(id, "completed", "failed");
            Assert.Equal("completed", job.GetProperty("status").GetString());
            Assert.Equal("Rows wait in order", job.GetProperty("output").GetString());
            Assert.Equal(17, job.GetProperty("input_tokens").GetInt32());
            Assert.Equal(1234, job.GetProperty("output_tokens").GetInt32());
            Assert.Equal(2468, job.GetProperty("duration_ms").GetInt32());
            Assert.Equal(model, job.GetProperty("model_used").GetString());
        }
        Assert.Equal("Write a haiku about queues.", (await ollama.NextRequestAsync()).GetProperty("messages")[0].GetProperty("content").GetString());

        // 1234 output tokens earn 1.234 credits a job.
        var worker = Host.WithKey(run.Settings.ApiKey);
        var credits = await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Equal(2.468, credits.GetProperty("balance").GetDouble(), 6);
        await Eventually.TrueAsync(() => run.Output.Lines.Count(l => l.Contains("done:", StringComparison.Ordinal)) == 2, "both jobs were reported");
        var line = run.Output.Lines.Single(l => l.Contains($"job {first} done:", StringComparison.Ordinal));
        Assert.Contains($"{model}, 17 in / 1234 out tokens, 500.0 tokens/s, +1.2340 credits (2.5 s)", line, StringComparison.Ordinal);

        // grid-worker status shows the same balance.
        using var status = new StringWriter();
        Assert.Equal(0, await StatusCommand.RunAsync(run.Settings, worker.Http, status, default));
        Assert.Contains("balance:      2.4680 credits", status.ToString(), StringComparison.Ordinal);
        Assert.Contains("total earned: 2.4680 credits", status.ToString(), StringComparison.Ordinal);
        Assert.Contains("+1.2340  1234 tokens", status.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServesJobs_OnAnOpenAiCompatibleServer_WithItsUsage()
    {
        var model = ApiClient.Unique("oai") + ":7b";
        await using var openAi = await FakeOpenAi.StartAsync(model);
        openAi.Reply = _ => new FakeReply { Pieces = ["One", " two"], PromptTokens = 5, OutputTokens = 2000 };
        var (account, run) = await StartAsync(openAi);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "Count", @params = new { max_tokens = 100, temperature = 0.3, top_p = 0.8, stop = new[] { "three" }, seed = 9 } });
        var job = await account.WaitForJobAsync(id, "completed", "failed");
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal("One two", job.GetProperty("output").GetString());
        Assert.Equal(5, job.GetProperty("input_tokens").GetInt32());
        Assert.Equal(2000, job.GetProperty("output_tokens").GetInt32());
        Assert.Equal(model, job.GetProperty("model_used").GetString());

        // The job's params reached the backend in its own vocabulary.
        var request = await openAi.NextRequestAsync();
        Assert.Equal(100, request.GetProperty("max_tokens").GetInt32());
        Assert.Equal(0.3, request.GetProperty("temperature").GetDouble());
        Assert.Equal(0.8, request.GetProperty("top_p").GetDouble());
        Assert.Equal("three", request.GetProperty("stop")[0].GetString());
        Assert.Equal(9, request.GetProperty("seed").GetInt64());
        var credits = await ApiClient.ExpectAsync(await Host.WithKey(run.Settings.ApiKey).GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Equal(2.0, credits.GetProperty("balance").GetDouble(), 6);
    }

    [Fact]
    public async Task Output_ReachesAClientReadingTheJobsStream_BeforeTheJobEnds()
    {
        var model = ApiClient.Unique("stream") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var finish = new TaskCompletionSource();
        ollama.Reply = _ => new FakeReply { Pieces = ["Rows", " wait", " in order"], Hold = finish, OutputTokens = 3 };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "Write about queues." });
        await using var stream = await EventStreamReader.OpenJobAsync(account, id);
        var text = "";
        while (text != "Rows wait in order") text += (await stream.ExpectAsync("chunk")).Json.GetProperty("text").GetString();
        finish.SetResult(); // every piece was read by the client while the backend still held its last message back

        var job = (await stream.ExpectAsync("job")).Json;
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal(text, job.GetProperty("output").GetString());
        Assert.Null(await stream.NextAsync());
    }

    [Fact]
    public async Task JobParams_BecomeOllamaOptions()
    {
        var model = ApiClient.Unique("opt") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p", @params = new { max_tokens = 256, temperature = 0.7, top_p = 0.95, stop = new[] { "\n" }, seed = 1234 } });
        await account.WaitForJobAsync(id, "completed");
        var options = (await ollama.NextRequestAsync()).GetProperty("options");
        Assert.Equal(256, options.GetProperty("num_predict").GetInt32());
        Assert.Equal(0.7, options.GetProperty("temperature").GetDouble());
        Assert.Equal(0.95, options.GetProperty("top_p").GetDouble());
        Assert.Equal("\n", options.GetProperty("stop")[0].GetString());
        Assert.Equal(1234, options.GetProperty("seed").GetInt64());
    }

    [Fact]
    public async Task ImageAttachment_FromTheBlobStore_ReachesOllamaAsBase64()
    {
        var model = ApiClient.Unique("img") + ":7b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        // A client uploads an image the way the spec says: create, PUT to the presigned URL, confirm.
        var image = System.Security.Cryptography.RandomNumberGenerator.GetBytes(3000);
        var created = await ApiClient.ExpectAsync(await account.PostAsync("blobs", new { blob_type = "image" }), HttpStatusCode.Created);
        using (var upload = new ByteArrayContent(image))
        {
            upload.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("image/png");
            using var direct = new HttpClient();
            Assert.True((await direct.PutAsync(created.GetProperty("upload_url").GetString(), upload)).IsSuccessStatusCode);
        }
        var blobId = created.GetProperty("blob_id").GetInt64();
        await ApiClient.ExpectAsync(await account.PostAsync($"blobs/{blobId}/confirm"), HttpStatusCode.OK);

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "Describe the picture", blob_ids = new[] { blobId } });
        Assert.Equal("completed", (await account.WaitForJobAsync(id, "completed", "failed")).GetProperty("status").GetString());
        var message = (await ollama.NextRequestAsync()).GetProperty("messages")[0];
        Assert.Equal([Convert.ToBase64String(image)], message.GetProperty("images").EnumerateArray().Select(i => i.GetString()));
        Assert.Equal("Describe the picture", message.GetProperty("content").GetString());
    }

    [Fact]
    public async Task FamilyJob_RunsOnTheLocalModelOfThatFamily()
    {
        var family = ApiClient.Unique("fam");
        await using var ollama = await FakeOllama.StartAsync(family + ":8b");
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model = family + ":70b", model_match = "family", prompt = "p" });
        var job = await account.WaitForJobAsync(id, "completed", "failed");
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal(family + ":8b", job.GetProperty("model_used").GetString());
        Assert.Equal(family + ":8b", (await ollama.NextRequestAsync()).GetProperty("model").GetString());
    }

    [Fact]
    public async Task CatchAll_TakesAnyModelJobs_AndRunsThemOnItsOwnModel()
    {
        var local = ApiClient.Unique("ca") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(local);
        var (account, run) = await StartAsync(ollama, s => s with { CatchAll = true });
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model = ApiClient.Unique("elsewhere") + ":1b", model_match = "any", prompt = "p" });
        var job = await account.WaitForJobAsync(id, "completed", "failed");
        Assert.Equal("completed", job.GetProperty("status").GetString());
        Assert.Equal(local, job.GetProperty("model_used").GetString());
    }

    [Theory]
    [InlineData("status", "Ollama answered 500 for {model}: model \"{model}\" not found, try pulling it first")]
    [InlineData("stream", "Ollama failed while generating with {model}: llama runner process has terminated")]
    [InlineData("empty", "Ollama returned an empty response for {model}")]
    public async Task BackendFailure_BecomesAFailedJobWithTheReason(string kind, string expected)
    {
        var model = ApiClient.Unique("fail") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        ollama.Reply = _ => kind switch
        {
            "status" => new FakeReply { ErrorStatus = 500 },
            "stream" => new FakeReply { StreamError = "llama runner process has terminated" },
            _ => new FakeReply { Pieces = [], OutputTokens = 0 },
        };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var job = await account.WaitForJobAsync(id, "completed", "failed");
        Assert.Equal("failed", job.GetProperty("status").GetString());
        Assert.Equal(expected.Replace("{model}", model, StringComparison.Ordinal), job.GetProperty("error").GetString());

        // The worker carries on with the next job.
        ollama.Reply = _ => new FakeReply();
        var next = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal("completed", (await account.WaitForJobAsync(next, "completed", "failed")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task BackendGoneAway_FailsTheJob_AndTakesNoMoreUntilItIsBack()
    {
        var model = ApiClient.Unique("down") + ":8b";
        var ollama = await FakeOllama.StartAsync(model);
        var port = ollama.BaseUrl.Port;
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;
        await ollama.DisposeAsync();

        var lost = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var failed = await account.WaitForJobAsync(lost, "failed", "completed");
        Assert.StartsWith($"Ollama is not reachable at http://127.0.0.1:{port}. Start it with `ollama serve`, or set --backend-url.",
            failed.GetProperty("error").GetString(), StringComparison.Ordinal);
        await Eventually.TrueAsync(() => run.Output.Lines.Any(l => l.Contains("Taking no jobs until it answers.", StringComparison.Ordinal)), "the worker paused");

        // While Ollama is down the worker does not poll, so the next job waits for a worker that can run it.
        var waiting = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal("pending", (await account.GetJobAsync(waiting)).GetProperty("status").GetString());
        await using var back = new FakeOllama(model);
        await back.ListenAsync(port);
        Assert.Equal("completed", (await account.WaitForJobAsync(waiting, "completed", "failed")).GetProperty("status").GetString());
        Assert.Contains(run.Output.Lines, l => l.Contains("Ollama answers again", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Startup_WithoutBackend_ExitsWithAClearError()
    {
        var account = await Host.NewAccountAsync();
        var settings = AgentRun.SettingsFor(Host.BaseAddress, await account.NewKeyAsync(), new FakeBackendInfo(BackendKind.Ollama, new Uri("http://127.0.0.1:9")));
        await using var run = AgentRun.Start(settings);
        Assert.Equal(1, await run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.EndsWith("error: Ollama is not reachable at http://127.0.0.1:9. Start it with `ollama serve`, or set --backend-url.", Assert.Single(run.Output.Lines), StringComparison.Ordinal);
        Assert.Equal(0, run.Agent.WorkerId);
    }

    [Fact]
    public async Task Startup_WithAWrongKey_ExitsWithAClearError()
    {
        await using var ollama = await FakeOllama.StartAsync("llama3:8b");
        var settings = AgentRun.SettingsFor(Host.BaseAddress, "vk_live_not_a_real_key", ollama.Info());
        await using var run = AgentRun.Start(settings);
        Assert.Equal(1, await run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("could not register with the coordinator: the coordinator answered 401", run.Output.ToString(), StringComparison.Ordinal);
        Assert.Contains("(check --api-key)", run.Output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Startup_WithAModelTheBackendLacks_SaysHowToPullIt()
    {
        await using var ollama = await FakeOllama.StartAsync("llama3:8b");
        var account = await Host.NewAccountAsync();
        var settings = AgentRun.SettingsFor(Host.BaseAddress, await account.NewKeyAsync(), ollama.Info());
        await using var run = AgentRun.Start(settings with { Models = ["mistral:7b"] });
        Assert.Equal(1, await run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"mistral:7b is not available on Ollama at {ollama.BaseUrl.ToString().TrimEnd('/')} (it has: llama3:8b). Pull it with `ollama pull mistral:7b`",
            run.Output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_WithAKeyThatIsNoWorkers_SaysWhatToDo()
    {
        var account = await Host.NewAccountAsync();
        var settings = AgentRun.SettingsFor(Host.BaseAddress, await account.NewKeyAsync(), new FakeBackendInfo(BackendKind.Ollama, new Uri("http://127.0.0.1:9")));
        using var output = new StringWriter();
        Assert.Equal(1, await StatusCommand.RunAsync(settings, Host.Http, output, default));
        Assert.Contains("the coordinator answered 401", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("Is this key registered as a worker? Start grid-worker with it once.", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Concurrency_RunsSeveralJobsAtOnce()
    {
        var model = ApiClient.Unique("conc") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ollama.Reply = _ => new FakeReply { Hold = hold };
        var (account, run) = await StartAsync(ollama, s => s with { Concurrency = 2 });
        await using var stopAgent = run;

        var ids = new[]
        {
            await account.SubmitAsync(new { model, model_match = "exact", prompt = "a" }),
            await account.SubmitAsync(new { model, model_match = "exact", prompt = "b" }),
        };
        await ollama.NextRequestAsync();
        await ollama.NextRequestAsync();
        Assert.Equal(2, run.Agent.RunningJobs);
        foreach (var id in ids) Assert.Equal("running", (await account.GetJobAsync(id)).GetProperty("status").GetString());
        hold.SetResult();
        foreach (var id in ids) await account.WaitForJobAsync(id, "completed");
    }

    [Fact]
    public async Task JsonOutput_IsOneObjectPerLine()
    {
        var model = ApiClient.Unique("json") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var (account, run) = await StartAsync(ollama, s => s with { JsonOutput = true });
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        await account.WaitForJobAsync(id, "completed");
        await Eventually.TrueAsync(() => run.Output.Lines.Any(l => l.Contains("job_completed", StringComparison.Ordinal)), "the job was logged");
        var events = run.Output.Lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.All(events, e => Assert.True(e.TryGetProperty("time", out _) && e.TryGetProperty("level", out _) && e.TryGetProperty("message", out _)));
        Assert.Equal(run.Agent.WorkerId, events.Single(e => e.GetProperty("event").GetString() == "registered").GetProperty("worker_id").GetInt64());
        var completed = events.Single(e => e.GetProperty("event").GetString() == "job_completed");
        Assert.Equal(id, completed.GetProperty("job_id").GetInt64());
        Assert.Equal(model, completed.GetProperty("model").GetString());
        Assert.Equal(12, completed.GetProperty("input_tokens").GetInt32());
        Assert.Equal(345, completed.GetProperty("output_tokens").GetInt32());
        Assert.Equal(0.345, completed.GetProperty("credits_earned").GetDouble());
        Assert.Contains("+0.3450 credits", run.Output.Lines.Single(l => l.Contains("job_completed", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Equal(230.0, completed.GetProperty("tokens_per_second").GetDouble());
        Assert.True(completed.GetProperty("coordinator_ms").GetDouble() >= 0);
    }
}
