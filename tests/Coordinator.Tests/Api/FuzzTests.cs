using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using static Coordinator.Tests.Infrastructure.Fuzz;

namespace Coordinator.Tests.Api;

/// <summary>
/// Throws seeded random bodies and queries at every endpoint that reads input: whatever comes in, the answer is a
/// 2xx or a 4xx in the spec's error shape — never a 5xx. Strings include lone surrogate escapes and bytes that are not UTF-8.
/// </summary>
public sealed class FuzzTests : IAsyncLifetime
{
    private const int Seed = 20261122;
    private const int RequestsPerEndpoint = 150;

    private GridHost _host = null!;

    public async Task InitializeAsync() =>
        // A short poll window so that a fuzzed poll that happens to be valid does not park for 30 s.
        _host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Dispatch:LongPollTimeout"] = "00:00:00.050" });

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task RandomInput_NeverCausesA5xx()
    {
        var random = new Random(Seed);
        var client = await _host.NewAccountAsync("fuzz");
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("fuzz-worker", model);
        var jobId = await client.SubmitAsync(new { model, prompt = "p" });
        // A job the worker runs, for its chunks (polls here time out after 50 ms, so a busy machine may need a few).
        var streamed = ApiClient.Unique();
        var running = await client.SubmitAsync(new { model = streamed, model_match = "exact", prompt = "streamed" });
        JsonElement? assignment = null;
        for (var attempt = 0; attempt < 100 && assignment is null; attempt++) assignment = await worker.PollAsync($"models[]={streamed}");
        Assert.Equal(running, assignment!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{running}/start"), HttpStatusCode.OK);

        var targets = new (ApiClient Caller, HttpMethod Method, string Path, string[] Fields)[]
        {
            (client, HttpMethod.Post, "jobs", ["prompt", "model", "model_match", "priority", "timeout_seconds", "tag", "webhook_url", "priority_boost", "blob_ids"]),
            (client, HttpMethod.Patch, $"jobs/{jobId}/priority", ["priority"]),
            (client, HttpMethod.Post, "keys", ["name"]),
            (client, HttpMethod.Post, "blobs", ["blob_type"]),
            (_host.Anonymous(), HttpMethod.Post, "accounts", ["name"]),
            (worker, HttpMethod.Post, "worker/register", ["name", "agent_version", "platform", "models", "catch_all"]),
            (worker, HttpMethod.Patch, "worker/models", ["models"]),
            (worker, HttpMethod.Post, $"worker/jobs/{jobId}/result", ["output", "output_tokens", "duration_ms", "input_tokens", "model_used"]),
            (worker, HttpMethod.Post, $"worker/jobs/{jobId}/fail", ["error"]),
            (worker, HttpMethod.Post, $"worker/jobs/{running}/chunks", ["index", "text"]),
            // The OpenAI-compatible front door (its error shape is OpenAI's {"error": {…}}); no random model is served,
            // so no request waits for a job.
            (client, HttpMethod.Post, "/v1/chat/completions", ["model", "messages", "stream", "max_tokens", "temperature", "top_p", "stop", "seed", "n", "stream_options"]),
            (client, HttpMethod.Post, "/v1/completions", ["model", "prompt", "stream", "max_tokens", "temperature", "stop", "echo"]),
        };
        var failures = new List<string>();
        foreach (var (caller, method, path, fields) in targets)
        {
            for (var i = 0; i < RequestsPerEndpoint; i++)
            {
                var body = RandomBody(random, fields);
                await CheckAsync(await SendAsync(caller, method, path, ToBytes(random, body)), $"{method} {path} {Shorten(body)}", failures);
            }
        }
        string[] listFields = ["status", "model", "tag", "from", "to", "offset", "limit"];
        string[] pollFields = ["models[]", "families[]", "catch_all"];
        for (var i = 0; i < RequestsPerEndpoint; i++)
        {
            var query = RandomQuery(random, listFields);
            await CheckAsync(await client.GetAsync("jobs?" + query), $"GET jobs?{query}", failures);
            query = RandomQuery(random, pollFields);
            await CheckAsync(await worker.GetAsync("worker/jobs/next?" + query), $"GET worker/jobs/next?{query}", failures);
        }
        await FuzzAitbcAsync(random, client, failures);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    /// <summary>The AITBC front door, on its own port: its errors are <c>{"detail", "error_code"}</c>.</summary>
    private async Task FuzzAitbcAsync(Random random, ApiClient client, List<string> failures)
    {
        var aitbc = _host.AitbcWithKey(client.Key);
        var model = ApiClient.Unique() + ":1b";
        var minerKey = (await ApiClient.ExpectAsync(await client.PostAsync("keys", new { name = "fuzz-miner" }), HttpStatusCode.Created)).GetProperty("key").GetString()!;
        var miner = _host.AitbcWithKey(minerKey);
        await miner.RegisterMinerAsync("fuzz-miner", model);
        var jobId = (await aitbc.SubmitAsync(new { prompt = "p", model })).GetProperty("job_id").GetString();
        var targets = new (AitbcClient Caller, string Path, string[] Fields)[]
        {
            (aitbc, "v1/jobs", ["prompt", "model", "params"]),
            (miner, "v1/miners/register", ["miner_id", "capabilities", "gpu_info"]),
            (miner, $"v1/jobs/{jobId}/claim", ["miner_id"]),
            (miner, $"v1/jobs/{jobId}/complete", ["miner_id", "result", "completed_at", "tokens"]),
            (aitbc, $"v1/jobs/{jobId}/cancel", []),
        };
        foreach (var (caller, path, fields) in targets)
        {
            for (var i = 0; i < RequestsPerEndpoint; i++)
            {
                var body = RandomBody(random, fields);
                using var content = new ByteArrayContent(ToBytes(random, body));
                content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
                request.Headers.Add("X-Api-Key", caller.Key);
                await CheckAsync(await _host.Aitbc.SendAsync(request), $"AITBC POST {path} {Shorten(body)}", failures, "error_code");
            }
        }
        string[] listFields = ["status", "limit", "offset"];
        for (var i = 0; i < RequestsPerEndpoint; i++)
        {
            var query = RandomQuery(random, listFields);
            await CheckAsync(await aitbc.GetAsync("v1/jobs?" + query), $"AITBC GET v1/jobs?{query}", failures, "error_code");
            query = RandomQuery(random, ["miner_id"]);
            await CheckAsync(await miner.GetAsync("v1/jobs/available?" + query), $"AITBC GET v1/jobs/available?{query}", failures, "error_code");
            // Kestrel itself refuses a path with a NUL in it (an empty 400, before any endpoint): not fuzzed here.
            var id = Uri.EscapeDataString(RandomString(random, random.Next(1, 30)).Replace('\0', '0'));
            await CheckAsync(await aitbc.GetAsync("v1/jobs/" + id), $"AITBC GET v1/jobs/{id}", failures, "error_code");
            await CheckAsync(await aitbc.GetAsync("v1/receipts/" + id), $"AITBC GET v1/receipts/{id}", failures, "error_code");
            await CheckAsync(await aitbc.GetAsync($"v1/jobs/{id}/receipts"), $"AITBC GET v1/jobs/{id}/receipts", failures, "error_code");
            query = RandomQuery(random, ["client", "provider", "limit"]);
            await CheckAsync(await aitbc.GetAsync("v1/receipts?" + query), $"AITBC GET v1/receipts?{query}", failures, "error_code");
            query = RandomQuery(random, ["limit"]);
            foreach (var list in new[] { "blocks", "transactions", "receipts" })
            {
                await CheckAsync(await aitbc.GetAsync($"explorer/{list}?{query}"), $"AITBC GET explorer/{list}?{query}", failures, "error_code");
            }
        }
    }

    /// <summary>Sends the bytes as they are: a string body would be re-encoded and lose the bytes that are not UTF-8.</summary>
    private static async Task<HttpResponseMessage> SendAsync(ApiClient caller, HttpMethod method, string path, byte[] body)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Content = new ByteArrayContent(body);
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (KeyOf(caller) is { } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return await caller.Http.SendAsync(request);
    }

    private static string? KeyOf(ApiClient caller)
    {
        try
        {
            return caller.Key;
        }
        catch (InvalidOperationException)
        {
            return null; // an anonymous caller
        }
    }

    private static async Task CheckAsync(HttpResponseMessage response, string what, List<string> failures, string? errorField = null)
    {
        var status = (int)response.StatusCode;
        var text = await response.Content.ReadAsStringAsync();
        if (status >= 500)
        {
            failures.Add($"{what} → {status} {text}");
            return;
        }
        if (status >= 400)
        {
            try
            {
                var json = JsonDocument.Parse(text).RootElement;
                var shaped = errorField is null
                    ? json.TryGetProperty("error", out _) || json.TryGetProperty("errors", out _)
                    : json.TryGetProperty(errorField, out _) && json.TryGetProperty("detail", out _);
                if (!shaped) failures.Add($"{what} → {status} without error body: {text}");
            }
            catch (JsonException)
            {
                failures.Add($"{what} → {status} with a non-JSON body: {text}");
            }
        }
        else if (response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.Created or HttpStatusCode.NoContent))
        {
            failures.Add($"{what} → unexpected {status}");
        }
    }
}
