using System.Globalization;
using System.Text.Json;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.OpenAi;

/// <summary>
/// The OpenAI-compatible front door, <c>/v1</c> on the main port: each completion request is a grid job, submitted as
/// <c>POST /api/v1/jobs</c> submits one (same dispatcher, same quota, same credits for the worker), then waited for or
/// streamed through its grain as <c>GET /jobs/{id}/stream</c> streams it. Not in the Grid API's OpenAPI document: its
/// contract is OpenAI's.
/// </summary>
/// <remarks>
/// The handlers return <see cref="IResult"/> rather than <c>Results&lt;…&gt;</c>: every failure is one OpenAI error
/// object, and a stream writes its own response.
/// </remarks>
public static class OpenAiApi
{
    public static RouteGroupBuilder MapOpenAi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1").ExcludeFromDescription().AddEndpointFilter(AuthenticateAsync);
        group.MapPost("/chat/completions", (HttpContext context, OpenAiCompletions completions) => completions.RunAsync(context, chat: true));
        group.MapPost("/completions", (HttpContext context, OpenAiCompletions completions) => completions.RunAsync(context, chat: false));
        group.MapGet("/models", ListModelsAsync);
        return group;
    }

    /// <summary>Our API keys as <c>Authorization: Bearer</c>, refused in OpenAI's words (its SDKs raise <c>AuthenticationError</c>).</summary>
    private static async ValueTask<object?> AuthenticateAsync(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next)
    {
        var context = invocation.HttpContext;
        return await CallerAuthentication.AuthenticateAsync(context, needWorker: false) switch
        {
            null => await next(invocation),
            AuthenticationFailure.NoKey => OpenAiErrors.InvalidKey(context, "You didn't provide an API key: send one of this grid's keys as 'Authorization: Bearer vk_live_…'."),
            AuthenticationFailure.AccountDisabled => OpenAiErrors.Error(context, StatusCodes.Status403Forbidden, "This account is disabled.", "permission_error", code: "account_disabled"),
            _ => OpenAiErrors.InvalidKey(context, "Incorrect API key provided: it is not a key of this grid, or it has been revoked."),
        };
    }

    /// <summary><c>GET /v1/models</c>: the models that an online worker serves now, by their full names.</summary>
    public static async Task<IResult> ListModelsAsync(HttpContext context, WorkerStore workers)
    {
        var models = await workers.ListModelsAsync(context.RequestAborted);
        // created: when a worker first advertised the model to this grid.
        return TypedResults.Json(new OpenAiModelList("list", models.Select(m =>
            new OpenAiModel(m.Name, "model", new DateTimeOffset(DateTime.SpecifyKind(m.CreatedAt, DateTimeKind.Utc)).ToUnixTimeSeconds(), "grid")).ToList()));
    }
}

