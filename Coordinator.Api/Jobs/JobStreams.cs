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
