using System.Text.Json.Serialization;

namespace Coordinator.Api.OpenAi;

// OpenAI's response objects, as its API reference spells them (snake_case by the API's JSON settings). Fields the grid
// cannot fill (system_fingerprint, refusal) are left out; logprobs is always null.

public sealed record OpenAiUsage(int PromptTokens, int CompletionTokens, int TotalTokens)
{
    public static OpenAiUsage Of(Coordinator.Grains.Jobs.JobRow job) =>
        new(job.InputTokens ?? 0, job.OutputTokens ?? 0, (job.InputTokens ?? 0) + (job.OutputTokens ?? 0));
}

public sealed record AssistantMessage(string Role, string Content);

public sealed record ChatChoice(int Index, AssistantMessage Message, string FinishReason, object? Logprobs = null);

/// <summary><c>chat.completion</c>.</summary>
public sealed record ChatCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, OpenAiUsage Usage);

public sealed record ChatDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

public sealed record ChatChunkChoice(int Index, ChatDelta Delta, string? FinishReason, object? Logprobs = null);

/// <summary><c>chat.completion.chunk</c>: one streamed event.</summary>
public sealed record ChatCompletionChunk(
    string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] OpenAiUsage? Usage = null);

public sealed record TextChoice(string Text, int Index, string? FinishReason, object? Logprobs = null);

/// <summary><c>text_completion</c>: the legacy completion, whole or one streamed event of it.</summary>
public sealed record TextCompletion(
    string Id, string Object, long Created, string Model, IReadOnlyList<TextChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] OpenAiUsage? Usage = null);

public sealed record OpenAiModel(string Id, string Object, long Created, string OwnedBy);

public sealed record OpenAiModelList(string Object, IReadOnlyList<OpenAiModel> Data);
