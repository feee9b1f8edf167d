using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Coordinator.Bench;

/// <summary>A job handed to a simulated worker: its id and the prompt, which carries the submitter's timestamp.</summary>
public readonly record struct Assignment(long JobId, string Prompt, long ReceivedAt);

/// <summary>Clients and simulated workers speaking the real HTTP protocol to one node.</summary>
public sealed partial class HttpGrid(HttpClient http, Uri baseAddress)
{
    public Uri BaseAddress => baseAddress;

    private HttpClient Http => http;

    /// <summary>One shared client for every simulated party: no connection limit, connections kept for long polls.</summary>
#pragma warning disable CA2000 // the client owns its handler and disposes it with itself
    public static HttpClient CreateClient() => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = int.MaxValue,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        UseCookies = false,
        AutomaticDecompression = DecompressionMethods.None,
    })
    { Timeout = TimeSpan.FromMinutes(3) };
#pragma warning restore CA2000

    public async Task<(long AccountId, string Key)> SignUpAsync(string name)
    {
        using var response = await SendAsync(HttpMethod.Post, "accounts", null, new { name });
        using var json = await ReadAsync(response, HttpStatusCode.Created);
        return (json.RootElement.GetProperty("account_id").GetInt64(), json.RootElement.GetProperty("api_key").GetString()!);
    }

    public async Task<string> CreateKeyAsync(string key, string name)
    {
        using var response = await SendAsync(HttpMethod.Post, "keys", key, new { name });
        using var json = await ReadAsync(response, HttpStatusCode.Created);
        return json.RootElement.GetProperty("key").GetString()!;
    }

    /// <summary>Creates a key for a worker and registers the worker with it; answers the worker's key.</summary>
    public async Task<string> NewWorkerAsync(string accountKey, string name, string model)
    {
        var workerKey = await CreateKeyAsync(accountKey, name);
        using var response = await SendAsync(HttpMethod.Post, "worker/register", workerKey,
            new { name, agent_version = "bench", platform = "linux", models = new[] { new { name = model, serves_family = false } } });
        using var _ = await ReadAsync(response, HttpStatusCode.Created);
        return workerKey;
    }

    /// <summary>
    /// Submits an exact-match job whose prompt is the current timestamp; answers its id. Each call is one logical
    /// submission with a fresh <c>Idempotency-Key</c>, unless a caller retrying a submission passes the key it used.
    /// </summary>
    public async Task<long> SubmitAsync(string key, string model, int priority = 0, string? prompt = null, string? idempotencyKey = null)
    {
        prompt ??= Stopwatch.GetTimestamp().ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var response = await SendAsync(HttpMethod.Post, "jobs", key, new { model, model_match = "exact", prompt, priority },
            idempotencyKey ?? Guid.NewGuid().ToString());
        using var json = await ReadAsync(response, HttpStatusCode.Created);
        return json.RootElement.GetProperty("job_id").GetInt64();
    }

    /// <summary>One long-poll; null on 204.</summary>
    public async Task<Assignment?> PollAsync(string workerKey, string model, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseAddress, $"worker/jobs/next?models[]={Uri.EscapeDataString(model)}"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", workerKey);
        using var response = await http.SendAsync(request, cancellationToken);
        var received = Stopwatch.GetTimestamp();
        if (response.StatusCode == HttpStatusCode.NoContent) return null;
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        return new Assignment(json.RootElement.GetProperty("job_id").GetInt64(), json.RootElement.GetProperty("prompt").GetString()!, received);
    }

    /// <summary><c>GET /jobs/{id}</c>; answers the job's <c>queue_position</c>, or null when it carries none.</summary>
    public async Task<long?> GetJobAsync(string key, long jobId)
    {
        using var response = await SendAsync(HttpMethod.Get, $"jobs/{jobId}", key, null);
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        return json.RootElement.TryGetProperty("queue_position", out var position) ? position.GetInt64() : null;
    }

    public async Task StartAsync(string workerKey, long jobId)
    {
        using var response = await SendAsync(HttpMethod.Patch, $"worker/jobs/{jobId}/start", workerKey, null);
        using var _ = await ReadAsync(response, HttpStatusCode.OK);
    }

    public async Task ResultAsync(string workerKey, long jobId)
    {
        using var response = await SendAsync(HttpMethod.Post, $"worker/jobs/{jobId}/result", workerKey,
            new { output = "ok", input_tokens = 3, output_tokens = 1, duration_ms = 0, model_used = "bench:1" });
        using var _ = await ReadAsync(response, HttpStatusCode.OK);
    }

    /// <summary>
    /// A simulated worker: long-polls again and again, handing each job to <paramref name="handle"/>, until
    /// <paramref name="stop"/> fires or <paramref name="handle"/> answers false.
    /// </summary>
    public async Task WorkAsync(string workerKey, string model, Func<Assignment, Task<bool>> handle, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            Assignment? job;
            try
            {
                job = await PollAsync(workerKey, model, stop);
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                return;
            }
            if (job is { } assignment && !await handle(assignment)) return;
        }
    }

    /// <summary>Polls until a job arrives, then starts it and reports a result: one full worker cycle.</summary>
    public async Task<Assignment?> CycleAsync(string workerKey, string model, CancellationToken cancellationToken)
    {
        var job = await PollAsync(workerKey, model, cancellationToken);
        if (job is not { } assignment) return null;
        await StartAsync(workerKey, assignment.JobId);
        await ResultAsync(workerKey, assignment.JobId);
        return assignment;
    }

    /// <summary>Sends one chunk of a running job's output; answers the coordinator's next index.</summary>
    public async Task ChunkAsync(string workerKey, long jobId, int index, string text)
    {
        using var response = await SendAsync(HttpMethod.Post, $"worker/jobs/{jobId}/chunks", workerKey, new { index, text });
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        if (json.RootElement.GetProperty("status").GetString() != "accepted") throw new InvalidOperationException($"chunk {index} of job {jobId}: {json.RootElement}");
    }

    /// <summary>Reports a job's result with its whole output.</summary>
    public async Task ResultAsync(string workerKey, long jobId, string output)
    {
        using var response = await SendAsync(HttpMethod.Post, $"worker/jobs/{jobId}/result", workerKey,
            new { output, input_tokens = 3, output_tokens = 1, duration_ms = 0, model_used = "bench:1" });
        using var _ = await ReadAsync(response, HttpStatusCode.OK);
    }

    /// <summary>Opens a job's event stream (<c>GET /jobs/{id}/stream</c>); the response's body is read as it comes.</summary>
    public async Task<HttpResponseMessage> OpenStreamAsync(string key, long jobId)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseAddress, $"jobs/{jobId}/stream"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            var text = await response.Content.ReadAsStringAsync();
            response.Dispose();
            throw new InvalidOperationException($"GET jobs/{jobId}/stream: {text}");
        }
        return response;
    }

    /// <summary>A non-streaming <c>POST /v1/chat/completions</c> (the OpenAI-compatible front door); answers the reply's text.</summary>
    public async Task<string> ChatCompletionAsync(string key, string model, string content)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseAddress, "/v1/chat/completions"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Content = JsonContent.Create(new { model, messages = new[] { new { role = "user", content } } });
        using var response = await http.SendAsync(request);
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        return json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    public async Task<bool> HealthyAsync()
    {
        try
        {
            using var response = await http.GetAsync(new Uri(baseAddress, "health"));
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }

    /// <summary>
    /// Polls parked on this node right now, as <c>GET /health</c> reports them. Health answers 503 when its check of the
    /// database takes more than 2 s, as it can while thousands of polls arrive at once; it reports the polls all the same.
    /// </summary>
    public async Task<int> ParkedPollsAsync()
    {
        using var response = await http.GetAsync(new Uri(baseAddress, "health"));
        using var json = await ReadAsync(response, response.StatusCode == HttpStatusCode.ServiceUnavailable ? HttpStatusCode.ServiceUnavailable : HttpStatusCode.OK);
        return json.RootElement.GetProperty("parked_polls").GetInt32();
    }

    /// <summary>Waits until at least <paramref name="count"/> polls are parked on this node.</summary>
    public Task WaitParkedAsync(int count) => Until.TrueAsync(async () => await ParkedPollsAsync() >= count, $"{count} polls parked on {baseAddress}");

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? key, object? body, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(baseAddress, path));
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        if (body is not null) request.Content = JsonContent.Create(body);
        return await http.SendAsync(request);
    }

    private static async Task<JsonDocument> ReadAsync(HttpResponseMessage response, HttpStatusCode expected)
    {
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode == HttpStatusCode.ServiceUnavailable && expected != HttpStatusCode.ServiceUnavailable)
        {
            // A client may send it again (the spec's 503): a silo answers so while what a call needs was on a silo that died.
            throw new HttpRequestException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri?.PathAndQuery}: 503 {text}", null, HttpStatusCode.ServiceUnavailable);
        }
        if (response.StatusCode != expected)
        {
            throw new InvalidOperationException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri?.PathAndQuery}: expected {(int)expected}, got {(int)response.StatusCode}: {text}");
        }
        return JsonDocument.Parse(text.Length == 0 ? "{}" : text);
    }
}
