using System.Text.Json;
using System.Text.Json.Serialization;
using Coordinator.Api.Blobs;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Blobs;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Workers;

public sealed record WorkerRegisterResponse(string WorkerToken, long WorkerId);

/// <summary>The heartbeat's answer: the spec's status, and the jobs of this worker cancelled lately.</summary>
public sealed record HeartbeatDto(string Status, IReadOnlyList<long> CancelledJobs);

public sealed record ModelsUpdatedDto(string Status, int ModelCount);

/// <summary>A chunk's answer: <c>accepted</c> or <c>duplicate</c>, and the index the next chunk should have.</summary>
public sealed record ChunkAcceptedDto(string Status, int NextIndex);

public sealed record BlobRefDto(long Id, string Type, string? Url);

/// <summary>The spec's JobAssignment, plus priority, timeout and attempt so the worker can plan, and the generation <c>params</c>.</summary>
public sealed record JobAssignmentDto(
    long JobId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Model,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ModelFamily,
    string ModelMatch,
    string Prompt,
    IReadOnlyList<BlobRefDto> Blobs,
    int Priority,
    int TimeoutSeconds,
    int Attempt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonElement? Params);

/// <summary>The worker protocol: <c>/api/v1/worker/*</c>.</summary>
public static class WorkersApi
{
    public const int MaxModelsPerWorker = 200;
    public const int MaxErrorLength = 10_000;

    public static RouteGroupBuilder MapWorkers(this IEndpointRouteBuilder routes)
    {
        var worker = routes.MapGroup("/worker").WithTags("Worker");
        // Registration takes any key and binds it; a disabled account gets the spec's 403 here.
        worker.MapPost("/register", RegisterAsync).RequireApiKey(disabledStatus: StatusCodes.Status403Forbidden);

        var bound = worker.MapGroup("/").RequireWorkerKey();
        bound.MapPatch("/heartbeat", HeartbeatAsync);
        bound.MapPatch("/models", UpdateModelsAsync);
        // A long poll is not a request rate but a held request: limited in how many a worker key holds at once.
        bound.MapGet("/jobs/next", NextJobAsync).RequireRateLimiting(RateLimits.RateLimitPolicies.WorkerPolls);
        bound.MapPatch("/jobs/{id:long}/start", StartAsync);
        bound.MapPost("/jobs/{id:long}/chunks", ChunkAsync);
        bound.MapPost("/jobs/{id:long}/result", ResultAsync);
        bound.MapPost("/jobs/{id:long}/fail", FailAsync);
        bound.MapCredits();
        return worker;
    }

    public static async Task<Results<Created<WorkerRegisterResponse>, UnprocessableEntity<ApiError>>> RegisterAsync(
        HttpContext context, WorkerStore workers, AccountStore accounts, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var name = fields.String("name", maxLength: 200);
        if (name is not null && string.IsNullOrWhiteSpace(name)) fields.Errors.Add("name must not be blank");
        var agentVersion = fields.String("agent_version", maxLength: 100);
        var platform = fields.String("platform", maxLength: 100);
        var catchAll = fields.Bool("catch_all") ?? false;
        var models = ReadModels(fields);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var caller = context.GetCaller();
        var workerId = await workers.RegisterAsync(caller.AccountId, caller.KeyId,
            new WorkerRegistration(name?.Trim(), agentVersion, platform, models!, catchAll), context.RequestAborted);
        await grains.GetGrain<IWorkerGrain>(workerId).RegisteredAsync();
        var key = context.GetBearerKey();
        accounts.Forget(key);
        return TypedResults.Created($"/api/v1/worker/{workerId}", new WorkerRegisterResponse(key, workerId));
    }

    /// <summary>
    /// A sign of life; the answer's <c>cancelled_jobs</c> (an addition to the spec) names the jobs this worker held that
    /// were cancelled in the last few minutes (their client went away, or they timed out): the worker should stop them.
    /// </summary>
    public static async Task<Ok<HeartbeatDto>> HeartbeatAsync(HttpContext context, IGrainFactory grains)
    {
        var cancelled = await grains.GetGrain<IWorkerGrain>(context.GetCaller().WorkerId!.Value).HeartbeatAsync();
        return TypedResults.Ok(new HeartbeatDto("ok", cancelled));
    }

