using System.Globalization;
using System.Text;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Api.OpenAi;
using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Gemini;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Gemini;

/// <summary>
/// <c>POST /api/gemini/conversations/{id}/messages</c>: stores the user's message, submits the conversation as a grid chat
/// job (the same job <c>/v1/chat/completions</c> makes: the history in <c>params.messages</c>), and relays the job's
/// stream as Server-Sent Events: <c>{"content": "…"}</c> per piece the worker streams, then <c>{"done": true, "messageId"}</c>
/// once the reply is stored, or <c>{"error": "…"}</c>. The reply is stored when the job completes even if the client has
/// gone away meanwhile: the request follows the job to its end, writing to the client only while it is there.
/// </summary>
public sealed partial class GeminiChat(
    IGrainFactory grains, Dispatchers dispatchers, WorkerStore workers, JobStore jobs, ConversationStore conversations, TimeProvider time,
    IOptions<GeminiOptions> options, IOptions<JobLimitsOptions> limits, IHostApplicationLifetime lifetime, ILogger<GeminiChat> logger)
{
    public async Task<IResult> SendAsync(HttpContext context, long conversationId)
    {
        var (fields, error) = await JsonFields.ReadJsonAsync(context.Request);
        if (fields is null) return GeminiErrors.BadRequest(error!);
        var content = fields.String("content", required: true, maxUtf8Bytes: limits.Value.MaxPromptBytes);
        var requested = fields.String("model", maxLength: ModelNames.MaxLength);
        if (!fields.IsValid) return GeminiErrors.BadRequest(fields.Errors);
        var model = GeminiApi.ModelFor(requested, options.Value);
        if (!ModelNames.IsValid(model)) return GeminiErrors.BadRequest("model is not a valid model name (letters, digits and . _ : / @ + -)");

        var caller = context.GetCaller();
        if (await conversations.GetAsync(caller.AccountId, conversationId, context.RequestAborted) is null) return GeminiErrors.ConversationNotFound(conversationId);
        var modelMatch = OpenAiRequests.ModelMatchOf(model);
        // Checked before the message is stored: a message nobody can answer is not kept, and the client may send it again.
        var availability = await workers.AvailabilityAsync(modelMatch, model, context.RequestAborted);
        if (availability != ModelAvailability.Online)
        {
            var sse = SseWriter.Start(context);
            await sse.EventAsync(null, null, Json(new GeminiError(availability == ModelAvailability.Unknown
                ? $"no worker serves the model '{model}': no worker of this grid has ever served it"
                : $"no worker serves the model '{model}' right now; try again later")), context.RequestAborted);
            return TypedResults.Empty;
        }

        if (await conversations.AddMessageAsync(caller.AccountId, conversationId, MessageRoles.User, content!, context.RequestAborted) is null)
        {
            return GeminiErrors.ConversationNotFound(conversationId);
        }
        var history = await conversations.MessagesAsync(caller.AccountId, conversationId, context.RequestAborted);
        if (history is null) return GeminiErrors.ConversationNotFound(conversationId);
        var messages = Fit(history.Select(m => new ChatMessage(m.Role, m.Content)).ToList(), limits.Value.MaxPromptBytes);

        var timeout = options.Value.TimeoutSeconds;
        var job = new NewJob(model, modelMatch, OpenAiRequests.PromptOf(messages), null, timeout, null, null)
        {
            ParamsJson = OpenAiRequests.ParamsJsonOf(new Dictionary<string, object>(), messages),
            SubmittedByKeyId = caller.KeyId,
            // Its reader follows it from the start: its end reaches its grain without a first read marking it.
            Watched = true,
        };
        var submittedAt = time.GetUtcNow();
        var row = (await dispatchers.Of(job.DispatcherKey).SubmitAsync(caller.AccountId, job)).Row!;
        context.Response.Headers["X-Grid-Job-Id"] = row.Id.ToString(CultureInfo.InvariantCulture);
        var reply = new Reply(context, SseWriter.Start(context));
        if (row.Held)
        {
            // A job over the daily quota would wait for midnight UTC: the client hears it now instead.
            await grains.GetGrain<IJobGrain>(row.Id).CancelAsync(caller.AccountId);
            await reply.SendAsync(new GeminiError("this account has reached its daily quota; it resets at midnight UTC"));
            return TypedResults.Empty;
        }
        await RelayAsync(reply, caller.AccountId, conversationId, row.Id, submittedAt, timeout);
        return TypedResults.Empty;
    }

    /// <summary>
    /// The most recent messages whose prompt fits the grid's prompt limit: a long conversation loses its oldest messages
    /// first. The last message (the one just sent) always goes.
    /// </summary>
    internal static List<ChatMessage> Fit(List<ChatMessage> messages, int maxPromptBytes)
    {
        var bytes = 0;
        var first = messages.Count;
        while (first > 0)
        {
            // Each message is "role: content" and a line break in the prompt (OpenAiRequests.PromptOf).
            var size = Encoding.UTF8.GetByteCount(messages[first - 1].Role) + 2 + Encoding.UTF8.GetByteCount(messages[first - 1].Content) + 1;
            if (first < messages.Count && bytes + size > maxPromptBytes + 1) break;
            bytes += size;
            first--;
        }
        return messages[first..];
    }

    /// <summary>
    /// Follows the job to its end, passing its text on while the client listens, and stores the reply when the job
    /// completes. Reads survive the client (they stop only when this node stops) and pick up where they were when the
    /// job's grain moves to another silo.
    /// </summary>
    private async Task RelayAsync(Reply reply, long accountId, long conversationId, long jobId, DateTimeOffset submittedAt, int timeoutSeconds)
    {
        var relay = new StreamRelay();
        var position = default(StreamPosition);
        var taken = false;
        while (!lifetime.ApplicationStopping.IsCancellationRequested)
        {
            await foreach (var slice in JobStreams.ReadAsync(grains, accountId, jobId, position, lifetime.ApplicationStopping))
            {
                if (slice.Final is { } job)
                {
                    await EndAsync(reply, accountId, conversationId, job, relay);
                    return;
                }
                if (slice.NotFound)
                {
                    await reply.SendAsync(new GeminiError($"grid job {jobId} is gone"));
                    return;
                }
                if (slice.Leaving) continue;
                position = new StreamPosition(slice.Generation, slice.Offset);
                if (relay.Take(slice) is not { } fresh)
                {
                    // The job runs again after its worker went missing and says something else: the client cannot be told
                    // both, but the job's reply is still stored when it completes.
                    await reply.SendAsync(new GeminiError($"grid job {jobId} restarted after its worker went missing, and its new reply differs from the text already sent; the conversation will hold the new reply"));
                    reply.Close();
                    continue;
                }
                taken |= slice.Text.Length > 0;
                if (fresh.Length > 0) await reply.SendAsync(new GeminiContentEvent(fresh));
                else if (!taken && time.GetUtcNow() >= submittedAt.AddSeconds(timeoutSeconds)
                    && await JobStreams.CancelIfNotTakenAsync(grains, jobs, accountId, jobId))
                {
                    await reply.SendAsync(new GeminiError($"no worker took the reply's grid job {jobId} within {timeoutSeconds} seconds; it was cancelled"));
                    return;
                }
                else await reply.CommentAsync("keep-alive");
            }
        }
        LogReplyLost(logger, jobId, conversationId);
        await reply.SendAsync(new GeminiError($"this node is stopping; grid job {jobId} goes on, but its reply will not be stored in the conversation"));
    }

    private async Task EndAsync(Reply reply, long accountId, long conversationId, JobRow job, StreamRelay relay)
    {
        if (job.Status != JobStatus.Completed)
        {
            await reply.SendAsync(new GeminiError($"grid job {job.Id} {job.Status}: {job.Error ?? "no reason given"}"));
            return;
        }
        var output = job.Output ?? "";
        var stored = await conversations.AddMessageAsync(accountId, conversationId, MessageRoles.Assistant, output, CancellationToken.None);
        if (relay.Rest(output) is { } rest)
        {
            if (rest.Length > 0) await reply.SendAsync(new GeminiContentEvent(rest));
        }
        else
        {
            await reply.SendAsync(new GeminiError($"grid job {job.Id} completed with a reply that differs from the text streamed; the conversation holds the reply"));
            return;
        }
        if (stored is null) await reply.SendAsync(new GeminiError($"conversation {conversationId} was deleted while its reply was written"));
        else await reply.SendAsync(new GeminiDoneEvent(true, stored.Id));
    }

    private static string Json<T>(T value) => System.Text.Json.JsonSerializer.Serialize(value);

    /// <summary>The client's side of the relay: events go out while the client is there; once it has gone, nothing does.</summary>
    private sealed class Reply(HttpContext context, SseWriter sse)
    {
        private bool _closed;

        public void Close() => _closed = true;

        public Task SendAsync<T>(T data) => WriteAsync(() => sse.EventAsync(null, null, Json(data), context.RequestAborted));

        public Task CommentAsync(string comment) => WriteAsync(() => sse.CommentAsync(comment, context.RequestAborted));

        private async Task WriteAsync(Func<Task> write)
        {
            if (_closed || context.RequestAborted.IsCancellationRequested) return;
            try
            {
                await write();
            }
            catch (Exception exception) when (exception is OperationCanceledException or IOException)
            {
                // The client went away: the job goes on, and its reply is stored all the same.
                _closed = true;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node stopping: the reply of grid job {JobId} will not be stored in conversation {ConversationId}")]
    private static partial void LogReplyLost(ILogger logger, long jobId, long conversationId);
}
