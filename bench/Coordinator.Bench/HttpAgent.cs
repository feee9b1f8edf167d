using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Coordinator.Bench;

/// <summary>A pay-per-job job as <c>GET /api/jobs/{id}</c> shows it: its state, and the work invoice's payment hash once quoted (stub mode).</summary>
public readonly record struct AgentJobStatus(string State, string? WorkPaymentHash);

/// <summary>What <c>POST /api/sessions/{id}/request</c> answered.</summary>
public readonly record struct SessionRequestAnswer(string State, long DebitedSats, long BalanceRemaining);

/// <summary>
/// The Lightning agent API (issue #18, under <c>/api</c>) as its clients and the stub's payer speak it, and a worker
/// for several models at once (the agent's eval and work models). Paths are absolute: the agent API is not under the
/// Grid API's <c>/api/v1/</c>.
/// </summary>
public sealed partial class HttpGrid
{
    /// <summary>Creates a key for a worker and registers the worker with every one of <paramref name="models"/>; answers the worker's key.</summary>
    public async Task<string> NewWorkerAsync(string accountKey, string name, string[] models)
    {
        var workerKey = await CreateKeyAsync(accountKey, name);
        using var response = await SendAsync(HttpMethod.Post, "worker/register", workerKey,
            new { name, agent_version = "bench", platform = "linux", models = models.Select(m => new { name = m, serves_family = false }).ToArray() });
        using var _ = await ReadAsync(response, HttpStatusCode.Created);
        return workerKey;
    }

    /// <summary>One long-poll for any of <paramref name="models"/>; answers the job and the model it is for, or null on 204.</summary>
    public async Task<(Assignment Job, string Model)?> PollAnyAsync(string workerKey, string[] models, CancellationToken cancellationToken = default)
    {
        var query = string.Join('&', models.Select(m => $"models[]={Uri.EscapeDataString(m)}"));
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseAddress, $"worker/jobs/next?{query}"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", workerKey);
        using var response = await Http.SendAsync(request, cancellationToken);
        var received = Stopwatch.GetTimestamp();
        if (response.StatusCode == HttpStatusCode.NoContent) return null;
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        var root = json.RootElement;
        return (new Assignment(root.GetProperty("job_id").GetInt64(), root.GetProperty("prompt").GetString()!, received), root.GetProperty("model").GetString()!);
    }

    /// <summary><c>POST /api/jobs</c>: a pay-per-job job; answers its id and its eval invoice's payment hash (stub mode shows it).</summary>
    public async Task<(string JobId, string EvalPaymentHash)> CreateAgentJobAsync(string request)
    {
        using var response = await SendAsync(HttpMethod.Post, "/api/jobs", null, new { request });
        using var json = await ReadAsync(response, HttpStatusCode.Created);
        return (json.RootElement.GetProperty("jobId").GetString()!, json.RootElement.GetProperty("evalInvoice").GetProperty("paymentHash").GetString()!);
    }

    /// <summary><c>GET /api/jobs/{id}</c>, which also moves the job on as far as it goes.</summary>
    public async Task<AgentJobStatus> GetAgentJobAsync(string jobId)
    {
        using var response = await SendAsync(HttpMethod.Get, $"/api/jobs/{jobId}", null, null);
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        var root = json.RootElement;
        return new AgentJobStatus(root.GetProperty("state").GetString()!,
            root.TryGetProperty("workInvoice", out var work) ? work.GetProperty("paymentHash").GetString() : null);
    }

    /// <summary><c>POST /api/dev/stub/pay/{paymentHash}</c>: pays a stub invoice, as a payer's wallet would.</summary>
    public async Task StubPayAsync(string paymentHash)
    {
        using var response = await SendAsync(HttpMethod.Post, $"/api/dev/stub/pay/{paymentHash}", null, null);
        using var _ = await ReadAsync(response, HttpStatusCode.OK);
    }

    /// <summary><c>POST /api/sessions</c>: answers the session's id and its deposit invoice's payment hash.</summary>
    public async Task<(string SessionId, string PaymentHash)> OpenSessionAsync(long amountSats)
    {
        using var response = await SendAsync(HttpMethod.Post, "/api/sessions", null, new { amount_sats = amountSats });
        using var json = await ReadAsync(response, HttpStatusCode.Created);
        return (json.RootElement.GetProperty("sessionId").GetString()!, json.RootElement.GetProperty("invoice").GetProperty("paymentHash").GetString()!);
    }

    /// <summary><c>GET /api/sessions/{id}</c>: answers its state and its macaroon (once the deposit is paid).</summary>
    public async Task<(string State, string? Macaroon)> GetSessionAsync(string sessionId)
    {
        using var response = await SendAsync(HttpMethod.Get, $"/api/sessions/{sessionId}", null, null);
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        var root = json.RootElement;
        return (root.GetProperty("state").GetString()!, root.TryGetProperty("macaroon", out var m) ? m.GetString() : null);
    }

    /// <summary><c>POST /api/sessions/{id}/request</c> with the session's macaroon: runs the eval and the work and debits them.</summary>
    public async Task<SessionRequestAnswer> SessionRequestAsync(string sessionId, string macaroon, string request)
    {
        using var response = await SendAsync(HttpMethod.Post, $"/api/sessions/{sessionId}/request", macaroon, new { request });
        using var json = await ReadAsync(response, HttpStatusCode.OK);
        var root = json.RootElement;
        return new SessionRequestAnswer(root.GetProperty("state").GetString()!, root.GetProperty("debitedSats").GetInt64(), root.GetProperty("balanceRemaining").GetInt64());
    }

    /// <summary><c>POST /api/gemini/conversations</c> with a grid API key; answers the conversation's id.</summary>
    public async Task<long> CreateConversationAsync(string key, string title)
    {
        using var response = await SendAsync(HttpMethod.Post, "/api/gemini/conversations", key, new { title });
        using var json = await ReadAsync(response, HttpStatusCode.Created);
        return json.RootElement.GetProperty("id").GetInt64();
    }

    /// <summary>
    /// <c>POST /api/gemini/conversations/{id}/messages</c>: answers once the reply's event stream has begun (its headers
    /// come with the first comment, after the reply's grid job was submitted), with the grid job's id
    /// (<c>X-Grid-Job-Id</c>); the response's body is read as it comes.
    /// </summary>
    public async Task<(HttpResponseMessage Response, long GridJobId)> SendGeminiMessageAsync(string key, long conversationId, string content, string model)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseAddress, $"/api/gemini/conversations/{conversationId}/messages"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Content = JsonContent.Create(new { content, model });
        var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (response.StatusCode != HttpStatusCode.OK || !response.Headers.TryGetValues("X-Grid-Job-Id", out var ids))
        {
            var text = await response.Content.ReadAsStringAsync();
            response.Dispose();
            throw new InvalidOperationException($"POST conversations/{conversationId}/messages: {text}");
        }
        return (response, long.Parse(ids.First(), System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>The <c>content</c> of a Gemini reply's event, or null for its end (<c>done</c>); an <c>error</c> event throws.</summary>
    public static string? GeminiContent(StreamEvent e)
    {
        using var json = JsonDocument.Parse(e.Data);
        var root = json.RootElement;
        if (root.TryGetProperty("content", out var content)) return content.GetString();
        if (root.TryGetProperty("done", out _)) return null;
        throw new InvalidOperationException($"the reply's stream said {e.Data}");
    }
}
