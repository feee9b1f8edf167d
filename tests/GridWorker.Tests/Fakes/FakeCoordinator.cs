using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace GridWorker.Tests.Fakes;

/// <summary>One <c>POST /worker/jobs/{id}/chunks</c> as it arrived.</summary>
public sealed record FakeChunk(long JobId, int Index, string Text);

/// <summary>
/// A stand-in coordinator for what the real one does not produce on demand: assignments whose <c>blobs</c> point at
/// files it serves (with or without a key), polls answered at once, and chunk answers on demand. It hands out the queued
/// assignments, records results, failures and chunks, and serves blob files. Chunks are answered as the real node does
/// (<c>Coordinator.Api/Workers/WorkersApi.cs</c>, <c>JobGrain.AppendChunkAsync</c>): in order from 0, a duplicate
/// ignored, one out of order refused with 422 <c>invalid_request</c>; <see cref="AnswerChunk"/> can answer otherwise.
/// </summary>
public sealed class FakeCoordinator : FakeServer
{
    private readonly Channel<object> _assignments = Channel.CreateUnbounded<object>();
    private readonly Channel<(string Kind, long JobId, JsonElement Body)> _reports = Channel.CreateUnbounded<(string, long, JsonElement)>();

    private readonly Channel<FakeChunk> _chunks = Channel.CreateUnbounded<FakeChunk>();
    private readonly ConcurrentDictionary<long, (int NextIndex, string Text)> _streams = new();
    private int _chunksInFlight;
    private int _maxChunksInFlight;

    /// <summary>
    /// Answers a chunk before the fake's own rule does (null: the rule answers). It may wait, holding the chunk's request
    /// open, to see what the worker does meanwhile.
    /// </summary>
    public Func<FakeChunk, Task<IResult?>>? AnswerChunk { get; set; }

    /// <summary>The most chunk requests that were open at once.</summary>
    public int MaxChunksInFlight => Volatile.Read(ref _maxChunksInFlight);

    /// <summary>The text the accepted chunks of a job make, joined in index order.</summary>
    public string StreamedText(long jobId) => _streams.TryGetValue(jobId, out var stream) ? stream.Text : "";

    /// <summary>The next chunk request, as it arrives (before it is answered).</summary>
    public async Task<FakeChunk> NextChunkAsync()
    {
        using var timeout = new CancellationTokenSource(20_000);
        return await _chunks.Reader.ReadAsync(timeout.Token);
    }

    /// <summary>Every chunk request that arrived and has not been taken with <see cref="NextChunkAsync"/>.</summary>
    public IReadOnlyList<FakeChunk> ChunksSoFar()
    {
        var chunks = new List<FakeChunk>();
        while (_chunks.Reader.TryRead(out var chunk)) chunks.Add(chunk);
        return chunks;
    }

    /// <summary>Files under <c>/files/{name}</c>.</summary>
    public ConcurrentDictionary<string, (byte[] Content, string MediaType)> Files { get; } = new();

    /// <summary>The Authorization header each file request carried (null: none).</summary>
    public ConcurrentQueue<(string Name, string? Authorization)> FileRequests { get; } = new();

    public static async Task<FakeCoordinator> StartAsync()
    {
        var fake = new FakeCoordinator();
        await fake.ListenAsync();
        return fake;
    }

    public void Enqueue(object assignment) => _assignments.Writer.TryWrite(assignment);

    /// <summary>What heartbeats answer as <c>cancelled_jobs</c>: jobs the coordinator cancelled while the worker held them.</summary>
    public ConcurrentBag<long> CancelledJobs { get; } = [];

    /// <summary>Answer an empty poll with 204 at once, as a node that is shutting down does, instead of holding it.</summary>
    public bool AnswerEmptyPollsAtOnce { get; set; }

    private int _polls;

    public int Polls => Volatile.Read(ref _polls);

    /// <summary>The next result or failure a worker reported: ("result" | "fail", job id, body).</summary>
    public async Task<(string Kind, long JobId, JsonElement Body)> NextReportAsync()
    {
        using var timeout = new CancellationTokenSource(20_000);
        return await _reports.Reader.ReadAsync(timeout.Token);
    }

    protected override void Map(WebApplication app)
    {
        var worker = app.MapGroup("/api/v1/worker");
        worker.MapPost("/register", () => Results.Json(new { worker_token = "vk_live_fake", worker_id = 1 }, statusCode: 201));
        worker.MapPatch("/heartbeat", () => Results.Json(new { status = "ok", cancelled_jobs = CancelledJobs.ToArray() }));
        worker.MapPatch("/models", () => Results.Json(new { status = "updated", model_count = 1 }));
        worker.MapGet("/jobs/next", async (HttpContext context) =>
        {
            Interlocked.Increment(ref _polls);
            if (_assignments.Reader.TryRead(out var assignment)) return Results.Json(assignment);
            if (AnswerEmptyPollsAtOnce) return Results.NoContent();
            // A long-poll, as the real node holds it: answered by a job enqueued while it waits, or 204 after 30 s.
            using var window = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            window.CancelAfter(TimeSpan.FromSeconds(30));
            try
            {
                return Results.Json(await _assignments.Reader.ReadAsync(window.Token));
            }
            catch (OperationCanceledException)
            {
            }
            return Results.NoContent();
        });
        worker.MapPatch("/jobs/{id:long}/start", (long id) => Results.Json(new { status = "running" }));
        worker.MapPost("/jobs/{id:long}/chunks", async (long id, HttpContext context) =>
        {
            var inFlight = Interlocked.Increment(ref _chunksInFlight);
            try
            {
                var max = Volatile.Read(ref _maxChunksInFlight);
                while (inFlight > max && Interlocked.CompareExchange(ref _maxChunksInFlight, inFlight, max) != max) max = Volatile.Read(ref _maxChunksInFlight);
                using var body = await JsonDocument.ParseAsync(context.Request.Body);
                var chunk = new FakeChunk(id, body.RootElement.GetProperty("index").GetInt32(), body.RootElement.GetProperty("text").GetString()!);
                await _chunks.Writer.WriteAsync(chunk);
                if (AnswerChunk is { } answer && await answer(chunk) is { } special) return special;
                var stream = _streams.GetOrAdd(id, (0, ""));
                if (chunk.Index < stream.NextIndex) return Results.Json(new { status = "duplicate", next_index = stream.NextIndex });
                if (chunk.Index > stream.NextIndex)
                {
                    return Results.Json(new { error = "invalid_request", message = $"chunk {chunk.Index} came before chunk {stream.NextIndex}: send the chunks in order" }, statusCode: 422);
                }
                _streams[id] = (stream.NextIndex + 1, stream.Text + chunk.Text);
                return Results.Json(new { status = "accepted", next_index = stream.NextIndex + 1 });
            }
            finally
            {
                Interlocked.Decrement(ref _chunksInFlight);
            }
        });
        worker.MapPost("/jobs/{id:long}/{kind}", async (long id, string kind, HttpContext context) =>
        {
            using var body = await JsonDocument.ParseAsync(context.Request.Body);
            await _reports.Writer.WriteAsync((kind, id, body.RootElement.Clone()));
            return Results.Json(new { status = kind == "result" ? "accepted" : "failed" });
        });
        app.MapGet("/files/{name}", (string name, HttpContext context) =>
        {
            FileRequests.Enqueue((name, context.Request.Headers.Authorization.FirstOrDefault()));
            return Files.TryGetValue(name, out var file) ? Results.Bytes(file.Content, file.MediaType) : Results.NotFound();
        });
    }
}
