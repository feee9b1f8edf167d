using System.Globalization;
using Coordinator.Api.Aitbc;
using Coordinator.Api.Billing;
using Coordinator.Api.Infrastructure;
using Coordinator.Grains;
using Coordinator.Grains.Blobs;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Webhooks;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Jobs;

/// <summary>The client's jobs: <c>/api/v1/jobs</c>.</summary>
public static class JobsApi
{
    public const int DefaultLimit = 50;
    public const int MaxLimit = 200;

    public static RouteGroupBuilder MapJobs(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/jobs").WithTags("Jobs").RequireApiKey();
        group.MapPost("/", SubmitAsync).Accepts<JobCreateDocument>("application/json").AddOpenApiOperationTransformer(IdempotencyKeys.DescribeAsync);
        group.MapGet("/", ListAsync);
        group.MapDelete("/cancel_all", CancelAllAsync);
        group.MapGet("/{id:long}", GetAsync);
        group.MapGet("/{id:long}/stream", StreamAsync)
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .Produces<ApiError>(StatusCodes.Status404NotFound);
        group.MapDelete("/{id:long}", CancelAsync);
        group.MapPatch("/{id:long}/priority", ChangePriorityAsync);
        group.MapPost("/{id:long}/retry", RetryAsync);
        return group;
    }

    /// <summary>Submits a job; with an <c>Idempotency-Key</c>, a retry of the same request answers the job the key made.</summary>
    public static async Task<Results<Created<JobDto>, UnprocessableEntity<ValidationErrors>>> SubmitAsync(
        HttpContext context, JobStore jobs, Dispatchers dispatchers, PriorityBoosts boosts, NetworkGuard networkGuard, WebhookSender webhooks, BlobRegistry blobs,
        QueueStandings standings, IOptions<JobLimitsOptions> limits)
    {
        var (idempotencyKey, keyProblem) = IdempotencyKeys.Read(context.Request);
        if (keyProblem is not null) return ApiErrors.Validation([keyProblem]);
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.Validation([error!]);
        var (job, errors, wantsBoost) = JobRequestValidation.Validate(fields, limits.Value);
        if (job is null) return ApiErrors.Validation(errors);
        if (idempotencyKey is not null) job = job with { Idempotency = new IdempotencyKey(idempotencyKey, IdempotencyKeys.RequestHash(fields.Root)) };

        var caller = context.GetCaller();
        if (await blobs.UnattachableAsync(caller.AccountId, job.BlobIds, context.RequestAborted) is { Count: > 0 } unattachable)
        {
            return ApiErrors.Validation(["blob_ids: not a confirmed blob of this account: " + string.Join(", ", unattachable)]);
        }
        job = job with { SubmittedByKeyId = caller.KeyId };
        if (job.WebhookUrl is not null)
        {
            // The SSRF guard: checked here on the resolved addresses, and again when the webhook is sent.
            if (await networkGuard.CheckUrlAsync(new Uri(job.WebhookUrl), context.RequestAborted) is { } refused)
            {
                return ApiErrors.Validation([$"webhook_url is not allowed: {refused}"]);
            }
            job = job with { ProtectedKey = webhooks.ProtectKey(context.GetBearerKey()) };
        }

        var accountId = caller.AccountId;
        try
        {
            if (wantsBoost)
            {
                // A retry must not pay again: the job its key made is the answer, found before charging.
                if (job.Idempotency is { } key && await jobs.FindByIdempotencyKeyAsync(accountId, key, context.RequestAborted) is { } earlier)
                {
                    return await CreatedAsync(earlier);
                }
                // Charged before the job exists: without a saved payment method no job is created at all.
                var (boost, refusal) = await boosts.ChargeAsync(accountId, context.RequestAborted);
                if (boost is null) return ApiErrors.Validation([refusal!]);
                job = job with { Boost = boost };
            }
            // The job's dispatcher inserts it, and hands it straight to a worker waiting there if there is one.
            var submitted = await dispatchers.Of(job.DispatcherKey).SubmitAsync(accountId, job);
            if (submitted.KeyReused) throw new IdempotencyKeyReusedException();
            return await CreatedAsync(submitted.Row!);
        }
        catch (IdempotencyKeyReusedException reused)
        {
            return ApiErrors.Validation([reused.Message]);
        }

        // A replay answers as the first request did: 201 with the job (as it is now, with its warnings) and its location.
        async Task<Created<JobDto>> CreatedAsync(JobRow row) =>
            TypedResults.Created($"/api/v1/jobs/{row.Id}", JobDto.From(row) with { Warnings = await standings.WarningsAsync(row, context.RequestAborted) });
    }

