using System.Text.Json;
using System.Text.Json.Serialization;
using System.ComponentModel.DataAnnotations;
using Coordinator.Grains.Jobs;

namespace Coordinator.Api.Jobs;

/// <summary>
/// The spec's Job. Beyond the spec it carries <c>error</c> (the failure or cancellation reason, where public
/// clients of this API read it), <c>attempts</c>, <c>model_used</c>, <c>webhook_url</c>, the claim/start times and <c>held</c> (pending, but paused until the account's daily quota resets), and for a paid priority boost
/// <c>boost_status</c> (charged or failed) with <c>boost_error</c> saying why a charge failed.
/// </summary>
public sealed record JobDto(
    long JobId,
    string Status,
    string? Model,
    string ModelMatch,
    string? Output,
    int? InputTokens,
    int? OutputTokens,
    int? DurationMs,
    int Priority,
    int TimeoutSeconds,
    string? Tag,
    DateTime CreatedAt,
    DateTime? CompletedAt,
    string? Error,
    int Attempts,
    string? ModelUsed,
    string? WebhookUrl,
    DateTime? ClaimedAt,
    DateTime? StartedAt,
    bool Held,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? BoostStatus,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? BoostError,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonElement? Params)
{
    public static JobDto From(JobRow row) => new(
        row.Id, row.Status, row.Model, row.ModelMatch, row.Output, row.InputTokens, row.OutputTokens, row.DurationMs,
        row.Priority, row.TimeoutSeconds, row.Tag, row.CreatedAt, row.CompletedAt, row.Error, row.Attempts, row.ModelUsed,
        row.WebhookUrl, row.ClaimedAt, row.StartedAt, row.Held, row.BoostStatus, row.BoostError, ParseParams(row.Params));

    public static JsonElement? ParseParams(string? json) => json is null ? null : JsonDocument.Parse(json).RootElement.Clone();
}

public sealed record StatusDto(string Status);

public sealed record PriorityDto(int Priority);

public sealed record CancelledCountDto(int Cancelled);

/// <summary>Generation parameters (an addition to the spec): passed to the worker as given.</summary>
public sealed record GenerationParams(
    [property: Range(1, 32768)] int? MaxTokens,
    [property: Range(0.0, 2.0)] double? Temperature,
    [property: Range(0.0, 1.0)] double? TopP,
    string[]? Stop,
    int? Seed);

/// <summary>The body of POST /jobs as the served OpenAPI document describes it (the spec's JobCreateRequest plus <c>params</c>).</summary>
public sealed record JobCreateDocument(
    [property: Required] string Prompt,
    string? Model,
    string? ModelMatch,
    int? Priority,
    int? TimeoutSeconds,
    string? Tag,
    Uri? WebhookUrl,
    bool? PriorityBoost,
    long[]? BlobIds,
    GenerationParams? Params);
