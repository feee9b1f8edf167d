using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using Coordinator.Api.Aitbc;
using Coordinator.Grains.Jobs;

namespace Coordinator.Api.Jobs;

/// <summary>
/// The spec's Job. Beyond the spec it carries <c>error</c> (the failure or cancellation reason, where public
/// clients of this API read it), <c>attempts</c>, <c>model_used</c>, <c>webhook_url</c>, the claim/start times and <c>held</c> (pending, but paused until the account's daily quota resets), and for a paid priority boost
/// <c>boost_status</c> (charged or failed) with <c>boost_error</c> saying why a charge failed.
/// A pending job in the answer of <c>GET /jobs/{id}</c> also carries where it stands (<see cref="QueueStanding"/>):
/// <c>queue_position</c>, <c>eta_seconds</c> (null when there is no rate to go on) and <c>warnings</c>; in the 201 of
/// <c>POST /jobs</c> it carries <c>warnings</c> only (a submission reads nothing more); other jobs, and the entries of
/// <c>GET /jobs</c>, carry none of the three.
/// A job with a signed receipt (issue #17: every completed job has one) carries <c>receipt_id</c> and <c>receipt_url</c>,
/// the receipt's address on the AITBC front door (<see cref="ReceiptsApi.UrlOf"/>), in <c>GET /jobs/{id}</c>,
/// <c>GET /jobs</c> and webhook bodies.
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
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonElement? Params,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    [property: Description("Only on a pending job in GET /jobs/{id}: dispatchable jobs that the workers able to take it would take first (priority, then age, in the sets it belongs to). Exact up to 1000; a value above 1000 is an estimate.")]
    long? QueuePosition = null,
    [property: Description("Seconds until a worker takes the job at its workers' recent rate; null when there is none to go on. Only on a pending job, beside queue_position.")]
    long? EtaSeconds = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    [property: Description("Only on a pending job (GET /jobs/{id} and the 201 of POST /jobs): what stands in its way, e.g. \"no online worker serves this model\". Empty when nothing does.")]
    IReadOnlyList<string>? Warnings = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    [property: Description("The id of the job's signed receipt (AITBC), once it has one.")]
    string? ReceiptId = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    [property: Description("Where to read the signed receipt: GET with the X-Api-Key header on the AITBC API. Absent from a webhook body unless Aitbc:PublicBaseUrl is configured.")]
    string? ReceiptUrl = null)
{
    /// <summary>
    /// Serialisation rule: <c>eta_seconds</c> is written whenever <c>queue_position</c> is (it may be null then), and
    /// never on a job without one. A modifier of the API's JSON options.
    /// </summary>
    public static void WriteEtaWithPosition(JsonTypeInfo typeInfo)
    {
        if (typeInfo.Type != typeof(JobDto)) return;
        foreach (var property in typeInfo.Properties)
        {
            if (property.Name == "eta_seconds") property.ShouldSerialize = (job, _) => ((JobDto)job).QueuePosition is not null;
        }
    }

    /// <summary>The job with where it stands, when it is pending.</summary>
    public static JobDto From(JobRow row, QueueStanding? standing) => standing is null
        ? From(row)
        : From(row) with { QueuePosition = standing.Position, EtaSeconds = standing.EtaSeconds, Warnings = standing.Warnings };

    public static JobDto From(JobRow row) => new(
        row.Id, row.Status, row.Model, row.ModelMatch, row.Output, row.InputTokens, row.OutputTokens, row.DurationMs,
        row.Priority, row.TimeoutSeconds, row.Tag, row.CreatedAt, row.CompletedAt, row.Error, row.Attempts, row.ModelUsed,
        row.WebhookUrl, row.ClaimedAt, row.StartedAt, row.Held, row.BoostStatus, row.BoostError, ParseParams(row.Params),
        ReceiptId: row.ReceiptId);

    /// <summary>The job with its receipt's address, when it has a receipt (see <see cref="ReceiptsApi.UrlOf"/>).</summary>
    public JobDto LinkReceipt(AitbcOptions aitbc, HttpRequest? request) =>
        ReceiptId is null ? this : this with { ReceiptUrl = ReceiptsApi.UrlOf(ReceiptId, aitbc, request) };

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