    public static async Task<Results<Ok<List<JobDto>>, UnprocessableEntity<ValidationErrors>>> ListAsync(
        HttpContext context, JobStore jobs, IOptions<AitbcOptions> aitbc,
        string? status, string? model, string? tag, string? from, string? to, string? offset, string? limit)
    {
        var errors = new List<string>();
        if ((model ?? "").Contains('\0', StringComparison.Ordinal) || (tag ?? "").Contains('\0', StringComparison.Ordinal)) errors.Add("model and tag must not contain NUL characters");
        if (status is not null && !JobStatus.All.Contains(status)) errors.Add("status must be one of " + string.Join(", ", JobStatus.All));
        var fromTime = ParseTime("from", from, errors);
        var toTime = ParseTime("to", to, errors);
        var offsetValue = ParseInt("offset", offset, 0, 0, int.MaxValue, errors);
        var limitValue = ParseInt("limit", limit, DefaultLimit, 1, MaxLimit, errors);
        if (errors.Count > 0) return ApiErrors.Validation(errors);

        var rows = await jobs.ListAsync(context.GetCaller().AccountId,
            new JobQuery(status, model, tag, fromTime, toTime, offsetValue, limitValue), context.RequestAborted);
        return TypedResults.Ok(rows.Select(row => JobDto.From(row).LinkReceipt(aitbc.Value, context.Request)).ToList());
    }

    /// <summary>The job; while it is pending, with where it stands (<see cref="QueueStanding"/>); once it has a signed receipt, with a link to it.</summary>
    public static async Task<Results<Ok<JobDto>, NotFound<ApiError>>> GetAsync(long id, HttpContext context, JobStore jobs, QueueStandings standings, IOptions<AitbcOptions> aitbc)
    {
        var row = await jobs.GetAsync(context.GetCaller().AccountId, id, context.RequestAborted);
        if (row is null) return ApiErrors.NotFound($"no job {id} in this account");
        return TypedResults.Ok(JobDto.From(row, await standings.OfAsync(row, context.RequestAborted)).LinkReceipt(aitbc.Value, context.Request));
    }

