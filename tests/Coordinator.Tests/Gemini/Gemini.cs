using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Gemini;

/// <summary>What the gemini tests share: a client of <c>/api/gemini</c>, and the worker's side played over HTTP.</summary>
internal static class Gemini
{
    /// <summary>A client of <c>http://host/api/gemini/</c> holding <paramref name="key"/>.</summary>
    public static ApiClient Client(GridHost host, string? key) => new(Clients.GetOrAdd(new Uri(host.BaseAddress, "/api/gemini/"), NewClient), key);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Uri, HttpClient> Clients = new();

    private static HttpClient NewClient(Uri baseAddress) => new() { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(100) };

    public static async Task<long> NewConversationAsync(ApiClient client, string title = "chat") =>
        (await ApiClient.ExpectAsync(await client.PostAsync("conversations", new { title }), HttpStatusCode.Created)).GetProperty("id").GetInt64();

    /// <summary>Sends a message; the answer must be an event stream.</summary>
    public static async Task<EventStreamReader> SendAsync(ApiClient client, long conversationId, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"conversations/{conversationId}/messages")
        {
            Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", client.Key);
        var (stream, response) = await EventStreamReader.SendAsync(client.Http, request);
        if (stream is null) Assert.Fail($"no event stream: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return stream!;
    }

    /// <summary>The next event's JSON, which must be there.</summary>
    public static async Task<JsonElement> NextAsync(EventStreamReader stream)
    {
        var next = await stream.NextAsync();
        Assert.True(next is not null, "the stream ended early");
        return next!.Json;
    }

    public static async Task<JsonElement> MessagesAsync(ApiClient client, long conversationId) =>
        await ApiClient.ExpectAsync(await client.GetAsync($"conversations/{conversationId}/messages"), HttpStatusCode.OK);

    /// <summary>Registers a worker of <paramref name="grid"/>'s account that serves <paramref name="model"/>'s family too.</summary>
    public static async Task<ApiClient> NewFamilyWorkerAsync(ApiClient grid, string model)
    {
        var created = await ApiClient.ExpectAsync(await grid.PostAsync("keys", new { name = "w" }), HttpStatusCode.Created);
        var worker = new ApiClient(grid.Http, created.GetProperty("key").GetString());
        await ApiClient.ExpectAsync(await worker.PostAsync("worker/register", new
        {
            name = "w", agent_version = "test", platform = "linux/amd64", models = new[] { new { name = model, serves_family = true } },
        }), HttpStatusCode.Created);
        return worker;
    }

    /// <summary>The worker takes the next job of its model (and of the model's family, with <paramref name="family"/>) and starts it; answers the assignment.</summary>
    public static async Task<JsonElement> TakeAsync(ApiClient worker, string model, string? family = null)
    {
        var query = $"models[]={Uri.EscapeDataString(model)}" + (family is null ? "" : $"&families[]={Uri.EscapeDataString(family)}");
        var assignment = (await worker.PollAsync(query))!.Value;
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{assignment.GetProperty("job_id").GetInt64()}/start"), HttpStatusCode.OK);
        return assignment;
    }

    public static async Task ResultAsync(ApiClient worker, long id, string output) =>
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output, input_tokens = 5, output_tokens = 3, duration_ms = 10, model_used = (string?)null }), HttpStatusCode.OK);

    /// <summary>A GeminiError answer: its status, and the message.</summary>
    public static async Task<string> ErrorAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await ApiClient.ExpectAsync(response, status);
        Assert.Equal(["error"], body.EnumerateObject().Select(p => p.Name));
        var message = body.GetProperty("error").GetString();
        Assert.False(string.IsNullOrWhiteSpace(message));
        return message!;
    }
}
