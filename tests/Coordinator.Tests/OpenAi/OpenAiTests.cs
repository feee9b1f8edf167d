using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.OpenAi;

/// <summary>What the OpenAI-compatible front door tests share: a client of <c>/v1</c> and a worker played over HTTP.</summary>
internal static class OpenAi
{
    /// <summary>A client of <c>http://host/v1/</c> holding <paramref name="key"/>.</summary>
    public static ApiClient Client(GridHost host, string? key) => new(Clients.GetOrAdd(new Uri(host.BaseAddress, "/v1/"), NewClient), key);

    // One per host for the test run, as GridHost keeps one for /api/v1.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Uri, HttpClient> Clients = new();

    private static HttpClient NewClient(Uri baseAddress) => new() { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(100) };

    public static object Chat(string model, string content = "Say hello", bool stream = false, object? extra = null)
    {
        var body = new Dictionary<string, object?> { ["model"] = model, ["messages"] = new[] { new { role = "user", content } }, ["stream"] = stream };
        foreach (var property in extra?.GetType().GetProperties() ?? []) body[property.Name] = property.GetValue(extra);
        return body;
    }

    /// <summary>Posts to a streaming completion; the answer must be an event stream.</summary>
    public static async Task<EventStreamReader> StreamAsync(ApiClient client, string path, object body, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", client.Key);
        var (stream, response) = await EventStreamReader.SendAsync(client.Http, request, cancellationToken);
        if (stream is null) Assert.Fail($"no event stream: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
        return stream!;
    }

    /// <summary>The worker takes the next job of its model and starts it; answers the assignment.</summary>
    public static async Task<JsonElement> TakeAsync(ApiClient worker, string model)
    {
        var assignment = (await worker.PollAsync($"models[]={Uri.EscapeDataString(model)}"))!.Value;
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{assignment.GetProperty("job_id").GetInt64()}/start"), HttpStatusCode.OK);
        return assignment;
    }

    public static async Task ChunkAsync(ApiClient worker, long id, int index, string text, HttpStatusCode expected = HttpStatusCode.OK) =>
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/chunks", new { index, text }), expected);

    public static async Task ResultAsync(ApiClient worker, long id, string output, int inputTokens = 7, int outputTokens = 3) =>
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output, input_tokens = inputTokens, output_tokens = outputTokens, duration_ms = 10, model_used = (string?)null }), HttpStatusCode.OK);

    /// <summary>An OpenAI error answer: its status, type and code.</summary>
    public static async Task<JsonElement> ErrorAsync(HttpResponseMessage response, HttpStatusCode status, string type, string? code = null)
    {
        var error = (await ApiClient.ExpectAsync(response, status)).GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.True(error.TryGetProperty("param", out _) && error.TryGetProperty("code", out _), "param and code are always there");
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());
        return error;
    }
}

