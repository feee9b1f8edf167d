using System.Text;
using System.Text.Json;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains;
using Coordinator.Grains.Jobs;

namespace Coordinator.Api.OpenAi;

/// <summary>A chat message as the job carries it to the worker (<c>params.messages</c>).</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>A validated <c>/v1/chat/completions</c> or <c>/v1/completions</c> request: the grid job it makes, and how to answer.</summary>
/// <param name="Chat">A chat completion (else the legacy text completion).</param>
/// <param name="Model">The model as the client named it.</param>
/// <param name="ModelMatch">The family rule: a name without a tag is a family job, a full name exact.</param>
/// <param name="Prompt">The job's prompt: the text, or the messages flattened for display.</param>
/// <param name="ParamsJson">The job's <c>params</c>: the generation parameters, and the messages of a chat.</param>
/// <param name="Stream">Answer with chunks as Server-Sent Events.</param>
/// <param name="IncludeUsage">A streamed answer ends with a chunk of usage (<c>stream_options.include_usage</c>).</param>
/// <param name="MaxTokens">The client's token limit, if any (an answer that reached it finished for <c>length</c>).</param>
public sealed record CompletionRequest(
    bool Chat, string Model, string ModelMatch, string Prompt, string ParamsJson, bool Stream, bool IncludeUsage, int? MaxTokens);

/// <summary>
/// Reads OpenAI's request bodies into grid jobs. Fields this grid has no use for (<c>user</c>, <c>logit_bias</c>,
/// <c>tools</c>, …) are ignored, as OpenAI-compatible servers commonly do; a field whose meaning the grid cannot honour
/// (<c>n</c> above 1, image content) is refused.
/// </summary>
public static class OpenAiRequests
{
    /// <summary>Most messages in one chat request.</summary>
    public const int MaxMessages = 10_000;

    /// <summary>The roles a message may have; <c>developer</c> (OpenAI's newer name for <c>system</c>) is passed on as <c>system</c>.</summary>
    public static readonly IReadOnlyList<string> Roles = ["system", "developer", "user", "assistant", "tool"];

    public static (CompletionRequest? Request, IReadOnlyList<string> Errors) ReadChat(JsonFields fields, JobLimitsOptions limits)
    {
        var messages = ReadMessages(fields);
        var prompt = messages is null ? null : PromptOf(messages);
        if (prompt is not null && Encoding.UTF8.GetByteCount(prompt) > limits.MaxPromptBytes)
        {
            fields.Errors.Add($"messages is larger than the limit of {limits.MaxPromptBytes} bytes");
        }
        return Read(fields, chat: true, prompt, messages);
    }

    public static (CompletionRequest? Request, IReadOnlyList<string> Errors) ReadText(JsonFields fields, JobLimitsOptions limits)
    {
        string? prompt = null;
        if (fields.Root.TryGetProperty("prompt", out var value) && value.ValueKind == JsonValueKind.Array)
        {
            // OpenAI also takes a batch of prompts, or token ids: one prompt is one job, so only a batch of one string.
            if (value.GetArrayLength() == 1 && value[0].ValueKind == JsonValueKind.String)
            {
                // The same bounds as a prompt sent as a string.
                prompt = value[0].GetString();
                if (string.IsNullOrEmpty(prompt) || System.Text.Encoding.UTF8.GetByteCount(prompt) > limits.MaxPromptBytes)
                {
                    fields.Errors.Add($"prompt must be 1 to {limits.MaxPromptBytes} bytes of UTF-8");
                    prompt = null;
                }
            }
            else fields.Errors.Add("prompt must be a string (a batch of prompts, or token ids, is not supported: send one request per prompt)");
        }
        else
        {
            prompt = fields.String("prompt", required: true, maxUtf8Bytes: limits.MaxPromptBytes);
        }
        if (prompt is not null && prompt.Contains('\0', StringComparison.Ordinal))
        {
            fields.Errors.Add("prompt must not contain NUL (\\u0000) characters");
            prompt = null;
        }
        if (fields.Bool("echo") == true) fields.Errors.Add("echo is not supported");
        return Read(fields, chat: false, prompt, null);
    }

