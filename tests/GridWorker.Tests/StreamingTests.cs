using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace GridWorker.Tests;

/// <summary>
/// The agent streams a job's output to the coordinator while the backend generates it (<c>POST /worker/jobs/{id}/chunks</c>),
/// from Ollama's NDJSON and from OpenAI-compatible server-sent events, and reports the whole output as the result.
/// </summary>
public sealed class StreamingTests
{
    private static readonly string[] Pieces = ["Rows", " wait", " in", " order", ",", " one", " by", " one", "."];

    private static async Task<FakeBackend> StartBackendAsync(string kind, params string[] models) =>
        kind == "ollama" ? await FakeOllama.StartAsync(models) : await FakeOpenAi.StartAsync(models);

    private static object Assignment(long jobId, string model) => new
    {
        job_id = jobId, model, model_match = "exact", prompt = "Write about queues.",
        blobs = Array.Empty<object>(), timeout_seconds = 600, attempt = 1,
    };

    [Theory]
    [InlineData("ollama")]
    [InlineData("openai")]
    public async Task OutputIsSentInOrderedChunksWhileGenerating_AndTheResultIsTheirConcatenation(string kind)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await StartBackendAsync(kind, "llama3:8b");
        var finish = new TaskCompletionSource();
        backend.Reply = _ => new FakeReply { Pieces = Pieces, Hold = finish, PromptTokens = 9, OutputTokens = 77, DurationMs = 1200 };
        coordinator.Enqueue(Assignment(41, "llama3:8b"));
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()));

        // Every piece reaches the coordinator while the backend has not finished (it holds its last message back).
        var streamed = "";
        var indexes = new List<int>();
        while (streamed != string.Concat(Pieces))
        {
            var chunk = await coordinator.NextChunkAsync();
            Assert.Equal(41, chunk.JobId);
            indexes.Add(chunk.Index);
            streamed += chunk.Text;
        }
        Assert.Equal(Enumerable.Range(0, indexes.Count), indexes);
        finish.SetResult();

        var report = await coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        Assert.Equal(string.Concat(Pieces), report.Body.GetProperty("output").GetString());
        Assert.Equal(coordinator.StreamedText(41), report.Body.GetProperty("output").GetString());
        Assert.Equal(9, report.Body.GetProperty("input_tokens").GetInt32());
        Assert.Equal(77, report.Body.GetProperty("output_tokens").GetInt32()); // OpenAI: from the usage chunk after the text
        Assert.Equal(1, coordinator.MaxChunksInFlight);
        Assert.Empty(coordinator.ChunksSoFar());
    }

    [Theory]
    [InlineData("ollama")]
    [InlineData("openai")]
    public async Task BackendThatDoesNotStream_StillServesTheJob_WithoutChunks(string kind)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await StartBackendAsync(kind, "llama3:8b");
        backend.Reply = _ => new FakeReply { Pieces = Pieces, Streams = false, PromptTokens = 9, OutputTokens = 77 };
        coordinator.Enqueue(Assignment(42, "llama3:8b"));
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()));

        var report = await coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        Assert.Equal(string.Concat(Pieces), report.Body.GetProperty("output").GetString());
        Assert.Equal(9, report.Body.GetProperty("input_tokens").GetInt32());
        Assert.Equal(77, report.Body.GetProperty("output_tokens").GetInt32());
        Assert.True((await backend.NextRequestAsync()).GetProperty("stream").GetBoolean());
        Assert.Empty(coordinator.ChunksSoFar());
    }

    [Fact]
    public async Task NoStream_SendsTheOutputWithTheResultOnly()
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await FakeOllama.StartAsync("llama3:8b");
        backend.Reply = _ => new FakeReply { Pieces = Pieces };
        coordinator.Enqueue(Assignment(43, "llama3:8b"));
        var settings = AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()) with { StreamOutput = false };
        await using var run = await AgentRun.StartRegisteredAsync(settings);

        var report = await coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        Assert.Equal(string.Concat(Pieces), report.Body.GetProperty("output").GetString());
        Assert.Empty(coordinator.ChunksSoFar());
    }

    public static TheoryData<string, int, string> JobEndedAnswers => new()
    {
        { "ollama", 422, """{"error":"invalid_state","message":"job 44 is cancelled: stop working on it"}""" },
        { "openai", 422, """{"error":"invalid_state","message":"job 44 is timed_out: stop working on it"}""" },
        { "ollama", 404, """{"error":"not_found","message":"job 44 is not held by this worker"}""" },
    };

    [Theory]
    [MemberData(nameof(JobEndedAnswers))]
    public async Task ChunkAnswerThatTheJobEnded_CancelsTheBackendRequest_AndNoResultIsSent(string kind, int status, string body)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await StartBackendAsync(kind, "llama3:8b", "mistral:7b");
        var never = new TaskCompletionSource();
        // The ended job's generation would never finish on its own; the next job's does.
        backend.Reply = model => new FakeReply { Pieces = Pieces, Hold = model == "llama3:8b" ? never : null };
        coordinator.AnswerChunk = chunk => Task.FromResult(chunk.JobId == 44 ? Results.Text(body, "application/json", statusCode: status) : null);
        coordinator.Enqueue(Assignment(44, "llama3:8b"));
        coordinator.Enqueue(Assignment(45, "mistral:7b"));
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()));

        await backend.ClientWentAway.WaitAsync(TimeSpan.FromSeconds(20));
        // One job at a time: job 45 is taken only once job 44 is done with, so a result or failure of 44 would come first.
        var report = await coordinator.NextReportAsync();
        Assert.True(report is { Kind: "result", JobId: 45 }, $"{report.Kind} {report.JobId} {report.Body}\n{run.Output}");
        Assert.Equal(string.Concat(Pieces), report.Body.GetProperty("output").GetString());
        Assert.Single(coordinator.ChunksSoFar(), c => c.JobId == 44);
        Assert.Contains(run.Output.Lines, l => l.Contains("job 44 is no longer ours", StringComparison.Ordinal) && l.Contains("no result sent", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task HeartbeatThatSaysTheJobWasCancelled_StopsItsGeneration_AndNoResultIsSent(bool stream)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await FakeOllama.StartAsync("llama3:8b", "mistral:7b");
        var never = new TaskCompletionSource();
        backend.Reply = model => new FakeReply { Pieces = Pieces, Hold = model == "llama3:8b" ? never : null };
        coordinator.CancelledJobs.Add(47);
        coordinator.Enqueue(Assignment(47, "llama3:8b"));
        coordinator.Enqueue(Assignment(48, "mistral:7b"));
        var clock = new ManualTimeProvider();
        var settings = AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()) with { StreamOutput = stream };
        await using var run = await AgentRun.StartRegisteredAsync(settings, clock);

        // The heartbeat goes out while job 47 runs; its answer names the job.
        await backend.NextRequestAsync();
        clock.Advance(settings.HeartbeatInterval);
        await backend.ClientWentAway.WaitAsync(TimeSpan.FromSeconds(20));

        // One job at a time: a result or failure of 47 would come before 48's.
        var report = await coordinator.NextReportAsync();
        Assert.True(report is { Kind: "result", JobId: 48 }, $"{report.Kind} {report.JobId} {report.Body}\n{run.Output}");
        Assert.Contains(run.Output.Lines, l => l.Contains("job 47 is no longer ours (the coordinator cancelled it)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("ollama", 503)]
    [InlineData("openai", 503)]
    [InlineData("ollama", 404)] // a coordinator without the chunks endpoint answers a bare 404
    public async Task ChunkThatCannotBeDelivered_StopsStreaming_AndTheResultCarriesTheWholeOutput(string kind, int status)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await StartBackendAsync(kind, "llama3:8b");
        backend.Reply = _ => new FakeReply { Pieces = Pieces, PromptTokens = 3, OutputTokens = 9 };
        coordinator.AnswerChunk = _ => Task.FromResult<IResult?>(Results.StatusCode(status));
        coordinator.Enqueue(Assignment(46, "llama3:8b"));
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()));

        var report = await coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        Assert.Equal(string.Concat(Pieces), report.Body.GetProperty("output").GetString());
        Assert.Equal(9, report.Body.GetProperty("output_tokens").GetInt32());
        Assert.Equal(0, Assert.Single(coordinator.ChunksSoFar()).Index);
        Assert.Contains(run.Output.Lines, l => l.Contains("job 46: chunk 0 could not be sent", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("ollama")]
    [InlineData("openai")]
    public async Task ChatForm_IsStreamedToo(string kind)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var backend = await StartBackendAsync(kind, "llama3:8b");
        backend.Reply = _ => new FakeReply { Pieces = Pieces };
        var messages = new object[] { new { role = "system", content = "Be brief." }, new { role = "user", content = "Queues?" } };
        coordinator.Enqueue(new
        {
            job_id = 47, model = "llama3:8b", model_match = "exact", prompt = "system: Be brief.\nuser: Queues?",
            blobs = Array.Empty<object>(), timeout_seconds = 600, attempt = 1, @params = new { messages },
        });
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()));

        var report = await coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        Assert.Equal(coordinator.StreamedText(47), report.Body.GetProperty("output").GetString());
        Assert.Equal(string.Concat(Pieces), report.Body.GetProperty("output").GetString());
        var sent = (await backend.NextRequestAsync()).GetProperty("messages");
        Assert.Equal(JsonSerializer.Serialize(messages), JsonSerializer.Serialize(sent.EnumerateArray()
            .Select(m => new { role = m.GetProperty("role").GetString(), content = m.GetProperty("content").GetString() })));
    }
}
