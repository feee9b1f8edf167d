using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace GridWorker;

public sealed record WorkerModelEntry(string Name, bool ServesFamily);

public sealed record BlobRef(long Id, string? Type, string? Url);

/// <summary>The spec's JobAssignment plus what the coordinator adds (<c>timeout_seconds</c>, <c>attempt</c>, <c>params</c>).</summary>
public sealed record JobAssignment(
    long JobId,
    string? Model,
    string? ModelFamily,
    string? ModelMatch,
    string Prompt,
    IReadOnlyList<BlobRef>? Blobs,
    int? TimeoutSeconds,
    int? Attempt,
    JsonElement? Params);

public sealed record JobResultRequest(string Output, int? InputTokens, int OutputTokens, long DurationMs, string? ModelUsed);

public sealed record CreditEntry(long Id, double CreditsEarned, long? OutputTokens, long? DurationMs, bool PaidOut, DateTimeOffset CreatedAt);

public sealed record CreditBalance(double Balance, double TotalEarned, double CreditValueUsd, IReadOnlyList<CreditEntry>? History);

/// <summary>What the coordinator made of a chunk.</summary>
public enum ChunkOutcome
{
    /// <summary>Taken (or already held: a duplicate); the next chunk has index <see cref="ChunkAnswer.NextIndex"/>.</summary>
    Accepted,

    /// <summary>The job is no longer this worker's to run (cancelled, timed out, released, or not held): stop working on it.</summary>
    JobEnded,
}

/// <summary>The coordinator's answer to one chunk; <see cref="Message"/> is its own words when the job ended.</summary>
public sealed record ChunkAnswer(ChunkOutcome Outcome, int NextIndex, string? Message);

/// <summary>The coordinator answered with an error, or could not be reached (<see cref="Status"/> null).</summary>
public sealed class CoordinatorException(HttpStatusCode? status, string message) : Exception(message)
{
    public HttpStatusCode? Status { get; } = status;

    /// <summary>Worth trying again later: the coordinator is down, restarting, overloaded or timed out.</summary>
    public bool IsTransient => Status is null or HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests || (int)Status >= 500;
}

/// <summary>The <c>/worker/*</c> side of the grid API, over one shared <see cref="HttpClient"/>.</summary>
public sealed class CoordinatorClient
{
    /// <summary>The coordinator holds a poll for up to 30 s; past this the connection is taken for dead.</summary>
    public static readonly TimeSpan PollTimeout = TimeSpan.FromSeconds(75);

    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http;
    private readonly string _apiKey;

    public CoordinatorClient(HttpClient http, Uri apiRoot, string apiKey)
    {
        _http = http;
        _apiKey = apiKey;
        ApiRoot = apiRoot;
    }

    public Uri ApiRoot { get; }

