using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Infrastructure;

/// <summary>One Server-Sent Event; comments (keep-alives) are counted by the reader, not returned.</summary>
public sealed record SseEvent(string? Name, string? Id, string Data)
{
    public JsonElement Json => JsonDocument.Parse(Data).RootElement.Clone();
}

/// <summary>Reads an event stream as a browser's EventSource would: event by event, as they arrive.</summary>
public sealed class EventStreamReader : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private EventStreamReader(HttpResponseMessage response, Stream body)
    {
        _response = response;
        _reader = new StreamReader(body, Encoding.UTF8);
    }

    public HttpResponseMessage Response => _response;

    /// <summary>Comment lines seen so far.</summary>
    public int Comments { get; private set; }

    /// <summary>Opens the stream; a response that is not an event stream is returned as it is, body unread.</summary>
    public static async Task<(EventStreamReader? Stream, HttpResponseMessage Response)> OpenAsync(HttpClient http, string? key, string path, string? lastEventId = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path.TrimStart('/'));
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        if (lastEventId is not null) request.Headers.Add("Last-Event-ID", lastEventId);
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(TimeSpan.FromSeconds(10));
        if (response.StatusCode != HttpStatusCode.OK || response.Content.Headers.ContentType?.MediaType != "text/event-stream") return (null, response);
        return (new EventStreamReader(response, await response.Content.ReadAsStreamAsync()), response);
    }

    /// <summary>Sends a request whose answer may be an event stream (a POST, as OpenAI's streaming completions are).</summary>
    public static async Task<(EventStreamReader? Stream, HttpResponseMessage Response)> SendAsync(HttpClient http, HttpRequestMessage request, CancellationToken cancellationToken = default)
    {
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK || response.Content.Headers.ContentType?.MediaType != "text/event-stream") return (null, response);
        return (new EventStreamReader(response, await response.Content.ReadAsStreamAsync(cancellationToken)), response);
    }

    /// <summary>Opens a job's stream, which must be there.</summary>
    public static async Task<EventStreamReader> OpenJobAsync(ApiClient client, long jobId, string? lastEventId = null)
    {
        var (stream, response) = await OpenAsync(client.Http, client.Key, $"jobs/{jobId}/stream", lastEventId);
        if (stream is null) Assert.Fail($"no event stream: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return stream!;
    }

    /// <summary>The next event; null when the stream ended.</summary>
    public async Task<SseEvent?> NextAsync(TimeSpan? timeout = null)
    {
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        string? name = null, id = null;
        var data = new List<string>();
        while (true)
        {
            var line = await _reader.ReadLineAsync(cancel.Token);
            if (line is null) return data.Count > 0 ? new SseEvent(name, id, string.Join('\n', data)) : null;
            if (line.Length == 0)
            {
                if (data.Count > 0 || name is not null) return new SseEvent(name, id, string.Join('\n', data));
                continue;
            }
            if (line.StartsWith(':'))
            {
                Comments++;
                continue;
            }
            var colon = line.IndexOf(':');
            var (field, value) = colon < 0 ? (line, "") : (line[..colon], line[(colon + 1)..].TrimStart(' '));
            switch (field)
            {
                case "event": name = value; break;
                case "id": id = value; break;
                case "data": data.Add(value); break;
            }
        }
    }

    /// <summary>The next event, which must be named <paramref name="name"/>.</summary>
    public async Task<SseEvent> ExpectAsync(string name, TimeSpan? timeout = null)
    {
        var next = await NextAsync(timeout);
        Assert.True(next is not null, $"the stream ended before an event '{name}'");
        Assert.True(next!.Name == name, $"expected event '{name}' but got '{next.Name}': {next.Data}");
        return next;
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        return ValueTask.CompletedTask;
    }
}
