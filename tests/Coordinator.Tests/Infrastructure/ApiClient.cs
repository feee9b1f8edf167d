using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Infrastructure;

/// <summary>Speaks the API as a client or worker holding one key would, over real HTTP.</summary>
public sealed class ApiClient(HttpClient http, string? key)
{
    public string Key => key ?? throw new InvalidOperationException("anonymous client");

    public HttpClient Http => http;

    public Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body = null, CancellationToken cancellationToken = default) =>
        SendRawAsync(method, path, body is null ? null : JsonSerializer.Serialize(body), cancellationToken);

    public async Task<HttpResponseMessage> SendRawAsync(HttpMethod method, string path, string? json, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'));
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        return await http.SendAsync(request, cancellationToken);
    }

    public Task<HttpResponseMessage> GetAsync(string path, CancellationToken cancellationToken = default) => SendAsync(HttpMethod.Get, path, null, cancellationToken);

    public Task<HttpResponseMessage> PostAsync(string path, object? body = null) => SendAsync(HttpMethod.Post, path, body);

    public Task<HttpResponseMessage> PatchAsync(string path, object? body = null) => SendAsync(HttpMethod.Patch, path, body);

    public Task<HttpResponseMessage> DeleteAsync(string path) => SendAsync(HttpMethod.Delete, path);

    public async Task<(long AccountId, string Key)> SignUpAsync(string name)
    {
        var json = await ExpectAsync(await PostAsync("accounts", new { name }), HttpStatusCode.Created);
        return (json.GetProperty("account_id").GetInt64(), json.GetProperty("api_key").GetString()!);
    }

    /// <summary>Submits a job; answers its id.</summary>
    public async Task<long> SubmitAsync(object job)
    {
        var json = await ExpectAsync(await PostAsync("jobs", job), HttpStatusCode.Created);
        return json.GetProperty("job_id").GetInt64();
    }

    public async Task<JsonElement> GetJobAsync(long id) => await ExpectAsync(await GetAsync($"jobs/{id}"), HttpStatusCode.OK);

    /// <summary>Creates a new key on this account and registers it as a worker; answers a client holding the worker key.</summary>
    public async Task<(ApiClient Worker, long WorkerId)> NewWorkerAsync(string name, params string[] models)
    {
        var created = await ExpectAsync(await PostAsync("keys", new { name }), HttpStatusCode.Created);
        var worker = new ApiClient(http, created.GetProperty("key").GetString());
        var registered = await ExpectAsync(await worker.PostAsync("worker/register", new
        {
            name,
            agent_version = "test",
            platform = "linux/amd64",
            models = models.Select(m => new { name = m, serves_family = false }).ToArray(),
        }), HttpStatusCode.Created);
        return (worker, registered.GetProperty("worker_id").GetInt64());
    }

    /// <summary>Submits an exact-model job for a fresh model and has a fresh worker of this account claim it.</summary>
    public async Task<(ApiClient Worker, long JobId, string Model)> SubmitAndClaimAsync(object? extra = null, bool start = false)
    {
        var model = Unique();
        var job = new Dictionary<string, object?> { ["model"] = model, ["model_match"] = "exact", ["prompt"] = "p" };
        foreach (var property in extra?.GetType().GetProperties() ?? []) job[property.Name] = property.GetValue(extra);
        var id = await SubmitAsync(job);
        var (worker, _) = await NewWorkerAsync("w-" + model, model);
        var assignment = await worker.PollAsync($"models[]={model}");
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        if (start) await ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        return (worker, id, model);
    }

    /// <summary>One long-poll; null on 204.</summary>
    public async Task<JsonElement?> PollAsync(string query = "", CancellationToken cancellationToken = default)
    {
        var response = await GetAsync("worker/jobs/next" + (query.Length > 0 ? "?" + query : ""), cancellationToken);
        if (response.StatusCode == HttpStatusCode.NoContent) return null;
        return await ExpectAsync(response, HttpStatusCode.OK);
    }

    public static async Task<JsonElement> ExpectAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status} but got {(int)response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }

    public static string Unique(string prefix = "m") => $"{prefix}{Guid.NewGuid().ToString("N")[..10]}";
}
