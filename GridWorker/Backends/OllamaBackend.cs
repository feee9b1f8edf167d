using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace GridWorker.Backends;

/// <summary>
/// Ollama's native API. <c>GET /api/tags</c> lists the models; <c>POST /api/chat</c> with <c>"stream": true</c> answers
/// newline-delimited JSON objects, each carrying a piece of <c>message.content</c>; the last has <c>"done": true</c> and
/// the counts (<c>prompt_eval_count</c>, <c>eval_count</c>) and <c>total_duration</c> in nanoseconds. An error arrives
/// as <c>{"error": "…"}</c>, as the body of a non-2xx answer or as a line of the stream. A server that does not stream
/// answers one <c>application/json</c> body shaped like the last message, with the whole <c>message.content</c>.
/// </summary>
public sealed class OllamaBackend(HttpClient http, Uri baseUrl) : InferenceBackend(http, baseUrl)
{
    public override string DisplayName => "Ollama";

    public override string UnreachableMessage =>
        $"Ollama is not reachable at {BaseUrl.ToString().TrimEnd('/')}. Start it with `ollama serve`, or set --backend-url.";

    public override string NoModelsMessage =>
        $"Ollama at {BaseUrl.ToString().TrimEnd('/')} has no models. Pull one with `ollama pull llama3:8b`, then start grid-worker again.";

    public override async Task<IReadOnlyList<string>> ListModelsAsync(CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Endpoint("/api/tags"));
        using var response = await SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode) throw await ErrorOfAsync(response, "GET /api/tags", cancellationToken);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
        if (!body.RootElement.TryGetProperty("models", out var models) || models.ValueKind != JsonValueKind.Array)
        {
            throw new BackendException($"{BaseUrl} answered /api/tags without a models list; is it Ollama? (for other servers use --backend openai)");
        }
        return models.EnumerateArray().Select(m => m.StringOf("name") ?? m.StringOf("model")).OfType<string>().Distinct().ToList();
    }

    public override async Task<BackendResult> GenerateAsync(BackendRequest job, Action<string>? onText, CancellationToken cancellationToken)
    {
        var options = new Dictionary<string, object>();
        if (job.Params.Temperature is { } temperature) options["temperature"] = temperature;
        if (job.Params.TopP is { } topP) options["top_p"] = topP;
        if (job.Params.MaxTokens is { } maxTokens) options["num_predict"] = maxTokens;
        if (job.Params.Stop is { Count: > 0 } stop) options["stop"] = stop;
        if (job.Params.Seed is { } seed) options["seed"] = seed;
        var images = job.Images.Select(i => Convert.ToBase64String(i.Content)).ToList();
        var messages = job.ChatMessages();
        if (images.Count > 0) messages[job.AttachmentsAt]["images"] = images;
        var payload = new Dictionary<string, object> { ["model"] = job.Model, ["messages"] = messages, ["stream"] = true };
        if (options.Count > 0) payload["options"] = options;

        using var request = new HttpRequestMessage(HttpMethod.Post, Endpoint("/api/chat")) { Content = JsonContent.Create(payload) };
        using var response = await SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode) throw await ErrorOfAsync(response, job.Model, cancellationToken);

        if (!IsStream(response))
        {
            using var whole = ParseChunk(await response.Content.ReadAsStringAsync(cancellationToken));
            if (ErrorText(whole.RootElement) is { } error) throw new BackendException($"Ollama failed while generating with {job.Model}: {error}");
            return Finished(whole.RootElement, TextOf(whole.RootElement) ?? "", job.Model);
        }
        var output = new StringBuilder();
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0) continue;
            using var chunk = ParseChunk(line);
            var root = chunk.RootElement;
            if (ErrorText(root) is { } error) throw new BackendException($"Ollama failed while generating with {job.Model}: {error}");
            if (TextOf(root) is { Length: > 0 } piece)
            {
                output.Append(piece);
                onText?.Invoke(piece);
            }
            if (root.TryGetProperty("done", out var done) && done.ValueKind == JsonValueKind.True) return Finished(root, output.ToString(), job.Model);
        }
        throw new BackendException($"Ollama's stream for {job.Model} ended before the final \"done\" message (the server may have stopped)");
    }

    /// <summary>A message's text: <c>message.content</c> from <c>/api/chat</c>, <c>response</c> from <c>/api/generate</c>.</summary>
    private static string? TextOf(JsonElement message) =>
        message.TryGetProperty("message", out var chat) ? chat.StringOf("content") : message.StringOf("response");

    /// <summary>The result from the last message (<c>"done": true</c>), which carries the counts and the time in nanoseconds.</summary>
    private static BackendResult Finished(JsonElement last, string output, string model) => new(
        output,
        (int?)last.LongOf("prompt_eval_count"),
        (int)(last.LongOf("eval_count") ?? 0),
        last.StringOf("model") ?? model,
        last.LongOf("total_duration") / 1_000_000);
}