/// <summary>One completion request, chat or legacy, from its body to its answer.</summary>
public sealed class OpenAiCompletions(
    IGrainFactory grains, Dispatchers dispatchers, WorkerStore workers, JobStore jobs, TimeProvider time,
    IOptions<JobLimitsOptions> limits, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json)
{
    private JsonSerializerOptions Json => json.Value.SerializerOptions;

    public async Task<IResult> RunAsync(HttpContext context, bool chat)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request);
        if (fields is null) return OpenAiErrors.BadRequest(context, error!);
        var (request, errors) = chat ? OpenAiRequests.ReadChat(fields, limits.Value) : OpenAiRequests.ReadText(fields, limits.Value);
        if (request is null) return OpenAiErrors.BadRequest(context, errors);
        if (!ModelNames.IsValid(request.Model)) return OpenAiErrors.ModelNotFound(context, request.Model);

        // Refused at once rather than queued: a job nobody can take would keep the client waiting until its timeout.
        switch (await workers.AvailabilityAsync(request.ModelMatch, request.Model, context.RequestAborted))
        {
            case ModelAvailability.Unknown: return OpenAiErrors.ModelNotFound(context, request.Model);
            case ModelAvailability.Offline: return OpenAiErrors.NoOnlineWorker(context, request.Model);
        }

        var caller = context.GetCaller();
        var timeout = limits.Value.DefaultTimeoutSeconds;
        var job = new NewJob(request.Model, request.ModelMatch, request.Prompt, null, timeout, null, null)
        {
            ParamsJson = request.ParamsJson,
            SubmittedByKeyId = caller.KeyId,
            // Its client follows it from the start: its end reaches its grain without a first read marking it.
            Watched = true,
        };
        var submittedAt = time.GetUtcNow();
        var row = (await dispatchers.Of(job.DispatcherKey).SubmitAsync(caller.AccountId, job)).Row!;
        context.Response.Headers["X-Grid-Job-Id"] = row.Id.ToString(CultureInfo.InvariantCulture);
        if (row.Held)
        {
            // POST /jobs accepts a job over quota and holds it until midnight UTC; an OpenAI client expects a 429 instead.
            await grains.GetGrain<IJobGrain>(row.Id).CancelAsync(caller.AccountId);
            var now = time.GetUtcNow();
            return OpenAiErrors.QuotaReached(context, now.UtcDateTime.Date.AddDays(1) - now.UtcDateTime);
        }
        var run = new Run(request, row.Id, caller.AccountId, submittedAt, timeout);
        return request.Stream ? await StreamAsync(context, run) : await WaitAsync(context, run);
    }

    /// <summary>What one request follows.</summary>
    private sealed record Run(CompletionRequest Request, long JobId, long AccountId, DateTimeOffset SubmittedAt, int TimeoutSeconds)
    {
        public string Id => (Request.Chat ? "chatcmpl-" : "cmpl-") + JobId.ToString(CultureInfo.InvariantCulture);

        public long Created => SubmittedAt.ToUnixTimeSeconds();

        /// <summary>OpenAI's finish reason: <c>length</c> when the worker produced as many tokens as the client allowed.</summary>
        public string FinishReason(JobRow job) => Request.MaxTokens is { } max && job.OutputTokens >= max ? "length" : "stop";
    }

    private async Task<IResult> WaitAsync(HttpContext context, Run run)
    {
        var cancellationToken = context.RequestAborted;
        var taken = false;
        try
        {
            await foreach (var slice in JobStreams.ReadAsync(grains, run.AccountId, run.JobId, default, cancellationToken))
            {
                if (slice.Final is { } job) return Answer(context, run, job);
                taken |= slice.Text.Length > 0;
                if (!taken && await NotTakenAsync(run) is { } notTaken) return OpenAiErrors.JobEnded(context, notTaken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await AbandonAsync(run);
            return TypedResults.Empty;
        }
        // The stream ended without the job: the client went away, or this node stops. The job is given up either way, and
        // a client still there sends the request again.
        await AbandonAsync(run);
        if (cancellationToken.IsCancellationRequested) return TypedResults.Empty;
        return OpenAiErrors.Error(context, StatusCodes.Status503ServiceUnavailable, NodeStopping.Message, NodeStopping.Type, code: NodeStopping.Code, retry: true);
    }

    /// <summary>A request cut short because its node stops: it may be sent again, to any node.</summary>
    private static readonly OpenAiError NodeStopping = new("this node is stopping; send the request again", "server_error", null, "node_stopping");

    private IResult Answer(HttpContext context, Run run, JobRow job)
    {
        if (job.Status != JobStatus.Completed) return OpenAiErrors.JobEnded(context, JobEnd.Of(job));
        var model = job.ModelUsed ?? run.Request.Model;
        var output = job.Output ?? "";
        var usage = OpenAiUsage.Of(job);
        return run.Request.Chat
            ? TypedResults.Json(new ChatCompletion(run.Id, "chat.completion", run.Created, model,
                [new ChatChoice(0, new AssistantMessage("assistant", output), run.FinishReason(job))], usage), Json)
            : TypedResults.Json(new TextCompletion(run.Id, "text_completion", run.Created, model,
                [new TextChoice(output, 0, run.FinishReason(job))], usage), Json);
    }

    /// <summary>
    /// Streams the job's output as OpenAI's chunks. A job that goes back to the queue after it started (its worker went
    /// missing) runs again from the start, and what was sent cannot be taken back: the new run's text is held back until
    /// it passes what was sent, and only the part beyond is sent, as long as the two agree; when they differ the stream
    /// ends with an error event (code <c>stream_restarted</c>) and the job is cancelled, as no one reads it any more.
    /// A completed job's output that does not begin with the text sent ends the stream with an error event (code
    /// <c>output_mismatch</c>; the job stands, <c>GET /api/v1/jobs/{id}</c> shows its output).
    /// </summary>
    private async Task<IResult> StreamAsync(HttpContext context, Run run)
    {
        var cancellationToken = context.RequestAborted;
        var sse = SseWriter.Start(context);
        var relay = new StreamRelay();
        var taken = false;
        try
        {
            if (run.Request.Chat) await ChunkAsync(sse, run, new ChatDelta("assistant", ""), null, cancellationToken);
            else await sse.CommentAsync("job " + run.JobId.ToString(CultureInfo.InvariantCulture), cancellationToken);

            await foreach (var slice in JobStreams.ReadAsync(grains, run.AccountId, run.JobId, default, cancellationToken))
            {
                if (slice.Final is { } job)
                {
                    await EndAsync(sse, run, job, relay, cancellationToken);
                    return TypedResults.Empty;
                }
                if (relay.Take(slice) is not { } fresh)
                {
                    await ErrorEventAsync(sse, new OpenAiError(
                        $"grid job {run.JobId} went back to the queue after its worker went missing, and its new run differs from the text already sent",
                        "server_error", null, "stream_restarted"), cancellationToken);
                    await AbandonAsync(run);
                    return TypedResults.Empty;
                }
                if (slice.Text.Length > 0)
                {
                    taken = true;
                    if (fresh.Length > 0) await ContentAsync(sse, run, fresh, cancellationToken);
                }
                else if (!slice.Restarted)
                {
                    if (!taken && await NotTakenAsync(run) is { } notTaken)
                    {
                        await ErrorEventAsync(sse, notTaken.Error, cancellationToken);
                        return TypedResults.Empty;
                    }
                    await sse.CommentAsync("keep-alive", cancellationToken);
                }
            }
        }
        catch (Exception exception) when (cancellationToken.IsCancellationRequested && exception is OperationCanceledException or IOException)
        {
            // The client went away.
            await AbandonAsync(run);
            return TypedResults.Empty;
        }
        // The stream ended without the job: the client went away, or this node stops.
        if (!cancellationToken.IsCancellationRequested) await ErrorEventAsync(sse, NodeStopping, cancellationToken);
        await AbandonAsync(run);
        return TypedResults.Empty;
    }

    private async Task EndAsync(SseWriter sse, Run run, JobRow job, StreamRelay relay, CancellationToken cancellationToken)
    {
        if (job.Status != JobStatus.Completed)
        {
            await ErrorEventAsync(sse, JobEnd.Of(job).Error, cancellationToken);
            return;
        }
        if (relay.Rest(job.Output ?? "") is not { } rest)
        {
            await ErrorEventAsync(sse, new OpenAiError(
                $"grid job {run.JobId} completed with an output that differs from the text streamed; GET /api/v1/jobs/{run.JobId} shows the output",
                "server_error", null, "output_mismatch"), cancellationToken);
            return;
        }
        if (rest.Length > 0) await ContentAsync(sse, run, rest, cancellationToken);
        var model = job.ModelUsed ?? run.Request.Model;
        var finish = run.FinishReason(job);
        if (run.Request.Chat)
        {
            await sse.EventAsync(null, null, new ChatCompletionChunk(run.Id, "chat.completion.chunk", run.Created, model,
                [new ChatChunkChoice(0, new ChatDelta(null, null), finish)]), Json, cancellationToken);
            if (run.Request.IncludeUsage)
            {
                await sse.EventAsync(null, null, new ChatCompletionChunk(run.Id, "chat.completion.chunk", run.Created, model, [], OpenAiUsage.Of(job)), Json, cancellationToken);
            }
        }
        else
        {
            await sse.EventAsync(null, null, new TextCompletion(run.Id, "text_completion", run.Created, model, [new TextChoice("", 0, finish)]), Json, cancellationToken);
            if (run.Request.IncludeUsage)
            {
                await sse.EventAsync(null, null, new TextCompletion(run.Id, "text_completion", run.Created, model, [], OpenAiUsage.Of(job)), Json, cancellationToken);
            }
        }
        await sse.EventAsync(null, null, "[DONE]", cancellationToken);
    }

    private Task ContentAsync(SseWriter sse, Run run, string text, CancellationToken cancellationToken) => run.Request.Chat
        ? ChunkAsync(sse, run, new ChatDelta(null, text), null, cancellationToken)
        : sse.EventAsync(null, null, new TextCompletion(run.Id, "text_completion", run.Created, run.Request.Model, [new TextChoice(text, 0, null)]), Json, cancellationToken);

    private Task ChunkAsync(SseWriter sse, Run run, ChatDelta delta, string? finishReason, CancellationToken cancellationToken) =>
        sse.EventAsync(null, null, new ChatCompletionChunk(run.Id, "chat.completion.chunk", run.Created, run.Request.Model,
            [new ChatChunkChoice(0, delta, finishReason)]), Json, cancellationToken);

    /// <summary>An error once the stream has started: a data event holding OpenAI's error object (its SDKs raise it), and no <c>[DONE]</c>.</summary>
    private Task ErrorEventAsync(SseWriter sse, OpenAiError error, CancellationToken cancellationToken) =>
        sse.EventAsync(null, null, new OpenAiErrorBody(error), Json, cancellationToken);

    /// <summary>
    /// A job still pending <see cref="Run.TimeoutSeconds"/> after it was submitted is cancelled, and the request ends with
    /// a 504: the job's own timeout only runs from its claim, and the client should not wait for ever on a model whose
    /// workers went away after the request was let in. Null while the job may still be taken.
    /// </summary>
    private async Task<JobEnd?> NotTakenAsync(Run run)
    {
        if (time.GetUtcNow() < run.SubmittedAt.AddSeconds(run.TimeoutSeconds)) return null;
        return await JobStreams.CancelIfNotTakenAsync(grains, jobs, run.AccountId, run.JobId) ? JobEnd.NotTaken(run.JobId, run.TimeoutSeconds) : null;
    }

    // Whatever state it is in: a pending job never runs, a running one's worker hears at its next chunk or heartbeat.
    private Task<Transition<JobRow>> AbandonAsync(Run run) => grains.GetGrain<IJobGrain>(run.JobId).AbandonAsync(run.AccountId);
}
