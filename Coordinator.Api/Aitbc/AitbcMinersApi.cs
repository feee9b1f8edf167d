using System.Text.RegularExpressions;
using Coordinator.Api.Infrastructure;
using Coordinator.Grains;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Aitbc;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Aitbc;

/// <summary>What <c>POST /v1/miners/register</c> answers: the miner, the worker it is on the grid, and the models it serves.</summary>
public sealed record MinerRegisteredDto(string MinerId, long WorkerId, string Status, IReadOnlyList<string> Capabilities);

/// <summary>
/// The AITBC miner operations. A miner is a worker: registering binds the key to it, as the Grid API's
/// <c>/worker/register</c> does, and every later call names the miner and must come with that key. Miners serve the whole
/// grid: the jobs they see and take are any account's, the Grid API's included, and grid-workers run AITBC jobs alike.
/// </summary>
public static partial class AitbcMinersApi
{
    public const int MaxMinerIdLength = 100;
    public const int MaxCapabilities = 200;

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$")]
    private static partial Regex MinerIdPattern();

    [GeneratedRegex(@"^worker-[0-9]+$")]
    private static partial Regex WorkerNamePattern();

    public static IEndpointRouteBuilder MapAitbcMiners(this IEndpointRouteBuilder aitbc)
    {
        aitbc.MapPost("/v1/miners/register", RegisterAsync).RequireAitbcKey();
        var jobs = aitbc.MapGroup("/v1/jobs").RequireAitbcKey();
        jobs.MapGet("/available", AvailableAsync);
        jobs.MapPost("/{job_id}/claim", ClaimAsync);
        jobs.MapPost("/{job_id}/complete", CompleteAsync);
        return aitbc;
    }

    /// <summary>
    /// Registers or updates a miner: <c>capabilities</c> are the model names it serves (a name serves its family's jobs
    /// too), <c>gpu_info</c> is kept as its platform. 409 when another account's miner has the id.
    /// </summary>
    public static async Task<IResult> RegisterAsync(HttpContext context, WorkerStore workers, AccountStore accounts, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return AitbcFrontDoor.BadRequest(error!);
        var minerId = ReadMinerId(fields.String("miner_id", required: true, maxLength: MaxMinerIdLength), fields.Errors);
        var capabilities = new List<string>();
        var items = fields.Array("capabilities", required: true, maxItems: MaxCapabilities);
        for (var i = 0; i < (items?.Count ?? 0); i++)
        {
            if (items![i].ValueKind == System.Text.Json.JsonValueKind.String && ModelNames.IsValid(items[i].GetString())) capabilities.Add(items[i].GetString()!);
            else fields.Errors.Add($"capabilities[{i}] must be a model name (letters, digits and . _ : / @ + -)");
        }
        var gpu = fields.Object("gpu_info");
        var gpuName = gpu?.String("name", maxLength: 200);
        var gpuMemory = gpu?.String("memory", maxLength: 100);
        if (!fields.IsValid) return AitbcFrontDoor.BadRequest(string.Join("; ", fields.Errors));

        var caller = context.GetCaller();
        var platform = gpuName is null && gpuMemory is null ? null : string.Join(", ", new[] { gpuName, gpuMemory }.Where(part => !string.IsNullOrWhiteSpace(part)));
        var models = capabilities.Distinct(StringComparer.Ordinal).Select(name => new WorkerModel(name, ServesFamily: true)).ToList();
        var workerId = await workers.RegisterMinerAsync(caller.AccountId, caller.KeyId, minerId!, models, platform, context.RequestAborted);
        if (workerId is null) return AitbcFrontDoor.Conflict("miner_id_taken", $"the miner id '{minerId}' is registered by another account: choose another");
        await grains.GetGrain<IWorkerGrain>(workerId.Value).RegisteredAsync();
        accounts.Forget(context.GetBearerKey());
        return TypedResults.Created($"/v1/miners/{minerId}", new MinerRegisteredDto(minerId!, workerId.Value, "registered", models.Select(m => m.Name).ToList()));
    }