    public static async Task<Results<Ok<ModelsUpdatedDto>, UnprocessableEntity<ApiError>>> UpdateModelsAsync(HttpContext context, WorkerStore workers, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var models = ReadModels(fields);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));
        var workerId = context.GetCaller().WorkerId!.Value;
        var count = await workers.UpdateModelsAsync(workerId, models!, context.RequestAborted);
        await grains.GetGrain<IWorkerGrain>(workerId).ModelsChangedAsync();
        return TypedResults.Ok(new ModelsUpdatedDto("updated", count));
    }

    public static async Task<Results<Ok<JobAssignmentDto>, NoContent, UnprocessableEntity<ApiError>>> NextJobAsync(
        HttpContext context, IGrainFactory grains, PollsWaiting waiting, BlobRegistry blobs, PollClaims pollClaims, IHostApplicationLifetime lifetime,
        IOptions<DispatchOptions> dispatch, TimeProvider time)
    {
        var query = context.Request.Query;
        var models = query["models[]"].Concat(query["models"]).Where(m => !string.IsNullOrEmpty(m)).Select(m => m!).Distinct().ToList();
        var families = query["families[]"].Concat(query["families"]).Where(f => !string.IsNullOrEmpty(f)).Select(f => f!).Distinct().ToList();
        var catchAllText = query["catch_all"].ToString();
        bool catchAll = false;
        if (catchAllText.Length > 0 && !bool.TryParse(catchAllText, out catchAll))
        {
            return ApiErrors.InvalidRequest("catch_all must be true or false");
        }
        if (models.Count > MaxModelsPerWorker || families.Count > MaxModelsPerWorker)
        {
            return ApiErrors.InvalidRequest($"declare at most {MaxModelsPerWorker} models and {MaxModelsPerWorker} families");
        }
        var invalid = models.Concat(families).FirstOrDefault(n => !ModelNames.IsValid(n));
        if (invalid is not null) return ApiErrors.InvalidRequest($"'{JsonText.Truncate(invalid, 80)}' is not a valid model or family name");

        // A stopping silo hands out no job: the poll ends at once and the worker polls another silo.
        if (lifetime.ApplicationStopping.IsCancellationRequested) return Stopping(context);
        var workerId = context.GetCaller().WorkerId!.Value;
        var worker = grains.GetGrain<IWorkerGrain>(workerId);
        var capabilities = new Capabilities(models, families, catchAll);
        var slice = new PollSliceId();
        ClaimedJob? job;
        waiting.Enter();
        try
        {
            // A worker that hangs up ends its poll, and so does a silo that is shutting down (204 at once; the worker polls
            // again elsewhere). A poll that declares nothing is served by what the worker registered. The grain waits one
            // slice per call (WorkerGrain.PollSlice), so the poll is called again until its window ends, which ends it too.
            using var window = new CancellationTokenSource(dispatch.Value.LongPollTimeout, time);
            using var ended = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, lifetime.ApplicationStopping, window.Token);
            using var cancel = ended.Token.Register(() => _ = worker.CancelPollAsync(slice.Current));
            while (true)
            {
                var called = System.Diagnostics.Stopwatch.GetTimestamp();
                job = await worker.NextJobAsync(slice.Current, capabilities);
                if (job is not null || ended.IsCancellationRequested) break;
                // An activation letting go (its silo stops) answers at once: call again after a moment, not in a spin.
                if (System.Diagnostics.Stopwatch.GetElapsedTime(called) < TimeSpan.FromMilliseconds(100)) await Task.Delay(50, ended.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (ended.IsCancellationRequested) break;
                slice.Next();
            }
        }
        catch (Exception exception)
        {
            // Only this request could hand the worker a job claimed for this poll: whatever was claimed for it reached
            // nobody, and goes back now rather than after the claim lease.
            await pollClaims.AnswerLostAsync(workerId, slice.Current);
            if (!GrainCallFailures.IsTransient(exception)) throw;
            // The worker grain's silo stopped or died with the poll (a rolling restart): the worker polls again, and its
            // grain comes back on a silo that is up.
            return lifetime.ApplicationStopping.IsCancellationRequested ? Stopping(context) : TypedResults.NoContent();
        }
        finally
        {
            waiting.Leave();
        }
        if (job is null) return lifetime.ApplicationStopping.IsCancellationRequested ? Stopping(context) : TypedResults.NoContent();
        if (context.RequestAborted.IsCancellationRequested)
        {
            // Claimed as the worker hung up: nobody will receive it, so it goes back at once.
            await grains.GetGrain<IJobGrain>(job.Id).ReleaseClaimAsync(workerId);
            return TypedResults.NoContent();
        }
        // Download URLs stay valid for the job's timeout, the longest the worker may hold it.
        var attachments = job.HasBlobs
            ? (await blobs.DownloadLinksAsync(job.Id, TimeSpan.FromSeconds(job.TimeoutSeconds), BlobsApi.PublicBase(context), CancellationToken.None))
                .Select(b => new BlobRefDto(b.Id, b.Type, b.Url.ToString())).ToList()
            : [];
        return TypedResults.Ok(new JobAssignmentDto(job.Id, job.Model, job.Family, job.ModelMatch, job.Prompt, attachments, job.Priority, job.TimeoutSeconds, job.Attempts,
            JobDto.ParseParams(job.Params)));
    }

    /// <summary>The id of the grain call a poll is in now (a cancellation reaches that one): each slice has its own.</summary>
    private sealed class PollSliceId
    {
        private Guid _current = Guid.NewGuid();

        public Guid Current
        {
            get { lock (this) return _current; }
        }

        public void Next()
        {
            lock (this) _current = Guid.NewGuid();
        }
    }

    // The poll's connection closes too: through a load balancer, the worker's next poll opens one to another silo.
    private static NoContent Stopping(HttpContext context)
    {
        context.Response.Headers.Connection = "close";
        return TypedResults.NoContent();
    }

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> StartAsync(long id, HttpContext context, IGrainFactory grains)
    {
        var result = await grains.GetGrain<IWorkerGrain>(context.GetCaller().WorkerId!.Value).StartAsync(id);
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(new StatusDto(JobStatus.Running)),
            TransitionOutcome.NotFound => NotHeld(id),
            _ => ApiErrors.InvalidState($"job {id} is {result.CurrentStatus}; only a claimed job can be started"),
        };
    }

    /// <summary>
    /// A chunk of a running job's output, in order (<c>{"index": 0, "text": "…"}</c>, then 1, 2, …), for clients following
    /// the job's stream. A chunk sent again is answered <c>duplicate</c> and ignored. The result (<c>POST …/result</c>)
    /// still carries the whole output, which should be the chunks joined; a worker that does not stream just sends that.
    /// A job that ended meanwhile (its client cancelled it, it timed out) answers 422 <c>invalid_state</c>: the worker stops.
    /// A chunk out of order, or one past the output's size limit, is 422 <c>invalid_request</c>.
    /// </summary>
    public static async Task<Results<Ok<ChunkAcceptedDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> ChunkAsync(
        long id, HttpContext context, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var index = fields.Int("index", required: true, min: 0);
        var text = fields.String("text", required: true, maxUtf8Bytes: MaxChunkBytes);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var answer = await grains.GetGrain<IJobGrain>(id).AppendChunkAsync(context.GetCaller().WorkerId!.Value, index!.Value, text!);
        return answer.Outcome switch
        {
            ChunkOutcome.Accepted => TypedResults.Ok(new ChunkAcceptedDto("accepted", answer.NextIndex)),
            ChunkOutcome.Duplicate => TypedResults.Ok(new ChunkAcceptedDto("duplicate", answer.NextIndex)),
            ChunkOutcome.NotHeld => NotHeld(id),
            ChunkOutcome.OutOfOrder => ApiErrors.InvalidRequest($"chunk {index} came before chunk {answer.NextIndex}: send the chunks in order"),
            // The only invalid_state: the job ended, and the worker should stop.
            ChunkOutcome.Ended => ApiErrors.InvalidState($"job {id} is {answer.Status}: stop working on it"),
            _ => ApiErrors.InvalidRequest($"the output of job {id} would pass its size limit: its result would be refused too"),
        };
    }

    /// <summary>Largest chunk accepted, in UTF-8 bytes.</summary>
    public const int MaxChunkBytes = 64 * 1024;

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> ResultAsync(
        long id, HttpContext context, IGrainFactory grains, JobStore jobs, IOptions<JobLimitsOptions> limits)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var output = fields.String("output", maxUtf8Bytes: limits.Value.MaxOutputBytes);
        if (output is null && !fields.Has("output")) fields.Errors.Add("output is required");
        var outputTokens = fields.Int("output_tokens", required: true, min: 0);
        var durationMs = fields.Int("duration_ms", required: true, min: 0);
        var inputTokens = fields.Int("input_tokens", min: 0);
        var modelUsed = fields.String("model_used", maxLength: ModelNames.MaxLength);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var workerId = context.GetCaller().WorkerId!.Value;
        var worker = grains.GetGrain<IWorkerGrain>(workerId);
        var jobResult = new JobResult(output!, inputTokens, outputTokens!.Value, durationMs!.Value, modelUsed);
        Transition<string> result;
        try
        {
            result = await worker.CompleteAsync(id, jobResult);
        }
        catch (Exception exception) when (GrainCallFailures.IsTransient(exception))
        {
            // The worker grain's silo stopped or died with the call in flight: the result may have been recorded, or its
            // statement may still be on its way. Sent once more (to the grain's next activation), the conditional
            // completion decides, waiting for a statement that holds the row; a result this worker's first call recorded
            // was accepted, and the worker must hear so (sent again by the worker, it would be refused: completed).
            result = await worker.CompleteAsync(id, jobResult);
            if (result is { Outcome: TransitionOutcome.WrongState, CurrentStatus: JobStatus.Completed }
                && (await jobs.DispatchStateAsync(id)).WorkerId == workerId)
            {
                return TypedResults.Ok(new StatusDto("accepted"));
            }
        }
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(new StatusDto("accepted")),
            TransitionOutcome.NotFound => NotHeld(id),
            _ => ApiErrors.InvalidState($"job {id} is {result.CurrentStatus}; a result is accepted only for a running job"),
        };
    }

    public static async Task<Results<Ok<StatusDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> FailAsync(long id, HttpContext context, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request, allowEmpty: true);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var message = fields.String("error", required: true);
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));

        var result = await grains.GetGrain<IWorkerGrain>(context.GetCaller().WorkerId!.Value).FailAsync(id, JsonText.Truncate(message!, MaxErrorLength));
        return result.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(new StatusDto(JobStatus.Failed)),
            // The spec gives this operation no 422: a job this worker no longer has in hand is not found for it.
            TransitionOutcome.NotFound => NotHeld(id),
            _ => ApiErrors.NotFound($"job {id} is already {result.CurrentStatus}; only a claimed or running job can be failed"),
        };
    }

    private static NotFound<ApiError> NotHeld(long id) => ApiErrors.NotFound($"job {id} is not held by this worker");

    private static List<WorkerModel>? ReadModels(JsonFields fields)
    {
        var items = fields.Array("models", required: true, maxItems: MaxModelsPerWorker);
        if (items is null) return null;
        var models = new List<WorkerModel>();
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            string? name = null;
            var servesFamily = false;
            if (item.ValueKind == JsonValueKind.Object)
            {
                if (item.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String) name = n.GetString();
                if (item.TryGetProperty("serves_family", out var s))
                {
                    if (s.ValueKind is JsonValueKind.True or JsonValueKind.False) servesFamily = s.GetBoolean();
                    else if (s.ValueKind != JsonValueKind.Null) fields.Errors.Add($"models[{i}].serves_family must be true or false");
                }
            }
            else if (item.ValueKind == JsonValueKind.String)
            {
                name = item.GetString(); // a bare name is accepted as { "name": … }
            }
            if (!ModelNames.IsValid(name))
            {
                fields.Errors.Add($"models[{i}].name is required and must be a valid model name");
                continue;
            }
            models.Add(new WorkerModel(name!, servesFamily));
        }
        return models;
    }
}
