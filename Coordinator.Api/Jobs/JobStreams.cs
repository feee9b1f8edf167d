using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Jobs;

namespace Coordinator.Api.Jobs;

/// <summary>
/// Where a reader is in a job's stream: the stream's generation (it starts again when the job goes back to the queue
/// after it had started) and the offset in its output (UTF-16 code units). It is the SSE event id, <c>generation-offset</c>,
/// so that a client reconnecting with <c>Last-Event-ID</c> resumes exactly where it was.
/// </summary>
public readonly record struct StreamPosition(int Generation, int Offset)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Generation}-{Offset}");

    /// <summary>A <c>Last-Event-ID</c> this coordinator gave out; anything else (or nothing) starts from the beginning.</summary>
    public static StreamPosition Parse(string? lastEventId)
    {
        var parts = (lastEventId ?? "").Split('-');
        return parts is [var generation, var offset]
            && int.TryParse(generation, NumberStyles.None, CultureInfo.InvariantCulture, out var g)
            && int.TryParse(offset, NumberStyles.None, CultureInfo.InvariantCulture, out var o)
            ? new StreamPosition(g, o)
            : default;
    }
}

/// <summary>Reading a job's output stream through its grain, wherever that grain, the worker and the reader are.</summary>
public static class JobStreams
{
    /// <summary>
    /// The stream's slices from <paramref name="from"/> on, until the job has ended (the last slice carries it) or the
    /// reader stops, or the grain's silo stops (the last slice says <see cref="StreamSlice.Leaving"/>). The first slice comes at once, with what there is (so that the reader's response can start); after
    /// it, a slice with no text and no end says only that nothing happened for a while. The first slice of a job the
    /// account does not have says <see cref="StreamSlice.NotFound"/>, and nothing follows it.
    /// </summary>
    public static async IAsyncEnumerable<StreamSlice> ReadAsync(IGrainFactory grains, long accountId, long jobId, StreamPosition from,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var job = grains.GetGrain<IJobGrain>(jobId);
        var (generation, offset) = (from.Generation, from.Offset);
        var wait = false;
        while (!cancellationToken.IsCancellationRequested)
        {
            StreamSlice slice;
            try
            {
                slice = await job.ReadStreamAsync(accountId, generation, offset, wait).WaitAsync(cancellationToken);
            }
            catch (TimeoutException)
            {
                // A read that took longer than its call may (a busy silo): ask again from the same place.
                continue;
            }
            wait = true;
            yield return slice;
            if (slice.NotFound || slice.Final is not null || slice.Leaving) yield break;
            (generation, offset) = (slice.Generation, slice.Offset);
        }
    }

    /// <summary>
    /// Cancels a job that no worker has taken yet (still pending), for a reader that waited its timeout: the job's own
    /// timeout only runs from its claim. True when this cancelled it; false when a worker claimed it meanwhile (it goes on,
    /// under its own timeout) or it ended.
    /// </summary>
    public static async Task<bool> CancelIfNotTakenAsync(IGrainFactory grains, JobStore jobs, long accountId, long jobId)
    {
        if (await jobs.GetAsync(accountId, jobId) is not { Status: JobStatus.Pending }) return false;
        var cancelled = await grains.GetGrain<IJobGrain>(jobId).CancelAsync(accountId);
        return cancelled.Outcome == TransitionOutcome.Done;
    }
}

/// <summary>
/// The text a reader has passed on of a job's stream, kept consistent when the job goes back to the queue after it
/// started (its worker went missing) and runs again from the start: what was passed on cannot be taken back, so the new
/// run's text is held back until it passes what was passed on, and only the part beyond is passed on, as long as the two
/// agree.
/// </summary>
public sealed class StreamRelay
{
    private readonly StringBuilder _sent = new();
    private int _generationLength;

    /// <summary>Everything passed on so far.</summary>
    public string Sent => _sent.ToString();

    /// <summary>
    /// Takes a slice that is not the job's end: answers the part of its text to pass on (empty when there is none), or
    /// null when the restarted run's text differs from the text already passed on.
    /// </summary>
    public string? Take(StreamSlice slice)
    {
        if (slice.Restarted) _generationLength = 0;
        if (slice.Text.Length == 0) return "";
        // The part of this run's text that was passed on already (by an earlier run) must be what was passed on.
        var overlap = Math.Clamp(_sent.Length - _generationLength, 0, slice.Text.Length);
        if (overlap > 0 && !_sent.ToString(_generationLength, overlap).Equals(slice.Text[..overlap], StringComparison.Ordinal)) return null;
        _generationLength += slice.Text.Length;
        if (overlap == slice.Text.Length) return "";
        var fresh = slice.Text[overlap..];
        _sent.Append(fresh);
        return fresh;
    }

    /// <summary>The part of a completed job's output past what was passed on, or null when the output does not begin with it.</summary>
    public string? Rest(string output) => output.StartsWith(Sent, StringComparison.Ordinal) ? output[_sent.Length..] : null;
}

/// <summary>Server-Sent Events on a response: each event flushed as it is written.</summary>
public sealed class SseWriter(HttpResponse response)
{
    /// <summary>Sets the headers of an event stream and turns off buffering.</summary>
    public static SseWriter Start(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        // A proxy in front (nginx) must not buffer it either.
        context.Response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
        return new SseWriter(context.Response);
    }

    public Task EventAsync(string? name, string? id, string data, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        if (name is not null) text.Append("event: ").Append(name).Append('\n');
        if (id is not null) text.Append("id: ").Append(id).Append('\n');
        // A data line per line of the data, as the format requires (JSON written here has none).
        foreach (var line in data.Split('\n')) text.Append("data: ").Append(line).Append('\n');
        text.Append('\n');
        return WriteAsync(text.ToString(), cancellationToken);
    }

    public Task EventAsync<T>(string? name, string? id, T data, JsonSerializerOptions options, CancellationToken cancellationToken) =>
        EventAsync(name, id, JsonSerializer.Serialize(data, options), cancellationToken);

    /// <summary>A comment line: keeps the connection (and the proxies on the way) from timing out.</summary>
    public Task CommentAsync(string comment, CancellationToken cancellationToken) => WriteAsync($": {comment}\n\n", cancellationToken);

    private async Task WriteAsync(string text, CancellationToken cancellationToken)
    {
        await response.WriteAsync(text, cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
