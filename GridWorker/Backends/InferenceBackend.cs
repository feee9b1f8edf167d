using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;

namespace GridWorker.Backends;

/// <summary>
/// The job's generation parameters (<c>JobAssignment.params</c>): <c>max_tokens</c>, <c>temperature</c>, <c>top_p</c>,
/// <c>stop</c> and <c>seed</c>. Anything else the coordinator may add later is ignored.
/// </summary>
public sealed record GenerationParams(int? MaxTokens, double? Temperature, double? TopP, IReadOnlyList<string>? Stop, long? Seed)
{
    public static readonly GenerationParams None = new(null, null, null, null, null);

    public static GenerationParams From(JsonElement? element)
    {
        if (element is not { ValueKind: JsonValueKind.Object } p) return None;
        IReadOnlyList<string>? stop = null;
        if (p.TryGetProperty("stop", out var s))
        {
            if (s.ValueKind == JsonValueKind.String) stop = [s.GetString()!];
            else if (s.ValueKind == JsonValueKind.Array) stop = s.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!).ToList();
        }
        return new GenerationParams((int?)p.LongOf("max_tokens"), DoubleOf(p, "temperature"), DoubleOf(p, "top_p"), stop, p.LongOf("seed"));
    }

    private static double? DoubleOf(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetDouble() : null;
}

/// <summary>An attachment fetched from its blob URL.</summary>
public sealed record Attachment(long Id, string Type, byte[] Content, string? MediaType);

/// <summary>One message of a conversation in chat form: <c>{"role": "system" | "user" | "assistant", "content": "…"}</c>.</summary>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>
    /// The job's <c>params.messages</c> (jobs that came through the coordinator's OpenAI-compatible front door), or null
    /// when it has none. Messages that are not objects with a string <c>role</c> and <c>content</c> fail the job.
    /// </summary>
    public static IReadOnlyList<ChatMessage>? ListFrom(JsonElement? parameters)
    {
        if (parameters is not { ValueKind: JsonValueKind.Object } p || !p.TryGetProperty("messages", out var messages) || messages.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw new BackendException("params.messages must be a non-empty list of {\"role\", \"content\"} messages");
        }
        return messages.EnumerateArray().Select((message, i) =>
            message.StringOf("role") is { } role && message.StringOf("content") is { } content
                ? new ChatMessage(role, content)
                : throw new BackendException($"params.messages[{i}] must have a string role and a string content")).ToList();
    }
}

/// <summary>
/// A job as a backend runs it: the prompt, or in chat form the job's <see cref="Messages"/> (passed on as they are, and
/// then the prompt is not used).
/// </summary>
public sealed record BackendRequest(string Model, string Prompt, GenerationParams Params, IReadOnlyList<Attachment> Attachments, IReadOnlyList<ChatMessage>? Messages = null)
{
    public IEnumerable<Attachment> Images => Attachments.Where(a => a.Type == "image");

    /// <summary>
    /// The messages to send: the job's own, or one user message holding the prompt. Document attachments are appended
    /// as text to the last user message (neither backend takes files); <see cref="AttachmentsAt"/> is where images go.
    /// </summary>
    public IReadOnlyList<ChatMessage> Conversation()
    {
        List<ChatMessage> messages = Messages is { Count: > 0 } ? [.. Messages] : [new ChatMessage("user", Prompt)];
        var documents = Attachments.Where(a => a.Type != "image").ToList();
        if (documents.Count == 0) return messages;
        var at = AttachmentsAt;
        var text = new System.Text.StringBuilder(messages[at].Content);
        foreach (var document in documents)
        {
            text.Append(CultureInfo.InvariantCulture, $"\n\n--- attachment {document.Id} ---\n").Append(System.Text.Encoding.UTF8.GetString(document.Content));
        }
        messages[at] = messages[at] with { Content = text.ToString() };
        return messages;
    }

    /// <summary>
    /// <see cref="Conversation"/> as both backends' chat APIs take it: <c>{"role", "content"}</c> objects, open to the
    /// fields a backend adds (Ollama's <c>images</c>, OpenAI's content parts).
    /// </summary>
    public List<Dictionary<string, object>> ChatMessages() =>
        Conversation().Select(m => new Dictionary<string, object> { ["role"] = m.Role, ["content"] = m.Content }).ToList();

