using System.Net;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Infrastructure;

/// <summary>Speaks the AITBC API as a client or miner holding one key would: <c>X-Api-Key</c> on the node's AITBC port.</summary>
public sealed class AitbcClient(HttpClient http, string? key)
{
    public string Key => key ?? throw new InvalidOperationException("anonymous client");

    public Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body = null) =>
        SendRawAsync(method, path, body is null ? null : JsonSerializer.Serialize(body));

    public async Task<HttpResponseMessage> SendRawAsync(HttpMethod method, string path, string? json)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'));
        if (key is not null) request.Headers.Add("X-Api-Key", key);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        return await http.SendAsync(request);
    }

    public Task<HttpResponseMessage> GetAsync(string path) => SendAsync(HttpMethod.Get, path);

    public Task<HttpResponseMessage> PostAsync(string path, object? body = null) => SendAsync(HttpMethod.Post, path, body);

    /// <summary>Submits a job; answers it as the API did (201).</summary>
    public async Task<JsonElement> SubmitAsync(object job) => await ApiClient.ExpectAsync(await PostAsync("v1/jobs", job), HttpStatusCode.Created);

    public async Task<JsonElement> RegisterMinerAsync(string minerId, params string[] capabilities) =>
        await ApiClient.ExpectAsync(await PostAsync("v1/miners/register", new { miner_id = minerId, capabilities, gpu_info = new { name = "RTX 4090", memory = "24GB" } }),
            HttpStatusCode.Created);

    /// <summary>The job offered to the miner now, or null.</summary>
    public async Task<JsonElement?> AvailableAsync(string minerId)
    {
        using var response = await GetAsync($"v1/jobs/available?miner_id={Uri.EscapeDataString(minerId)}");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        var offered = JsonDocument.Parse(body).RootElement.Clone(); // "null" when there is none, never an empty body
        return offered.ValueKind == JsonValueKind.Null ? null : offered;
    }

    /// <summary>Asserts the AITBC error shape and answers its error_code.</summary>
    public static async Task<string> ErrorCodeAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var error = await ApiClient.ExpectAsync(response, status);
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("detail").GetString()));
        return error.GetProperty("error_code").GetString()!;
    }
}