    /// <summary>One job the miner's registered models can take now (the best by priority, then age), without taking it; <c>null</c> when there is none.</summary>
    public static async Task<IResult> AvailableAsync(HttpContext context, AitbcStore store, IGrainFactory grains, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "miner_id")] string? minerId)
    {
        var (workerId, refusal) = await MinerOfCallerAsync(context, store, minerId);
        if (refusal is not null) return refusal;
        var best = await grains.GetGrain<IWorkerGrain>(workerId).PeekAsync();
        var row = best is null ? null : await store.GetAsync(best.Id, accountId: null, context.RequestAborted);
        // No job is the JSON literal null, as the spec has it ("Available job or null").
        return row is null ? TypedResults.Text("null", "application/json") : TypedResults.Ok(AitbcJobDto.From(row));
    }

    /// <summary>Takes a job for the miner: it is running for it from now. 409 when another miner has it, it ended, or the miner does not serve its model.</summary>
    public static async Task<IResult> ClaimAsync([Microsoft.AspNetCore.Mvc.FromRoute(Name = "job_id")] string jobId, HttpContext context, AitbcStore store, IGrainFactory grains)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return AitbcFrontDoor.BadRequest(error!);
        var minerId = fields.String("miner_id", required: true, maxLength: MaxMinerIdLength);
        if (!fields.IsValid) return AitbcFrontDoor.BadRequest(string.Join("; ", fields.Errors));
        var (workerId, refusal) = await MinerOfCallerAsync(context, store, minerId);
        if (refusal is not null) return refusal;
        if (AitbcJobDto.ParseId(jobId) is not { } id) return NoSuchJob(jobId);

        var claimed = await grains.GetGrain<IWorkerGrain>(workerId).ClaimJobAsync(id);
        return claimed.Outcome switch
        {
            TransitionOutcome.Done => TypedResults.Ok(AitbcJobDto.From((await store.GetAsync(id, accountId: null, context.RequestAborted))!)),
            TransitionOutcome.NotFound => NoSuchJob(jobId),
            _ => claimed.CurrentStatus switch
            {
                JobStatus.Claimed or JobStatus.Running => AitbcFrontDoor.Conflict("already_claimed", $"job {id} is already claimed by another miner"),
                "not_served" => AitbcFrontDoor.Conflict("model_not_served", $"miner '{minerId}' does not serve the model of job {id}: register it with that model first"),
                "held" => AitbcFrontDoor.Conflict("job_held", $"job {id} is held until its account's daily quota resets"),
                var status => AitbcFrontDoor.Conflict("job_not_available", $"job {id} is {status}: it can no longer be claimed"),
            },
        };
    }

    /// <summary>
    /// The miner's result for a job it holds: the job completes and the answer is its signed receipt. <c>completed_at</c>
    /// is accepted but the coordinator's clock decides the receipt's times; <c>tokens</c> (an addition: the output tokens,
    /// e.g. Ollama's <c>eval_count</c>) counts toward the miner's credits.
    /// </summary>
    public static async Task<IResult> CompleteAsync([Microsoft.AspNetCore.Mvc.FromRoute(Name = "job_id")] string jobId, HttpContext context, AitbcStore store,
        Coordinator.Grains.Receipts.ReceiptStore receipts, IGrainFactory grains, TimeProvider time, IOptions<JobLimitsOptions> limits)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return AitbcFrontDoor.BadRequest(error!);
        var minerId = fields.String("miner_id", required: true, maxLength: MaxMinerIdLength);
        var result = fields.String("result", required: true, maxUtf8Bytes: limits.Value.MaxOutputBytes);
        var tokens = fields.Int("tokens", min: 0);
        var completedAt = fields.String("completed_at", maxLength: 100);
        if (completedAt is not null && !DateTimeOffset.TryParse(completedAt, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out _))
        {
            fields.Errors.Add("completed_at must be an ISO 8601 date-time");
        }
        if (!fields.IsValid) return AitbcFrontDoor.BadRequest(string.Join("; ", fields.Errors));
        var (workerId, refusal) = await MinerOfCallerAsync(context, store, minerId);
        if (refusal is not null) return refusal;
        if (AitbcJobDto.ParseId(jobId) is not { } id) return NoSuchJob(jobId);

        var held = await store.GetAsync(id, accountId: null, context.RequestAborted);
        var started = held?.StartedAt is { } at ? new DateTimeOffset(at, TimeSpan.Zero) : time.GetUtcNow();
        var durationMs = (int)Math.Clamp((time.GetUtcNow() - started).TotalMilliseconds, 0, int.MaxValue);
        var worker = grains.GetGrain<IWorkerGrain>(workerId);
        var done = await worker.CompleteAsync(id, new JobResult(result!, null, tokens ?? 0, durationMs, null));
        if (done.Outcome == TransitionOutcome.WrongState && done.CurrentStatus == JobStatus.Claimed)
        {
            // Taken by a Grid API poll of this worker and never started: it runs now.
            await worker.StartAsync(id);
            done = await worker.CompleteAsync(id, new JobResult(result!, null, tokens ?? 0, durationMs, null));
        }
        return done.Outcome switch
        {
            // The miner's account owns the provider: it may read the receipt, served as stored.
            TransitionOutcome.Done => await receipts.LatestOfJobAsync(context.GetCaller().AccountId, id, context.RequestAborted) is { } receipt
                ? TypedResults.Text(receipt.Body, "application/json", System.Text.Encoding.UTF8)
                : TypedResults.Ok(AitbcJobDto.From((await store.GetAsync(id, accountId: null, context.RequestAborted))!)),
            TransitionOutcome.NotFound => AitbcFrontDoor.NotFound($"job {id} is not held by miner '{minerId}'"),
            _ when done.CurrentStatus == JobStatus.Completed => AitbcFrontDoor.Conflict("already_completed", $"job {id} is already completed: a result is accepted once"),
            _ => AitbcFrontDoor.Conflict("job_not_running", $"job {id} is {done.CurrentStatus}: a result is accepted only for a job the miner is running"),
        };
    }

    private static IResult NoSuchJob(string jobId) => AitbcFrontDoor.NotFound($"no job '{AitbcJobsApi.Truncate(jobId)}'");

    private static string? ReadMinerId(string? minerId, List<string> errors)
    {
        if (minerId is null) return null;
        if (!MinerIdPattern().IsMatch(minerId)) errors.Add("miner_id must start with a letter or digit and hold only letters, digits and . _ : @ -");
        else if (WorkerNamePattern().IsMatch(minerId)) errors.Add("miner_id must not look like 'worker-<number>': that is how workers without a miner id are named");
        return minerId;
    }

    /// <summary>
    /// The worker behind the named miner, which must be the caller's: a miner of another account, or none, is not found;
    /// the account's miner bound to another key is 403.
    /// </summary>
    private static async Task<(long WorkerId, IResult? Refusal)> MinerOfCallerAsync(HttpContext context, AitbcStore store, string? minerId)
    {
        if (string.IsNullOrEmpty(minerId)) return (0, AitbcFrontDoor.BadRequest("miner_id is required"));
        // A name no miner can have (PostgreSQL would refuse a NUL in it) is looked up nowhere.
        var caller = context.GetCaller();
        var miner = minerId.Length <= MaxMinerIdLength && MinerIdPattern().IsMatch(minerId) ? await store.FindMinerAsync(minerId, context.RequestAborted) : null;
        if (miner is null || miner.AccountId != caller.AccountId)
        {
            return (0, AitbcFrontDoor.NotFound($"no miner '{AitbcJobsApi.Truncate(minerId)}' is registered in this account: POST /v1/miners/register first"));
        }
        if (caller.WorkerId != miner.WorkerId)
        {
            // Bound moments ago, maybe on another node: read the key again before refusing.
            var bound = await CallerAuthentication.AuthenticateKeyAsync(context, context.GetBearerKey(), needWorker: true) is null
                ? context.GetCaller().WorkerId
                : null;
            if (bound != miner.WorkerId)
            {
                return (0, AitbcFrontDoor.Error(StatusCodes.Status403Forbidden, "miner_mismatch",
                    $"this API key is not the key of miner '{minerId}': register the miner with this key, or use its key"));
            }
        }
        return (miner.WorkerId, null);
    }
}