    public async Task<long> RegisterAsync(string name, string agentVersion, string platform, IReadOnlyList<WorkerModelEntry> models, bool catchAll, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Post, "worker/register",
            new { name, agent_version = agentVersion, platform, catch_all = catchAll, models }, RequestTimeout, cancellationToken);
        var body = await ReadAsync<JsonElement>(response, cancellationToken);
        return body.LongOf("worker_id") ?? throw new CoordinatorException(response.StatusCode, "the coordinator's register answer has no worker_id");
    }

    /// <summary>
    /// Says the worker is alive; answers the jobs it held that the coordinator cancelled lately (<c>cancelled_jobs</c>: their
    /// clients went away, or they timed out), which it should stop. A coordinator that does not say answers none.
    /// </summary>
    public async Task<IReadOnlyList<long>> HeartbeatAsync(CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Patch, "worker/heartbeat", null, RequestTimeout, cancellationToken);
        var body = await ReadAsync<JsonElement>(response, cancellationToken);
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("cancelled_jobs", out var cancelled) || cancelled.ValueKind != JsonValueKind.Array) return [];
        return cancelled.EnumerateArray().Where(id => id.ValueKind == JsonValueKind.Number && id.TryGetInt64(out _)).Select(id => id.GetInt64()).ToList();
    }

    public async Task UpdateModelsAsync(IReadOnlyList<WorkerModelEntry> models, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Patch, "worker/models", new { models }, RequestTimeout, cancellationToken);
        await EnsureSuccessAsync(response, cancellationToken);
    }

    /// <summary>One long-poll: a job, or null when the window passed without one (204).</summary>
    public async Task<JobAssignment?> NextJobAsync(IEnumerable<string> models, IEnumerable<string> families, bool catchAll, CancellationToken cancellationToken)
    {
        var query = new StringBuilder("worker/jobs/next?catch_all=").Append(catchAll ? "true" : "false");
        foreach (var model in models) query.Append("&models[]=").Append(Uri.EscapeDataString(model));
        foreach (var family in families) query.Append("&families[]=").Append(Uri.EscapeDataString(family));
        using var response = await SendAsync(HttpMethod.Get, query.ToString(), null, PollTimeout, cancellationToken);
        if (response.StatusCode == HttpStatusCode.NoContent) return null;
        return await ReadAsync<JobAssignment>(response, cancellationToken);
    }

    /// <summary>Marks the job running. False when the job is no longer this worker's to run (404/422: cancelled, timed out, requeued).</summary>
    public Task<bool> StartAsync(long jobId, CancellationToken cancellationToken) =>
        TransitionAsync(HttpMethod.Patch, $"worker/jobs/{jobId}/start", null, cancellationToken);

    /// <summary>
    /// Sends the piece of a running job's output that starts at chunk <paramref name="index"/>. A job that ended or is
    /// not held answers <see cref="ChunkOutcome.JobEnded"/>; anything else that is not a 200 (a chunk out of order, an
    /// output past its limit, a coordinator without the endpoint, or down) throws <see cref="CoordinatorException"/>.
    /// </summary>
    public async Task<ChunkAnswer> AppendChunkAsync(long jobId, int index, string text, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Post, $"worker/jobs/{jobId}/chunks", new { index, text }, RequestTimeout, cancellationToken);
        if (response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.UnprocessableEntity && await EndedMessageAsync(response, cancellationToken) is { } ended)
        {
            return new ChunkAnswer(ChunkOutcome.JobEnded, index, ended);
        }
        var body = await ReadAsync<JsonElement>(response, cancellationToken);
        return new ChunkAnswer(ChunkOutcome.Accepted, (int?)body.LongOf("next_index") ?? index + 1, null);
    }

    /// <summary>
    /// The coordinator's message when a chunk's answer says the job is over for this worker: 404 <c>not_found</c> (it does
    /// not hold the job), or 422 <c>invalid_state</c> ("job 7 is cancelled: stop working on it"). Null for other refusals:
    /// 422 <c>invalid_request</c> (a chunk out of order or past the output limit), after which the job still runs and its
    /// result decides; and a 404 without the error body is a coordinator without the chunks endpoint.
    /// </summary>
    private static async Task<string?> EndedMessageAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        JsonElement body;
        try
        {
            body = await response.Content.ReadFromJsonAsync<JsonElement>(Json.Options, cancellationToken);
        }
        catch (JsonException)
        {
            return null;
        }
        var message = body.StringOf("message");
        return body.StringOf("error") switch
        {
            "not_found" when response.StatusCode == HttpStatusCode.NotFound => message ?? "the job is not held by this worker",
            "invalid_state" => message ?? "the job ended",
            _ => null,
        };
    }

    public Task<bool> CompleteAsync(long jobId, JobResultRequest result, CancellationToken cancellationToken) =>
        TransitionAsync(HttpMethod.Post, $"worker/jobs/{jobId}/result", result, cancellationToken);

    public Task<bool> FailAsync(long jobId, string error, CancellationToken cancellationToken) =>
        TransitionAsync(HttpMethod.Post, $"worker/jobs/{jobId}/fail", new { error }, cancellationToken);

    public async Task<CreditBalance> CreditsAsync(CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Get, "worker/credits", null, RequestTimeout, cancellationToken);
        return await ReadAsync<CreditBalance>(response, cancellationToken);
    }

    private async Task<bool> TransitionAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(method, path, body, RequestTimeout, cancellationToken);
        if (response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.UnprocessableEntity) return false;
        await EnsureSuccessAsync(response, cancellationToken);
        return true;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(ApiRoot, path));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _apiKey);
        if (body is not null) request.Content = JsonContent.Create(body, body.GetType(), options: Json.Options);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CoordinatorException(null, $"the coordinator at {ApiRoot} did not answer within {timeout.TotalSeconds:0} s");
        }
        catch (HttpRequestException ex)
        {
            throw new CoordinatorException(null, $"the coordinator at {ApiRoot} is not reachable ({ex.Message})");
        }
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        await EnsureSuccessAsync(response, cancellationToken);
        try
        {
            return await response.Content.ReadFromJsonAsync<T>(Json.Options, cancellationToken)
                ?? throw new CoordinatorException(response.StatusCode, "the coordinator answered with an empty body");
        }
        catch (JsonException ex)
        {
            throw new CoordinatorException(response.StatusCode, $"the coordinator's answer is not the expected JSON ({ex.Message})");
        }
    }

    private static async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode) return;
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        string detail = text.Length > 300 ? text[..300] : text;
        try
        {
            using var body = JsonDocument.Parse(text);
            var error = body.RootElement.StringOf("error");
            var message = body.RootElement.StringOf("message");
            if (error is not null) detail = message is null ? error : $"{error}: {message}";
        }
        catch (JsonException)
        {
        }
        var hint = response.StatusCode == HttpStatusCode.Unauthorized ? " (check --api-key)" : "";
        throw new CoordinatorException(response.StatusCode, $"the coordinator answered {(int)response.StatusCode} {detail}{hint}".TrimEnd());
    }
}
