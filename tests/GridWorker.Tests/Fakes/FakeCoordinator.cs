using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace GridWorker.Tests.Fakes;

/// <summary>
/// A stand-in coordinator for what the real one does not produce on demand: assignments whose <c>blobs</c> point at
/// files it serves (with or without a key), and polls answered at once. It hands out the queued assignments, records
/// results and failures, and serves blob files.
/// </summary>
public sealed class FakeCoordinator : FakeServer
{
    private readonly Channel<object> _assignments = Channel.CreateUnbounded<object>();
    private readonly Channel<(string Kind, long JobId, JsonElement Body)> _reports = Channel.CreateUnbounded<(string, long, JsonElement)>();

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
        worker.MapPatch("/heartbeat", () => Results.Json(new { status = "ok" }));
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
