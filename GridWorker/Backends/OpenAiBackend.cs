using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace GridWorker.Backends;

/// <summary>
/// Any OpenAI-compatible server. <c>GET /v1/models</c> lists <c>data[].id</c>; <c>POST /v1/chat/completions</c> with
/// <c>"stream": true</c> answers server-sent events: <c>data: {chunk}</c> lines whose <c>choices[0].delta.content</c> carry
/// the text, then (asked for with <c>stream_options.include_usage</c>) a chunk with empty <c>choices</c> and
/// <c>usage</c>, then <c>data: [DONE]</c>. A server that sends no usage gets its output counted one token per content chunk.
/// A server that does not stream answers one <c>application/json</c> <c>chat.completion</c> with <c>choices[0].message</c>.
/// </summary>
public sealed class OpenAiBackend(HttpClient http, Uri baseUrl, string? apiKey) : InferenceBackend(http, baseUrl)
{
    public override string DisplayName => "The OpenAI-compatible server";

    public override string UnreachableMessage =>
        $"The OpenAI-compatible server is not reachable at {BaseUrl.ToString().TrimEnd('/')}. Start it (llama.cpp server, vLLM, LM Studio), or set --backend-url.";

    public override string NoModelsMessage =>
        $"The OpenAI-compatible server at {BaseUrl.ToString().TrimEnd('/')} lists no models in GET /v1/models. Load one, then start grid-worker again.";

    public override async Task<IReadOnlyList<string>> ListModelsAsync(CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Endpoint("/v1/models"));
        using var response = await SendAsync(request, cancellationToken, apiKey);
        if (!response.IsSuccessStatusCode) throw await ErrorOfAsync(response, "GET /v1/models", cancellationToken);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
        if (!body.RootElement.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
        {
            throw new BackendException($"{BaseUrl} answered /v1/models without a data list; is it OpenAI-compatible?");
        }
        return data.EnumerateArray().Select(m => m.StringOf("id")).OfType<string>().Distinct().ToList();
    }

    public override async Task<BackendResult> GenerateAsync(BackendRequest job, Action<string>? onText, CancellationToken cancellationToken)
    {
        var messages = job.ChatMessages();
        var images = job.Images.ToList();
        if (images.Count > 0)
        {
            var withImages = messages[job.AttachmentsAt];
            var parts = new List<object> { new { type = "text", text = (string)withImages["content"] } };
            parts.AddRange(images.Select(i => new
            {
                type = "image_url",
                image_url = new { url = $"data:{i.MediaType ?? "image/png"};base64,{Convert.ToBase64String(i.Content)}" },
            }));
            withImages["content"] = parts;
        }
        var payload = new Dictionary<string, object>
        {
            ["model"] = job.Model,
            ["messages"] = messages,
            ["stream"] = true,
            ["stream_options"] = new { include_usage = true },
        };
        if (job.Params.Temperature is { } temperature) payload["temperature"] = temperature;
        if (job.Params.TopP is { } topP) payload["top_p"] = topP;
        if (job.Params.MaxTokens is { } maxTokens) payload["max_tokens"] = maxTokens;
        if (job.Params.Stop is { Count: > 0 } stop) payload["stop"] = stop;
        if (job.Params.Seed is { } seed) payload["seed"] = seed;

        using var request = new HttpRequestMessage(HttpMethod.Post, Endpoint("/v1/chat/completions")) { Content = JsonContent.Create(payload) };
        using var response = await SendAsync(request, cancellationToken, apiKey);
        if (!response.IsSuccessStatusCode) throw await ErrorOfAsync(response, job.Model, cancellationToken);

        if (!IsStream(response)) return await CompletionOfAsync(response, job.Model, cancellationToken);
        var output = new StringBuilder();
        var contentChunks = 0;
        int? promptTokens = null, completionTokens = null;
        var modelUsed = job.Model;
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            // Server-sent events: only data lines matter; comments (":"), event names and blank separators do not.
            if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
            var data = line[5..].Trim();
            if (data == "[DONE]")
            {
                return new BackendResult(output.ToString(), promptTokens, completionTokens ?? contentChunks, modelUsed, null);
            }
            using var chunk = ParseChunk(data);
            var root = chunk.RootElement;
            if (ErrorText(root) is { } error) throw new BackendException($"The OpenAI-compatible server failed while generating with {job.Model}: {error}");
            modelUsed = root.StringOf("model") ?? modelUsed;
            if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0 &&
                choices[0].TryGetProperty("delta", out var delta) && delta.StringOf("content") is { Length: > 0 } piece)
            {
                output.Append(piece);
                onText?.Invoke(piece);
                contentChunks++;
            }
            if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
            {
                promptTokens = (int?)usage.LongOf("prompt_tokens") ?? promptTokens;
                completionTokens = (int?)usage.LongOf("completion_tokens") ?? completionTokens;
            }
        }
        throw new BackendException($"The OpenAI-compatible server's stream for {job.Model} ended without data: [DONE] (the server may have stopped)");
    }

    /// <summary>A whole <c>chat.completion</c>: <c>choices[0].message.content</c> and <c>usage</c>.</summary>
    private async Task<BackendResult> CompletionOfAsync(HttpResponseMessage response, string model, CancellationToken cancellationToken)
    {
        using var body = ParseChunk(await response.Content.ReadAsStringAsync(cancellationToken));
        var root = body.RootElement;
        if (ErrorText(root) is { } error) throw new BackendException($"The OpenAI-compatible server failed while generating with {model}: {error}");
        var output = root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0 &&
            choices[0].TryGetProperty("message", out var message) ? message.StringOf("content") ?? "" : "";
        var usage = root.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object ? u : default;
        // Without usage the whole answer counts as one chunk, as a stream's chunks count one token each.
        var completionTokens = (int?)usage.LongOf("completion_tokens") ?? (output.Length > 0 ? 1 : 0);
        return new BackendResult(output, (int?)usage.LongOf("prompt_tokens"), completionTokens, root.StringOf("model") ?? model, null);
    }
}