    private static (CompletionRequest?, IReadOnlyList<string>) Read(JsonFields fields, bool chat, string? prompt, List<ChatMessage>? messages)
    {
        var model = fields.String("model", required: true, maxLength: ModelNames.MaxLength);
        var n = fields.Int("n", min: 1, max: int.MaxValue);
        if (n > 1) fields.Errors.Add("n must be 1: each request is one grid job with one answer (send n requests for n answers)");
        var stream = fields.Bool("stream") ?? false;
        var includeUsage = fields.Object("stream_options")?.Bool("include_usage") ?? false;
        var parameters = JobRequestValidation.ReadParams(fields,
            maxTokensField: chat && fields.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens", stopMayBeString: true);
        if (!fields.IsValid || prompt is null || model is null) return (null, fields.Errors);

        var request = new CompletionRequest(chat, model, ModelMatchOf(model), prompt, ParamsJsonOf(parameters, messages), stream, includeUsage,
            parameters.TryGetValue("max_tokens", out var max) ? (int)max : null);
        return (request, []);
    }

    /// <summary>The family rule of this front door: a model named without a tag is a family job, one with a tag exact.</summary>
    public static string ModelMatchOf(string model) =>
        model.Contains(':', StringComparison.Ordinal) ? Grains.Jobs.ModelMatch.Exact : Grains.Jobs.ModelMatch.Family;

    /// <summary>A chat's job prompt: its messages flattened for display (<c>role: content</c>, a line each); the worker reads <c>params.messages</c>.</summary>
    public static string PromptOf(IEnumerable<ChatMessage> messages) => string.Join('\n', messages.Select(m => $"{m.Role}: {m.Content}"));

    /// <summary>A job's <c>params</c> as the worker reads them: the generation parameters, and the messages of a chat.</summary>
    public static string ParamsJsonOf(IReadOnlyDictionary<string, object> parameters, IReadOnlyList<ChatMessage>? messages)
    {
        var paramsJson = new Dictionary<string, object>(parameters);
        if (messages is not null) paramsJson["messages"] = messages;
        return JsonSerializer.Serialize(paramsJson, ParamsJson);
    }

    // The job's params as the worker reads them: snake_case like the rest of the API.
    private static readonly JsonSerializerOptions ParamsJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private static List<ChatMessage>? ReadMessages(JsonFields fields)
    {
        var items = fields.Array("messages", required: true, maxItems: MaxMessages);
        if (items is null) return null;
        if (items.Count == 0)
        {
            fields.Errors.Add("messages must hold at least one message");
            return null;
        }
        var messages = new List<ChatMessage>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            var where = $"messages[{i}]";
            var item = items[i];
            if (item.ValueKind != JsonValueKind.Object)
            {
                fields.Errors.Add($"{where} must be an object with a role and a content");
                return null;
            }
            var role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : null;
            if (role is null || !Roles.Contains(role))
            {
                fields.Errors.Add($"{where}.role must be one of {string.Join(", ", Roles)}");
                return null;
            }
            if (Content(item, where, fields) is not { } content) return null;
            messages.Add(new ChatMessage(role == "developer" ? "system" : role, content));
        }
        return messages;
    }

    /// <summary>A message's text: a string, or the text parts of a content array joined by line breaks; other parts (images, audio, files) are refused.</summary>
    private static string? Content(JsonElement message, string where, JsonFields fields)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            // An assistant message that only called tools has no content.
            return "";
        }
        string? text = null;
        if (content.ValueKind == JsonValueKind.String) text = content.GetString();
        else if (content.ValueKind == JsonValueKind.Array)
        {
            var parts = new StringBuilder();
            foreach (var part in content.EnumerateArray())
            {
                var type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                if (type is not ("text" or "input_text"))
                {
                    fields.Errors.Add(type is null
                        ? $"{where}.content parts must be objects with a type"
                        : $"{where}.content has a part of type '{type}': this grid runs text models, only text parts are supported");
                    return null;
                }
                if (!part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
                {
                    fields.Errors.Add($"{where}.content text parts must have a text string");
                    return null;
                }
                if (parts.Length > 0) parts.Append('\n');
                parts.Append(partText.GetString());
            }
            text = parts.ToString();
        }
        if (text is null)
        {
            fields.Errors.Add($"{where}.content must be a string or an array of text parts");
            return null;
        }
        if (text.Contains('\0', StringComparison.Ordinal))
        {
            fields.Errors.Add($"{where}.content must not contain NUL (\\u0000) characters");
            return null;
        }
        return text;
    }
}