/// <summary><c>/v1/chat/completions</c>, <c>/v1/completions</c> and <c>/v1/models</c> over real HTTP, with a worker played over HTTP.</summary>
public class OpenAiTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AChatCompletion_IsAGridJob_WhoseMessagesReachTheWorker_AndAnswersWithUsage()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var v1 = OpenAi.Client(Host, client.Key);

        var answer = v1.PostAsync("chat/completions", new
        {
            model,
            messages = new object[]
            {
                new { role = "system", content = "Be brief." },
                new { role = "user", content = new object[] { new { type = "text", text = "Hello" }, new { type = "text", text = "there" } } },
            },
            max_tokens = 50, temperature = 0.5, top_p = 0.9, stop = "\n\n", seed = 42, user = "ignored", logit_bias = new { },
        });
        var assignment = await OpenAi.TakeAsync(worker, model);
        var id = assignment.GetProperty("job_id").GetInt64();
        Assert.Equal("system: Be brief.\nuser: Hello\nthere", assignment.GetProperty("prompt").GetString());
        var parameters = assignment.GetProperty("params");
        Assert.Equal("""[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello\nthere"}]""", parameters.GetProperty("messages").GetRawText());
        Assert.Equal((50, 0.5, 0.9, "\n\n", 42), (parameters.GetProperty("max_tokens").GetInt32(), parameters.GetProperty("temperature").GetDouble(),
            parameters.GetProperty("top_p").GetDouble(), parameters.GetProperty("stop")[0].GetString(), parameters.GetProperty("seed").GetInt32()));
        await OpenAi.ResultAsync(worker, id, "Hi!", inputTokens: 12, outputTokens: 2);

        var response = await answer;
        Assert.Equal(id.ToString(System.Globalization.CultureInfo.InvariantCulture), response.Headers.GetValues("X-Grid-Job-Id").Single());
        var completion = await ApiClient.ExpectAsync(response, HttpStatusCode.OK);
        Assert.Equal(($"chatcmpl-{id}", "chat.completion", model), (completion.GetProperty("id").GetString(), completion.GetProperty("object").GetString(), completion.GetProperty("model").GetString()));
        var choice = completion.GetProperty("choices")[0];
        Assert.Equal((0, "assistant", "Hi!", "stop"), (choice.GetProperty("index").GetInt32(), choice.GetProperty("message").GetProperty("role").GetString(),
            choice.GetProperty("message").GetProperty("content").GetString(), choice.GetProperty("finish_reason").GetString()));
        var usage = completion.GetProperty("usage");
        Assert.Equal((12, 2, 14), (usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32()));

        // A grid job like any other: listed, counted, and credited to its worker.
        var listed = await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK);
        var job = listed.EnumerateArray().Single(j => j.GetProperty("job_id").GetInt64() == id);
        Assert.Equal(("completed", "exact", "Hi!"), (job.GetProperty("status").GetString(), job.GetProperty("model_match").GetString(), job.GetProperty("output").GetString()));
        var used = await ApiClient.ExpectAsync(await client.GetAsync("usage"), HttpStatusCode.OK);
        Assert.Equal(14, used.GetProperty("tokens_used").GetInt64());
        var credits = await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Single(credits.GetProperty("history").EnumerateArray());
        Assert.True(credits.GetProperty("total_earned").GetDecimal() > 0);
    }

    [Fact]
    public async Task AStreamedChatCompletion_SendsTheRole_ThenEachChunkAsTheWorkerSendsIt_ThenTheFinish_TheUsage_AndDone()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var v1 = OpenAi.Client(Host, client.Key);

        await using var stream = await OpenAi.StreamAsync(v1, "chat/completions",
            OpenAi.Chat(model, stream: true, extra: new { stream_options = new { include_usage = true }, max_completion_tokens = 3 }));
        var first = (await stream.NextAsync())!.Json;
        Assert.Equal("chat.completion.chunk", first.GetProperty("object").GetString());
        Assert.Equal("assistant", first.GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
        Assert.Equal($"chatcmpl-{id}", first.GetProperty("id").GetString());

        foreach (var (text, index) in new[] { "Hel", "lo, ", "wörld 🌍" }.Select((t, i) => (t, i)))
        {
            await OpenAi.ChunkAsync(worker, id, index, text);
            var chunk = (await stream.NextAsync())!.Json;
            Assert.Equal(text, chunk.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
            Assert.Equal(JsonValueKind.Null, chunk.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
        }
        // The result says more than the chunks did: the rest is sent before the end.
        await OpenAi.ResultAsync(worker, id, "Hello, wörld 🌍!", inputTokens: 5, outputTokens: 3);
        Assert.Equal("!", (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
        var last = (await stream.NextAsync())!.Json.GetProperty("choices")[0];
        Assert.Equal("length", last.GetProperty("finish_reason").GetString()); // 3 tokens, as many as allowed
        var usage = (await stream.NextAsync())!.Json;
        Assert.Empty(usage.GetProperty("choices").EnumerateArray());
        Assert.Equal(8, usage.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        Assert.Equal("[DONE]", (await stream.NextAsync())!.Data);
        Assert.Null(await stream.NextAsync());
    }

    [Fact]
    public async Task AStreamWhoseJobFails_OrWhoseOutputDiffersFromTheTextSent_EndsWithAnErrorEvent_AndNoDone()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var v1 = OpenAi.Client(Host, client.Key);

        // The worker fails the job after its first chunk.
        await using (var stream = await OpenAi.StreamAsync(v1, "chat/completions", OpenAi.Chat(model, stream: true)))
        {
            await stream.NextAsync(); // the role
            var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
            await OpenAi.ChunkAsync(worker, id, 0, "Partial");
            Assert.Equal("Partial", (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/fail", new { error = "backend crashed", retryable = false }), HttpStatusCode.OK);
            var error = (await stream.NextAsync())!.Json.GetProperty("error");
            Assert.Equal(("server_error", "job_failed"), (error.GetProperty("type").GetString(), error.GetProperty("code").GetString()));
            Assert.Contains("backend crashed", error.GetProperty("message").GetString());
            Assert.Null(await stream.NextAsync());
        }

        // The worker's result does not begin with what it streamed.
        await using (var stream = await OpenAi.StreamAsync(v1, "chat/completions", OpenAi.Chat(model, stream: true)))
        {
            await stream.NextAsync();
            var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
            await OpenAi.ChunkAsync(worker, id, 0, "Draft");
            await stream.NextAsync();
            await OpenAi.ResultAsync(worker, id, "Final answer");
            var error = (await stream.NextAsync())!.Json.GetProperty("error");
            Assert.Equal("output_mismatch", error.GetProperty("code").GetString());
            Assert.Null(await stream.NextAsync());
            // The job stands, with the worker's output.
            var job = await client.GetJobAsync(id);
            Assert.Equal(("completed", "Final answer"), (job.GetProperty("status").GetString(), job.GetProperty("output").GetString()));
        }

        // Not streamed: a failed job is a 502 with the worker's reason.
        var answer = v1.PostAsync("chat/completions", OpenAi.Chat(model));
        var failed = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{failed}/fail", new { error = "out of memory", retryable = false }), HttpStatusCode.OK);
        var body = await OpenAi.ErrorAsync(await answer, HttpStatusCode.BadGateway, "server_error", "job_failed");
        Assert.Contains("out of memory", body.GetProperty("message").GetString());
    }

    [Fact]
    public async Task TheLegacyCompletion_TakesAPrompt_AndAnswersTextCompletions_WholeOrStreamed()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var v1 = OpenAi.Client(Host, client.Key);

        var answer = v1.PostAsync("completions", new { model, prompt = "Once upon", max_tokens = 10 });
        var assignment = await OpenAi.TakeAsync(worker, model);
        Assert.Equal("Once upon", assignment.GetProperty("prompt").GetString());
        Assert.False(assignment.GetProperty("params").TryGetProperty("messages", out _));
        await OpenAi.ResultAsync(worker, assignment.GetProperty("job_id").GetInt64(), " a time");
        var completion = await ApiClient.ExpectAsync(await answer, HttpStatusCode.OK);
        Assert.Equal("text_completion", completion.GetProperty("object").GetString());
        Assert.Equal((" a time", "stop"), (completion.GetProperty("choices")[0].GetProperty("text").GetString(), completion.GetProperty("choices")[0].GetProperty("finish_reason").GetString()));
        Assert.Equal(10, completion.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        await using var stream = await OpenAi.StreamAsync(v1, "completions", new { model, prompt = new[] { "Once" }, stream = true });
        var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
        await OpenAi.ChunkAsync(worker, id, 0, " upon");
        var chunk = (await stream.NextAsync())!.Json;
        Assert.Equal(("text_completion", " upon"), (chunk.GetProperty("object").GetString(), chunk.GetProperty("choices")[0].GetProperty("text").GetString()));
        await OpenAi.ResultAsync(worker, id, " upon");
        Assert.Equal("stop", (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal("[DONE]", (await stream.NextAsync())!.Data);
    }

    [Fact]
    public async Task AModelWithoutATag_IsAFamilyJob_AndAFullNameIsExact()
    {
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique();
        var created = await ApiClient.ExpectAsync(await client.PostAsync("keys", new { name = "fam" }), HttpStatusCode.Created);
        var worker = Host.WithKey(created.GetProperty("key").GetString()!);
        await ApiClient.ExpectAsync(await worker.PostAsync("worker/register", new
        {
            name = "fam", models = new[] { new { name = family + ":8b", serves_family = true } },
        }), HttpStatusCode.Created);
        var v1 = OpenAi.Client(Host, client.Key);

        var answer = v1.PostAsync("chat/completions", OpenAi.Chat(family));
        var assignment = (await worker.PollAsync())!.Value;
        Assert.Equal(("family", family), (assignment.GetProperty("model_match").GetString(), assignment.GetProperty("model_family").GetString()));
        var id = assignment.GetProperty("job_id").GetInt64();
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "ok", output_tokens = 1, duration_ms = 1, model_used = family + ":8b" }), HttpStatusCode.OK);
        // The answer names the model that ran it.
        Assert.Equal(family + ":8b", (await ApiClient.ExpectAsync(await answer, HttpStatusCode.OK)).GetProperty("model").GetString());

        // Another tag of the family is an exact job for a model the grid never saw.
        await OpenAi.ErrorAsync(await v1.PostAsync("chat/completions", OpenAi.Chat(family + ":70b")), HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");
    }

    [Fact]
    public async Task ModelsList_HasTheModelsOfOnlineWorkers_InOpenAisShape()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        await client.NewWorkerAsync("w", model);
        var list = await ApiClient.ExpectAsync(await OpenAi.Client(Host, client.Key).GetAsync("models"), HttpStatusCode.OK);
        Assert.Equal("list", list.GetProperty("object").GetString());
        var entry = list.GetProperty("data").EnumerateArray().Single(m => m.GetProperty("id").GetString() == model);
        Assert.Equal("model", entry.GetProperty("object").GetString());
        Assert.Equal("grid", entry.GetProperty("owned_by").GetString());
        // When the worker first advertised it: just now.
        var created = DateTimeOffset.FromUnixTimeSeconds(entry.GetProperty("created").GetInt64());
        Assert.InRange(created, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddMinutes(1));
    }

    [Fact]
    public async Task BadKeysAndBadBodies_AreOpenAiErrors_NeverA500()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        await client.NewWorkerAsync("w", model);
        var v1 = OpenAi.Client(Host, client.Key);

        await OpenAi.ErrorAsync(await OpenAi.Client(Host, null).PostAsync("chat/completions", OpenAi.Chat(model)), HttpStatusCode.Unauthorized, "invalid_request_error", "invalid_api_key");
        await OpenAi.ErrorAsync(await OpenAi.Client(Host, "vk_live_nope").PostAsync("chat/completions", OpenAi.Chat(model)), HttpStatusCode.Unauthorized, "invalid_request_error", "invalid_api_key");
        await OpenAi.ErrorAsync(await OpenAi.Client(Host, "vk_live_nope").GetAsync("models"), HttpStatusCode.Unauthorized, "invalid_request_error", "invalid_api_key");

        foreach (var body in new[] { "{", "[]", "\"text\"", "", "{\"model\": 1, \"messages\": []}" })
        {
            await OpenAi.ErrorAsync(await v1.SendRawAsync(HttpMethod.Post, "chat/completions", body), HttpStatusCode.BadRequest, "invalid_request_error");
        }
        var cases = new (object Body, string Param)[]
        {
            (new { messages = new[] { new { role = "user", content = "x" } } }, "model"),
            (new { model }, "messages"),
            (new { model, messages = "hello" }, "messages"),
            (new { model, messages = Array.Empty<object>() }, "messages"),
            (new { model, messages = new[] { new { role = "wizard", content = "x" } } }, "messages[0].role"),
            (new { model, messages = new[] { new { role = "user", content = (object)5 } } }, "messages[0].content"),
            (new { model, messages = new[] { new { role = "user", content = (object)new[] { new { type = "image_url", image_url = new { url = "http://x/y.png" } } } } } }, "messages[0].content"),
            (OpenAi.Chat(model, extra: new { temperature = "hot" }), "temperature"),
            (OpenAi.Chat(model, extra: new { temperature = 3 }), "temperature"),
            (OpenAi.Chat(model, extra: new { max_tokens = 0 }), "max_tokens"),
            (OpenAi.Chat(model, extra: new { stop = new[] { 1 } }), "stop"),
            (OpenAi.Chat(model, extra: new { n = 2 }), "n"),
            (OpenAi.Chat(model, extra: new { stream = "yes" }), "stream"),
            (OpenAi.Chat(model, extra: new { seed = 1.5 }), "seed"),
        };
        foreach (var (body, param) in cases)
        {
            var error = await OpenAi.ErrorAsync(await v1.PostAsync("chat/completions", body), HttpStatusCode.BadRequest, "invalid_request_error");
            Assert.Equal(param, error.GetProperty("param").GetString());
        }
        Assert.Contains("image_url", (await OpenAi.ErrorAsync(await v1.PostAsync("chat/completions", cases[6].Body), HttpStatusCode.BadRequest, "invalid_request_error")).GetProperty("message").GetString());
        await OpenAi.ErrorAsync(await v1.PostAsync("completions", new { model, prompt = new[] { 1, 2 } }), HttpStatusCode.BadRequest, "invalid_request_error");
        await OpenAi.ErrorAsync(await v1.PostAsync("completions", new { model }), HttpStatusCode.BadRequest, "invalid_request_error");

        // Over the prompt limit (1 MiB): 400; over the server's body limit (8 MiB): 413, still in OpenAI's shape.
        var tooLong = await OpenAi.ErrorAsync(await v1.PostAsync("chat/completions", OpenAi.Chat(model, new string('x', 2 * 1024 * 1024))), HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Equal("messages", tooLong.GetProperty("param").GetString());
        // A legacy prompt sent as a batch of one has the bounds of a prompt sent as a string.
        foreach (var prompt in new[] { "", new string('x', 2 * 1024 * 1024) })
        {
            await OpenAi.ErrorAsync(await v1.PostAsync("completions", new { model, prompt = new[] { prompt } }), HttpStatusCode.BadRequest, "invalid_request_error");
        }
        using var hugeRequest = new HttpRequestMessage(HttpMethod.Post, "chat/completions")
        {
            Content = new StringContent(JsonSerializer.Serialize(OpenAi.Chat(model, new string('x', 9 * 1024 * 1024))), Encoding.UTF8, "application/json"),
        };
        hugeRequest.Headers.Authorization = new AuthenticationHeaderValue("Bearer", client.Key);
        // The server refuses the declared length before the body is sent; without this it may close the connection under a client still sending.
        hugeRequest.Headers.ExpectContinue = true;
        var huge = await v1.Http.SendAsync(hugeRequest);
        await OpenAi.ErrorAsync(huge, HttpStatusCode.RequestEntityTooLarge, "invalid_request_error", "request_too_large");
        // An unknown route under /v1 too.
        await OpenAi.ErrorAsync(await v1.PostAsync("embeddings", new { model, input = "x" }), HttpStatusCode.NotFound, "invalid_request_error");

        // Nothing of this made a job.
        Assert.Empty((await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task AnUnknownModelIs404_AndAKnownModelWithNoOnlineWorkerIs503_AtOnce()
    {
        var client = await Host.NewAccountAsync();
        var v1 = OpenAi.Client(Host, client.Key);
        await OpenAi.ErrorAsync(await v1.PostAsync("chat/completions", OpenAi.Chat(ApiClient.Unique() + ":8b")), HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");
        await OpenAi.ErrorAsync(await v1.PostAsync("completions", new { model = ApiClient.Unique(), prompt = "x" }), HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");

        var model = ApiClient.Unique() + ":8b";
        var (_, workerId) = await client.NewWorkerAsync("w", model);
        await using (var connection = await Host.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("UPDATE workers SET online = false WHERE id = @workerId", new { workerId });
        }
        var offline = await v1.PostAsync("chat/completions", OpenAi.Chat(model, stream: true));
        Assert.NotNull(offline.Headers.RetryAfter);
        await OpenAi.ErrorAsync(offline, HttpStatusCode.ServiceUnavailable, "server_error", "model_not_available");
        Assert.Empty((await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }

    [Fact]
    public async Task AnAccountAtItsDailyQuota_Gets429WithRetryAfter()
    {
        var (accountId, key) = await Host.Anonymous().SignUpAsync("quota");
        var client = Host.WithKey(key);
        var model = ApiClient.Unique() + ":8b";
        await client.NewWorkerAsync("w", model);
        await using (var connection = await Host.OpenConnectionAsync())
        {
            // As the account's grain marks it when a daily limit is reached.
            await connection.ExecuteAsync("UPDATE accounts SET quota_exhausted_on = (now() AT TIME ZONE 'UTC')::date WHERE id = @accountId", new { accountId });
        }
        var response = await OpenAi.Client(Host, key).PostAsync("chat/completions", OpenAi.Chat(model));
        var retryAfter = response.Headers.RetryAfter?.Delta;
        Assert.True(retryAfter > TimeSpan.Zero && retryAfter <= TimeSpan.FromDays(1), $"Retry-After: {response.Headers.RetryAfter}");
        Assert.Equal("false", response.Headers.GetValues("x-should-retry").Single());
        await OpenAi.ErrorAsync(response, HttpStatusCode.TooManyRequests, "insufficient_quota", "insufficient_quota");
        // The job it made does not wait for midnight.
        var job = (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray().Single();
        Assert.Equal("cancelled", job.GetProperty("status").GetString());
    }

    [Fact]
    public async Task AClientThatGoesAway_CancelsItsPendingJob()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        await client.NewWorkerAsync("w", model);
        using var cancel = new CancellationTokenSource();
        var answer = OpenAi.Client(Host, client.Key).SendAsync(HttpMethod.Post, "chat/completions", OpenAi.Chat(model), cancel.Token);
        long id = 0;
        await Eventually.TrueAsync(async () =>
        {
            var jobs = (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray().ToList();
            if (jobs.Count == 1) id = jobs[0].GetProperty("job_id").GetInt64();
            return jobs.Count == 1;
        }, "the request made its job");
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => answer);
        await Eventually.TrueAsync(async () => (await client.GetJobAsync(id)).GetProperty("status").GetString() == "cancelled", "the job is cancelled");
        Assert.Contains("went away", (await client.GetJobAsync(id)).GetProperty("error").GetString());
    }

    [Fact]
    public async Task AStreamingClientThatGoesAway_CancelsItsRunningJob_AndTheWorkerHearsAtItsNextChunkAndHeartbeat()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var stream = await OpenAi.StreamAsync(OpenAi.Client(Host, client.Key), "chat/completions", OpenAi.Chat(model, stream: true));
        await stream.NextAsync();
        var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
        await OpenAi.ChunkAsync(worker, id, 0, "partial");
        await stream.NextAsync();
        Assert.Empty((await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK)).GetProperty("cancelled_jobs").EnumerateArray());

        await stream.DisposeAsync();
        await Eventually.TrueAsync(async () => (await client.GetJobAsync(id)).GetProperty("status").GetString() == "cancelled", "the job is cancelled");
        await Eventually.TrueAsync(async () =>
            (await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK)).GetProperty("cancelled_jobs").EnumerateArray().Any(j => j.GetInt64() == id),
            "the heartbeat names the job");
        await OpenAi.ChunkAsync(worker, id, 1, " more", HttpStatusCode.UnprocessableEntity);
    }
}

/// <summary>Timeouts of <c>/v1</c> requests, and streams whose job restarts, driven by a fake clock.</summary>
public class OpenAiTimeoutTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AJobThatTimesOut_Is504_AndItsWorkerHearsAtItsHeartbeat()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var answer = OpenAi.Client(Host, client.Key).PostAsync("chat/completions", OpenAi.Chat(model));
        var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();

        fixture.Clock.Advance(TimeSpan.FromSeconds(601));
        await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK);
        await Host.Get<Coordinator.Grains.Duties.GridDuties>().RunOnceAsync();

        var error = await OpenAi.ErrorAsync(await answer, HttpStatusCode.GatewayTimeout, "timeout_error", "timeout");
        Assert.Contains("timed out", error.GetProperty("message").GetString());
        await Eventually.TrueAsync(async () =>
            (await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK)).GetProperty("cancelled_jobs").EnumerateArray().Any(j => j.GetInt64() == id),
            "the heartbeat names the job");
    }

    [Fact]
    public async Task AJobNoWorkerTakesWithinItsTimeout_IsCancelled_And504()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        await client.NewWorkerAsync("w", model);
        var answer = OpenAi.Client(Host, client.Key).PostAsync("chat/completions", OpenAi.Chat(model));
        await Eventually.TrueAsync(async () => (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).GetArrayLength() == 1, "the request made its job");

        fixture.Clock.Advance(TimeSpan.FromSeconds(600));
        // The request looks again each time its job's grain has waited a while for text: the clock moves until it has.
        await Eventually.TrueAsync(() =>
        {
            fixture.Clock.Advance(TimeSpan.FromSeconds(16));
            return answer.IsCompleted;
        }, "the request ends");
        await OpenAi.ErrorAsync(await answer, HttpStatusCode.GatewayTimeout, "timeout_error", "timeout");
        var job = (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK))[0];
        Assert.Equal("cancelled", job.GetProperty("status").GetString());
    }

    /// <summary>A job whose worker goes missing mid-stream goes back to the queue; the next worker streams it from the start.</summary>
    private async Task<(EventStreamReader Stream, long JobId, ApiClient Next)> RequeueMidStreamAsync(ApiClient client, string model, string sentBefore)
    {
        var (dead, _) = await client.NewWorkerAsync("dead-" + model, model);
        var stream = await OpenAi.StreamAsync(OpenAi.Client(Host, client.Key), "chat/completions", OpenAi.Chat(model, stream: true));
        await stream.NextAsync();
        var id = (await OpenAi.TakeAsync(dead, model)).GetProperty("job_id").GetInt64();
        await OpenAi.ChunkAsync(dead, id, 0, sentBefore);
        Assert.Equal(sentBefore, (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());

        fixture.Clock.Advance(TimeSpan.FromSeconds(91));
        await Host.Get<Coordinator.Grains.Duties.GridDuties>().RunOnceAsync();
        var (next, _) = await client.NewWorkerAsync("next-" + model, model);
        Assert.Equal(id, (await OpenAi.TakeAsync(next, model)).GetProperty("job_id").GetInt64());
        return (stream, id, next);
    }

    [Fact]
    public async Task AStreamWhoseJobRestarts_SendsOnlyWhatGoesBeyondTheTextSent_WhenTheNewRunAgrees()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (stream, id, next) = await RequeueMidStreamAsync(client, model, "Hello");
        await using var _ = stream;

        await OpenAi.ChunkAsync(next, id, 0, "Hel");      // already sent: held back
        await OpenAi.ChunkAsync(next, id, 1, "lo wor");   // " wor" is new
        Assert.Equal(" wor", (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
        await OpenAi.ResultAsync(next, id, "Hello world");
        Assert.Equal("ld", (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString());
        Assert.Equal("stop", (await stream.NextAsync())!.Json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal("[DONE]", (await stream.NextAsync())!.Data);
    }

    [Fact]
    public async Task AStreamWhoseJobRestarts_EndsWithAnErrorEvent_WhenTheNewRunDiffers_AndTheJobIsCancelled()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (stream, id, next) = await RequeueMidStreamAsync(client, model, "Hello");
        await using var _ = stream;

        await OpenAi.ChunkAsync(next, id, 0, "Howdy");
        var error = (await stream.NextAsync())!.Json.GetProperty("error");
        Assert.Equal("stream_restarted", error.GetProperty("code").GetString());
        Assert.Null(await stream.NextAsync());
        Assert.Equal("cancelled", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }
}

/// <summary>A node that stops while a /v1 request waits answers it, rather than leaving an empty 200.</summary>
public sealed class OpenAiStoppingNodeTests
{
    [Fact]
    public async Task ARequestWaitingOnAStoppingNode_Gets503ToSendAgain_AndItsJobIsGivenUp()
    {
        var host = await GridHost.StartAsync();
        try
        {
            var client = await host.NewAccountAsync();
            var model = ApiClient.Unique() + ":8b";
            var (worker, _) = await client.NewWorkerAsync("w", model);
            // A client of its own: the host's goes with it.
            using var http = new HttpClient { BaseAddress = new Uri(host.BaseAddress, "/v1/") };
            var answer = http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "chat/completions")
            {
                Content = new StringContent(JsonSerializer.Serialize(OpenAi.Chat(model)), Encoding.UTF8, "application/json"),
                Headers = { Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", client.Key) },
            });
            var id = (await OpenAi.TakeAsync(worker, model)).GetProperty("job_id").GetInt64();
            await using var connection = await host.OpenConnectionAsync();

            await host.DisposeAsync();
            var response = await answer;
            await OpenAi.ErrorAsync(response, HttpStatusCode.ServiceUnavailable, "server_error", "node_stopping");
            Assert.Equal("true", response.Headers.GetValues("x-should-retry").Single());
            Assert.Equal("cancelled", await Dapper.SqlMapper.QuerySingleAsync<string>(connection, "SELECT status FROM jobs WHERE id = @id", new { id }));
        }
        finally
        {
            await host.DisposeAsync();
        }
    }
}