    /// <summary>The index in <see cref="Conversation"/> of the message that carries the attachments: the last user message.</summary>
    public int AttachmentsAt
    {
        get
        {
            if (Messages is not { Count: > 0 } messages) return 0;
            for (var i = messages.Count - 1; i >= 0; i--)
            {
                if (messages[i].Role == "user") return i;
            }
            return messages.Count - 1;
        }
    }
}

/// <summary>What the backend produced. <see cref="DurationMs"/> is the backend's own measure when it reports one.</summary>
public sealed record BackendResult(string Output, int? InputTokens, int OutputTokens, string ModelUsed, long? DurationMs);

/// <summary>The backend refused or broke off the job; the message is what the client will read.</summary>
public sealed class BackendException(string message) : Exception(message);

/// <summary>The backend does not answer at all.</summary>
public sealed class BackendUnreachableException(string message) : Exception(message);

/// <summary>A local inference server: Ollama or an OpenAI-compatible one.</summary>
public abstract class InferenceBackend(HttpClient http, Uri baseUrl)
{
    protected HttpClient Http { get; } = http;

    public Uri BaseUrl { get; } = baseUrl;

    /// <summary>"Ollama" or "the OpenAI-compatible server", for messages.</summary>
    public abstract string DisplayName { get; }

    /// <summary>The clear start-up error when nothing answers at <see cref="BaseUrl"/>.</summary>
    public abstract string UnreachableMessage { get; }

    public abstract string NoModelsMessage { get; }

    public abstract Task<IReadOnlyList<string>> ListModelsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Runs the job. <paramref name="onText"/>, when given, is called with each piece of the output as the server streams
    /// it, in order, before the next is read; the pieces joined are the result's output. A server that answers one JSON
    /// body instead of a stream (it ignored <c>"stream": true</c>) gives no pieces, only the result.
    /// </summary>
    public abstract Task<BackendResult> GenerateAsync(BackendRequest request, Action<string>? onText, CancellationToken cancellationToken);

    public static InferenceBackend Create(WorkerSettings settings, HttpClient http) => settings.Backend switch
    {
        BackendKind.OpenAi => new OpenAiBackend(http, settings.BackendUrl, settings.BackendApiKey),
        _ => new OllamaBackend(http, settings.BackendUrl),
    };

    protected Uri Endpoint(string path) => new(BaseUrl, BaseUrl.AbsolutePath.TrimEnd('/') + path);

    /// <summary>Sends a request; connection failures become <see cref="BackendUnreachableException"/>.</summary>
    protected async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken, string? apiKey = null)
    {
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        try
        {
            return await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new BackendUnreachableException($"{UnreachableMessage} ({ex.Message})");
        }
    }

    /// <summary>A non-2xx answer as a message: the server's own <c>error</c> text when it gave one.</summary>
    protected async Task<BackendException> ErrorOfAsync(HttpResponseMessage response, string model, CancellationToken cancellationToken)
    {
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        var detail = text.Length > 500 ? text[..500] : text;
        try
        {
            using var body = JsonDocument.Parse(text);
            detail = ErrorText(body.RootElement) ?? detail;
        }
        catch (JsonException)
        {
        }
        return new BackendException($"{DisplayName} answered {(int)response.StatusCode} for {model}: {detail}".TrimEnd(' ', ':'));
    }

    /// <summary>
    /// Whether the answer is a stream (NDJSON, server-sent events) rather than one JSON body, as a server that does not
    /// stream sends even when asked to.
    /// </summary>
    protected static bool IsStream(HttpResponseMessage response) =>
        response.Content.Headers.ContentType?.MediaType is not "application/json";

    /// <summary>One message of a stream (an NDJSON line, an SSE data field); garbage is the backend's failure.</summary>
    protected JsonDocument ParseChunk(string text)
    {
        try
        {
            return JsonDocument.Parse(text);
        }
        catch (JsonException ex)
        {
            throw new BackendException($"{DisplayName} sent a stream message that is not JSON ({ex.Message})");
        }
    }

    /// <summary>Ollama's <c>{"error": "…"}</c> or OpenAI's <c>{"error": {"message": "…"}}</c>.</summary>
    protected static string? ErrorText(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("error", out var error)) return null;
        return error.ValueKind switch
        {
            JsonValueKind.String => error.GetString(),
            JsonValueKind.Object => error.StringOf("message") ?? error.GetRawText(),
            JsonValueKind.Null => null,
            _ => error.GetRawText(),
        };
    }
}
