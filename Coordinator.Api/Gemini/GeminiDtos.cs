using System.Text.Json.Serialization;
using Coordinator.Grains.Gemini;

namespace Coordinator.Api.Gemini;

// The spec's schemas name their fields in camelCase (b64_json aside), where the Grid API's JSON is snake_case: every
// field is named here, so the host's naming policy cannot reach them.

/// <summary>The spec's <c>GeminiConversation</c>.</summary>
public sealed record GeminiConversationDto(
    [property: JsonPropertyName("id")] long Id,
    [property: JsonPropertyName("title")] string Title,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt)
{
    public static GeminiConversationDto Of(Conversation conversation) => new(conversation.Id, conversation.Title, GeminiTime.Of(conversation.CreatedAt));
}

/// <summary>The spec's <c>GeminiMessage</c>.</summary>
public sealed record GeminiMessageDto(
    [property: JsonPropertyName("id")] long Id,
    [property: JsonPropertyName("conversationId")] long ConversationId,
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string Content,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt)
{
    public static GeminiMessageDto Of(ConversationMessage message) =>
        new(message.Id, message.ConversationId, message.Role, message.Content, GeminiTime.Of(message.CreatedAt));
}

/// <summary>The spec's <c>GeminiConversationWithMessages</c>.</summary>
public sealed record GeminiConversationWithMessagesDto(
    [property: JsonPropertyName("id")] long Id,
    [property: JsonPropertyName("title")] string Title,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("messages")] IReadOnlyList<GeminiMessageDto> Messages);

/// <summary>The spec's <c>GenerateGeminiImageResponse</c>.</summary>
public sealed record GeminiImageDto(
    [property: JsonPropertyName("b64_json")] string B64Json,
    [property: JsonPropertyName("mimeType")] string MimeType);

/// <summary>The spec's <c>GeminiError</c>: <c>{"error": "…"}</c>, a sentence that says what went wrong.</summary>
public sealed record GeminiError([property: JsonPropertyName("error")] string Error);

/// <summary>The events of a reply's stream: <c>{"content"}</c> as the worker writes, then <c>{"done": true}</c> or <c>{"error"}</c>.</summary>
public sealed record GeminiContentEvent([property: JsonPropertyName("content")] string Content);

public sealed record GeminiDoneEvent(
    [property: JsonPropertyName("done")] bool Done,
    [property: JsonPropertyName("messageId")] long? MessageId);

internal static class GeminiTime
{
    /// <summary>PostgreSQL's <c>timestamptz</c> as UTC, written in ISO 8601 with its offset.</summary>
    public static DateTimeOffset Of(DateTime utc) => new(DateTime.SpecifyKind(utc, DateTimeKind.Utc));
}

/// <summary>The only way the gemini endpoints fail before a stream starts: a status and the spec's <c>GeminiError</c>.</summary>
public static class GeminiErrors
{
    public static IResult Error(int status, string message) => TypedResults.Json(new GeminiError(message), statusCode: status);

    public static IResult BadRequest(string message) => Error(StatusCodes.Status400BadRequest, message);

    public static IResult BadRequest(IReadOnlyList<string> problems) => BadRequest(string.Join("; ", problems));

    public static IResult ConversationNotFound(long id) =>
        Error(StatusCodes.Status404NotFound, $"conversation {id} not found (it does not exist, or it belongs to another account)");
}
