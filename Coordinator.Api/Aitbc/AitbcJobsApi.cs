using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains;
using Coordinator.Grains.Aitbc;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Aitbc;

/// <summary>
/// The spec's Job. Our <c>claimed</c> is AITBC's <c>running</c>; ids are strings. <c>params</c> and <c>error</c> are
/// additions (the generation parameters, and why a failed or cancelled job ended).
/// </summary>
public sealed record AitbcJobDto(
    string JobId,
    string Status,
    string Prompt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Model,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonElement? Params,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Result,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? MinerId,
    DateTime CreatedAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTime? StartedAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTime? CompletedAt)
{
    public static readonly IReadOnlyList<string> Statuses = ["pending", "running", "completed", "failed", "cancelled"];

    public static AitbcJobDto From(AitbcJobRow row) => new(
        row.Id.ToString(CultureInfo.InvariantCulture),
        row.Status == JobStatus.Claimed ? JobStatus.Running : row.Status,
        row.Prompt, row.Model, JobDto.ParseParams(row.Params),
        row.Status == JobStatus.Completed ? row.Output : null,
        row.Error, row.MinerId, row.CreatedAt, row.StartedAt, row.CompletedAt);

    /// <summary>A job id from the path: our ids are positive integers, and anything else names no job.</summary>
    public static long? ParseId(string jobId) =>
        long.TryParse(jobId, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id > 0 ? id : null;
}

/// <summary>The AITBC client operations: <c>/v1/jobs</c>, on the same grid as the Grid API's jobs.</summary>
public static class AitbcJobsApi
{
    public const string DefaultModel = "llama3.2";
    public const int DefaultMaxTokens = 256;
    public const double DefaultTemperature = 0.7;
    public const double DefaultTopP = 0.9;
    public const int DefaultLimit = 20;
    public const int MaxLimit = 100;

    public static IEndpointRouteBuilder MapAitbcJobs(this IEndpointRouteBuilder aitbc)
    {
        var jobs = aitbc.MapGroup("/v1/jobs").RequireAitbcKey();
        jobs.MapPost("", SubmitAsync);
        jobs.MapGet("", ListAsync);
        jobs.MapGet("/{job_id}", GetAsync);
        jobs.MapPost("/{job_id}/cancel", CancelAsync);
        return aitbc;
    }

    /// <summary>
    /// Submits a job: <c>prompt</c> (required), <c>model</c> (default <c>llama3.2</c>; a name without a tag is a family
    /// job any model of the family may run, as on <c>/v1</c>), <c>params</c> with the spec's defaults. 201 with the Job.
    /// </summary>
    public static async Task<IResult> SubmitAsync(HttpContext context, Dispatchers dispatchers, AitbcStore store, IOptions<JobLimitsOptions> limits)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return AitbcFrontDoor.BadRequest(error!);
        var prompt = fields.String("prompt", required: true, maxUtf8Bytes: limits.Value.MaxPromptBytes);
        var model = fields.String("model", maxLength: ModelNames.MaxLength) ?? DefaultModel;
        if (!ModelNames.IsValid(model)) fields.Errors.Add("model is not a valid model name (letters, digits and . _ : / @ + -)");
        var parameters = ReadParams(fields);
        if (!fields.IsValid) return AitbcFrontDoor.BadRequest(string.Join("; ", fields.Errors));

        var caller = context.GetCaller();
        var match = model.Contains(':', StringComparison.Ordinal) ? ModelMatch.Exact : ModelMatch.Family;
        var job = new NewJob(model, match, prompt!, null, limits.Value.DefaultTimeoutSeconds, null, null)
        {
            ParamsJson = JsonSerializer.Serialize(parameters),
            SubmittedByKeyId = caller.KeyId,
        };
        var row = (await dispatchers.Of(job.DispatcherKey).SubmitAsync(caller.AccountId, job)).Row!;
        var submitted = await store.GetAsync(row.Id, caller.AccountId, context.RequestAborted);
        return TypedResults.Created($"/v1/jobs/{row.Id}", AitbcJobDto.From(submitted!));
    }

    // The spec's params with its defaults; the Grid API's other generation parameters (stop, seed) are accepted too.
    private static Dictionary<string, object> ReadParams(JsonFields fields)
    {
        var given = fields.Object("params");
        var parameters = given is null ? [] : JobRequestValidation.ReadParams(given);
        foreach (var unknown in given?.UnknownFields(JobRequestValidation.ParamNames) ?? [])
        {
            fields.Errors.Add($"params.{unknown} is not a known parameter (known: {string.Join(", ", JobRequestValidation.ParamNames)})");
        }
        parameters.TryAdd("max_tokens", DefaultMaxTokens);
        parameters.TryAdd("temperature", DefaultTemperature);
        parameters.TryAdd("top_p", DefaultTopP);
        return parameters;
    }

    /// <summary>The caller's jobs, newest first: <c>status</c> (AITBC's), <c>limit</c> (1–100, default 20), <c>offset</c>.</summary>
    public static async Task<IResult> ListAsync(HttpContext context, AitbcStore store, string? status, string? limit, string? offset)
    {
        var errors = new List<string>();
        if (status is not null && !AitbcJobDto.Statuses.Contains(status)) errors.Add("status must be one of " + string.Join(", ", AitbcJobDto.Statuses));
        var limitValue = JobsApi.ParseInt("limit", limit, DefaultLimit, 1, MaxLimit, errors);
        var offsetValue = JobsApi.ParseInt("offset", offset, 0, 0, int.MaxValue, errors);
        if (errors.Count > 0) return AitbcFrontDoor.BadRequest(string.Join("; ", errors));
        var rows = await store.ListAsync(context.GetCaller().AccountId, status is null ? null : AitbcStore.OurStatuses(status), offsetValue, limitValue, context.RequestAborted);
        return TypedResults.Ok(rows.Select(AitbcJobDto.From).ToList());
    }

    public static async Task<IResult> GetAsync([Microsoft.AspNetCore.Mvc.FromRoute(Name = "job_id")] string jobId, HttpContext context, AitbcStore store)
    {
        var row = AitbcJobDto.ParseId(jobId) is { } id ? await store.GetAsync(id, context.GetCaller().AccountId, context.RequestAborted) : null;
        return row is null ? NoSuchJob(jobId) : TypedResults.Ok(AitbcJobDto.From(row));
    }

    /// <summary>Cancels a job that has not ended, running or not (its worker hears at its next heartbeat, chunk or result); 409 once it ended.</summary>
    public static async Task<IResult> CancelAsync([Microsoft.AspNetCore.Mvc.FromRoute(Name = "job_id")] string jobId, HttpContext context, IGrainFactory grains, AitbcStore store)
    {
        if (AitbcJobDto.ParseId(jobId) is not { } id) return NoSuchJob(jobId);
        var accountId = context.GetCaller().AccountId;
        var result = await grains.GetGrain<IJobGrain>(id).CancelUnfinishedAsync(accountId);
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(AitbcJobDto.From((await store.GetAsync(id, accountId, context.RequestAborted))!)),
            TransitionOutcome.NotFound => NoSuchJob(jobId),
            _ => AitbcFrontDoor.Conflict("job_not_cancellable", $"job {id} is {result.CurrentStatus}: only a job that has not ended can be cancelled"),
        };
    }

    public static IResult NoSuchJob(string jobId) => AitbcFrontDoor.NotFound($"no job '{Truncate(jobId)}' in this account");

    /// <summary>A name the caller sent, short enough to quote in an error.</summary>
    internal static string Truncate(string text) => text.Length <= 80 ? text : JsonText.Truncate(text, 80) + "…";
}
