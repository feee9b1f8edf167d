using System.Globalization;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Api.OpenAi;
using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Gemini;

/// <summary>
/// <c>POST /api/gemini/generate-image</c>: one grid image job (<see cref="ImageJobs"/>) on a worker with an image backend,
/// waited for and answered as <c>{b64_json, mimeType}</c>. Without an online image worker the answer is a 503 at once;
/// a job no worker takes within <see cref="GeminiOptions.TimeoutSeconds"/> is cancelled and answered 504. A client that
/// goes away abandons its job: no one else wants the image.
/// </summary>
public sealed class GeminiImages(
    IGrainFactory grains, Dispatchers dispatchers, WorkerStore workers, JobStore jobs, TimeProvider time,
    IOptions<GeminiOptions> options, IOptions<JobLimitsOptions> limits)
{
    public async Task<IResult> GenerateAsync(HttpContext context)
    {
        var (fields, error) = await JsonFields.ReadJsonAsync(context.Request);
        if (fields is null) return GeminiErrors.BadRequest(error!);
        var prompt = fields.String("prompt", required: true, maxUtf8Bytes: limits.Value.MaxPromptBytes);
        if (!fields.IsValid) return GeminiErrors.BadRequest(fields.Errors);

        var model = options.Value.ImageModel;
        var modelMatch = OpenAiRequests.ModelMatchOf(model);
        if (await workers.AvailabilityAsync(modelMatch, model, context.RequestAborted) != ModelAvailability.Online)
        {
            context.Response.Headers.RetryAfter = "30";
            return GeminiErrors.Error(StatusCodes.Status503ServiceUnavailable,
                $"no worker serves image generation ('{model}') right now: no online worker has an image backend; try again later");
        }

        var caller = context.GetCaller();
        var timeout = options.Value.TimeoutSeconds;
        var job = new NewJob(model, modelMatch, prompt!, null, timeout, null, null)
        {
            ParamsJson = OpenAiRequests.ParamsJsonOf(new Dictionary<string, object> { ["kind"] = ImageJobs.Kind }, null),
            SubmittedByKeyId = caller.KeyId,
            Watched = true,
        };
        var submittedAt = time.GetUtcNow();
        var row = (await dispatchers.Of(job.DispatcherKey).SubmitAsync(caller.AccountId, job)).Row!;
        context.Response.Headers["X-Grid-Job-Id"] = row.Id.ToString(CultureInfo.InvariantCulture);
        var jobGrain = grains.GetGrain<IJobGrain>(row.Id);
        if (row.Held)
        {
            await jobGrain.CancelAsync(caller.AccountId);
            return GeminiErrors.Error(StatusCodes.Status429TooManyRequests, "this account has reached its daily quota; it resets at midnight UTC");
        }

        var cancellationToken = context.RequestAborted;
        try
        {
            await foreach (var slice in JobStreams.ReadAsync(grains, caller.AccountId, row.Id, default, cancellationToken))
            {
                if (slice.Final is { } final) return Answer(final);
                if (time.GetUtcNow() >= submittedAt.AddSeconds(timeout) && await JobStreams.CancelIfNotTakenAsync(grains, jobs, caller.AccountId, row.Id))
                {
                    return GeminiErrors.Error(StatusCodes.Status504GatewayTimeout, $"no worker took image job {row.Id} within {timeout} seconds; it was cancelled");
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        // The client went away, or this node stops: the image is given up either way.
        await jobGrain.AbandonAsync(caller.AccountId);
        return cancellationToken.IsCancellationRequested
            ? TypedResults.Empty
            : GeminiErrors.Error(StatusCodes.Status503ServiceUnavailable, "this node is stopping; send the request again");
    }

    private static IResult Answer(JobRow job)
    {
        if (job.Status != JobStatus.Completed)
        {
            var timedOut = job.Error?.StartsWith("timed out", StringComparison.Ordinal) == true;
            return GeminiErrors.Error(timedOut ? StatusCodes.Status504GatewayTimeout : StatusCodes.Status502BadGateway,
                $"image job {job.Id} {job.Status}: {job.Error ?? "no reason given"}");
        }
        return ImageJobs.Parse(job.Output ?? "") is var (base64, mimeType)
            ? TypedResults.Json(new GeminiImageDto(base64, mimeType))
            : GeminiErrors.Error(StatusCodes.Status502BadGateway, $"image job {job.Id} completed, but its worker's output is not a base64 data: URL of an image");
    }
}