    /// <summary>
    /// The job's output as Server-Sent Events: what was produced so far, then chunks as the worker sends them
    /// (<c>event: chunk</c>, data <c>{"text", "offset"}</c>, the offset being where the text starts), then <c>event: job</c> with the job as <c>GET /jobs/{id}</c>
    /// shows it, and the stream ends. Each event's id is its place in the stream; a client that reconnects with
    /// <c>Last-Event-ID</c> resumes there. <c>event: restart</c> says the job went back to the queue after it had started:
    /// the text so far is void. <c>event: replace</c> (data <c>{"text"}</c>) says the worker's final result is not the
    /// text streamed: the result is the output.
    /// </summary>
    public static async Task<Results<EmptyHttpResult, NotFound<ApiError>>> StreamAsync(
        long id, HttpContext context, IGrainFactory grains, IHostApplicationLifetime lifetime,
        Microsoft.Extensions.Options.IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json)
    {
        var options = json.Value.SerializerOptions;
        var from = StreamPosition.Parse(context.Request.Headers["Last-Event-ID"]);
        // A stopping node ends its streams at once: their clients reconnect, with Last-Event-ID, to a node that stays.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, lifetime.ApplicationStopping);
        var ct = stop.Token;
        SseWriter? sse = null;
        try
        {
            await foreach (var slice in JobStreams.ReadAsync(grains, context.GetCaller().AccountId, id, from, ct))
            {
                if (slice.NotFound) return ApiErrors.NotFound($"no job {id} in this account");
                sse ??= SseWriter.Start(context);
                if (slice.Restarted) await sse.EventAsync("restart", new StreamPosition(slice.Generation, 0).ToString(), "{}", ct);
                if (slice.Text.Length > 0)
                {
                    await sse.EventAsync("chunk", new StreamPosition(slice.Generation, slice.Offset).ToString(), new ChunkEvent(slice.Text, slice.Offset - slice.Text.Length), options, ct);
                }
                if (slice.Final is { } job)
                {
                    if (slice.Replaced) await sse.EventAsync("replace", null, new ReplaceEvent(job.Output ?? ""), options, ct);
                    await sse.EventAsync("job", new StreamPosition(slice.Generation, slice.Offset).ToString(), JobDto.From(job), options, ct);
                }
                else if (slice.Text.Length == 0 && !slice.Restarted)
                {
                    await sse.CommentAsync("keep-alive", ct);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away, or this node stops; the job goes on.
        }
        return TypedResults.Empty;
    }

    private sealed record ChunkEvent(string Text, int Offset);

    private sealed record ReplaceEvent(string Text);

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> CancelAsync(long id, HttpContext context, IGrainFactory grains)
    {
        var result = await grains.GetGrain<IJobGrain>(id).CancelAsync(context.GetCaller().AccountId);
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(new StatusDto(JobStatus.Cancelled)),
            TransitionOutcome.NotFound => ApiErrors.NotFound($"no job {id} in this account"),
            _ => ApiErrors.InvalidState($"job {id} is {result.CurrentStatus}; only pending jobs can be cancelled"),
        };
    }

    public static async Task<Ok<CancelledCountDto>> CancelAllAsync(HttpContext context, JobStore jobs, Dispatchers dispatchers, IGrainFactory grains)
    {
        var (cancelled, watched) = await jobs.CancelAllPendingAsync(context.GetCaller().AccountId, context.RequestAborted);
        await dispatchers.RemoveAsync(cancelled);
        // Their streams end.
        foreach (var id in watched) _ = grains.GetGrain<IJobGrain>(id).EndedAsync();
        return TypedResults.Ok(new CancelledCountDto(cancelled.Count));
    }

    public static async Task<Results<Ok<PriorityDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> ChangePriorityAsync(
        long id, HttpContext context, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var delta = fields.Int("priority", required: true, min: -1_000_000, max: 1_000_000);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));
        if (delta == 0) return ApiErrors.InvalidRequest("priority is a signed delta and must not be 0");

        var result = await grains.GetGrain<IJobGrain>(id).ChangePriorityAsync(context.GetCaller().AccountId, delta!.Value);
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(new PriorityDto(result.Value!.Priority)),
            TransitionOutcome.NotFound => ApiErrors.NotFound($"no job {id} in this account"),
            _ => ApiErrors.InvalidState($"job {id} is {result.CurrentStatus}; only pending jobs can change priority"),
        };
    }

    public static async Task<Results<Ok<JobDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> RetryAsync(long id, HttpContext context, IGrainFactory grains)
    {
        var result = await grains.GetGrain<IJobGrain>(id).RetryAsync(context.GetCaller().AccountId);
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(JobDto.From(result.Value!)),
            TransitionOutcome.NotFound => ApiErrors.NotFound($"no job {id} in this account"),
            _ => ApiErrors.InvalidState($"job {id} is {result.CurrentStatus}; only failed jobs can be retried"),
        };
    }

    private static DateTimeOffset? ParseTime(string name, string? value, List<string> errors)
    {
        if (value is null) return null;
        if (DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time)) return time;
        errors.Add($"{name} must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z");
        return null;
    }

    internal static int ParseInt(string name, string? value, int fallback, int min, int max, List<string> errors)
    {
        if (value is null) return fallback;
        if (int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max) return number;
        errors.Add($"{name} must be an integer from {min} to {max}");
        return fallback;
    }
}
