using System.Text.Json.Serialization;
using Coordinator.Grid.Jobs;

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
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? BoostError)
{
    public static JobDto From(JobRow row) => new(
        row.Id, row.Status, row.Model, row.ModelMatch, row.Output, row.InputTokens, row.OutputTokens, row.DurationMs,
        row.Priority, row.TimeoutSeconds, row.Tag, row.CreatedAt, row.CompletedAt, row.Error, row.Attempts, row.ModelUsed,
        row.WebhookUrl, row.ClaimedAt, row.StartedAt, row.Held, row.BoostStatus, row.BoostError);
}

public sealed record StatusDto(string Status);

public sealed record PriorityDto(int Priority);

public sealed record CancelledCountDto(int Cancelled);
