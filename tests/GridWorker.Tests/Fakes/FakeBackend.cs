using System.Net;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Coordinator.Tests.Infrastructure;

namespace GridWorker.Tests.Fakes;

/// <summary>How a fake backend answers one chat request.</summary>
public sealed record FakeReply
{
    /// <summary>The output, streamed one piece per message/chunk.</summary>
    public IReadOnlyList<string> Pieces { get; init; } = ["Rows wait", " in order", "."];

    public int PromptTokens { get; init; } = 12;

    public int OutputTokens { get; init; } = 345;

    /// <summary>What the server says the generation took (Ollama's <c>total_duration</c>).</summary>
    public long DurationMs { get; init; } = 1500;

    /// <summary>Answer this status with the server's error body instead of a stream.</summary>
    public int? ErrorStatus { get; init; }

    /// <summary>Stream the pieces, then this error in the stream.</summary>
    public string? StreamError { get; init; }

    /// <summary>After the pieces, wait for this before finishing (or for the client to go away).</summary>
    public TaskCompletionSource? Hold { get; init; }

    /// <summary>OpenAI servers that ignore <c>stream_options</c> send no usage chunk.</summary>
    public bool SendUsage { get; init; } = true;

    /// <summary>False: ignore <c>"stream": true</c> and answer the whole reply as one <c>application/json</c> body.</summary>
    public bool Streams { get; init; } = true;
}

/// <summary>An HTTP server on real Kestrel (a loopback port) whose routes a subclass maps.</summary>
public abstract class FakeServer : IAsyncDisposable
{
    private WebApplication? _app;

    public Uri BaseUrl { get; private set; } = null!;

    public async Task ListenAsync(int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(options => options.Listen(IPAddress.Loopback, port));
        builder.Logging.ClearProviders();
        _app = builder.Build();
        Map(_app);
        await _app.StartAsync();
        BaseUrl = new Uri(Loopback.AddressOf(_app));
    }

    protected abstract void Map(WebApplication app);

    protected static async Task WriteLineAsync(HttpContext context, string line)
    {
        await context.Response.WriteAsync(line, Encoding.UTF8);
        await context.Response.Body.FlushAsync();
    }

    protected static string Serialize(object value) => JsonSerializer.Serialize(value);

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// A local inference server that speaks one backend's documented wire format.
/// Records every chat request; answers by <see cref="Reply"/>.
/// </summary>
public abstract class FakeBackend(IEnumerable<string> models) : FakeServer
{
    private readonly Lock _lock = new();
    private readonly List<string> _models = models.ToList();
    private readonly Channel<JsonElement> _requests = Channel.CreateUnbounded<JsonElement>();
    private readonly TaskCompletionSource _clientWentAway = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when a client goes away while a reply is held (<see cref="FakeReply.Hold"/>): it cancelled its request.</summary>
    public Task ClientWentAway => _clientWentAway.Task;

    /// <summary>Answers per requested model. Default: a short successful reply.</summary>
    public Func<string, FakeReply> Reply { get; set; } = _ => new FakeReply();

    public IReadOnlyList<string> Models
    {
        get { lock (_lock) return _models.ToList(); }
        set { lock (_lock) { _models.Clear(); _models.AddRange(value); } }
    }

    /// <summary>The body of the next chat request the fake receives (it is received when this completes).</summary>
    public async Task<JsonElement> NextRequestAsync(int timeoutMs = 20_000)
    {
        using var timeout = new CancellationTokenSource(timeoutMs);
        return await _requests.Reader.ReadAsync(timeout.Token);
    }

    protected async Task<JsonElement> ReadRequestAsync(HttpContext context)
    {
        using var body = await JsonDocument.ParseAsync(context.Request.Body);
        var request = body.RootElement.Clone();
        await _requests.Writer.WriteAsync(request);
        return request;
    }

    /// <summary>Waits for the reply's hold, if any; false when the client went away first.</summary>
    protected async Task<bool> HoldAsync(FakeReply reply, HttpContext context)
    {
        if (reply.Hold is null) return true;
        try
        {
            await reply.Hold.Task.WaitAsync(context.RequestAborted);
            return true;
        }
        catch (OperationCanceledException)
        {
            _clientWentAway.TrySetResult();
            return false;
        }
    }

    /// <summary>Writes the reply's pieces, each as the message <paramref name="format"/> makes of it, flushed one by one.</summary>
    protected static async Task WritePiecesAsync(HttpContext context, FakeReply reply, Func<string, string> format)
    {
        foreach (var piece in reply.Pieces) await WriteLineAsync(context, format(piece));
    }
}

/// <summary>
/// Ollama: <c>GET /api/tags</c> → <c>{"models":[{"name","model","modified_at","size","digest","details"}]}</c>;
/// <c>POST /api/chat</c> streams NDJSON: <c>{"model","created_at","message":{"role":"assistant","content"},"done":false}</c>
/// per piece, then <c>"done":true</c> with <c>done_reason</c>, <c>total_duration</c>, <c>load_duration</c>,
/// <c>prompt_eval_count</c>, <c>prompt_eval_duration</c>, <c>eval_count</c>, <c>eval_duration</c> (durations in ns).
/// Errors are <c>{"error":"…"}</c>.
/// </summary>
public sealed class FakeOllama(params string[] models) : FakeBackend(models)
{
    public static async Task<FakeOllama> StartAsync(params string[] models)
    {
        var fake = new FakeOllama(models);
        await fake.ListenAsync();
        return fake;
    }

    protected override void Map(WebApplication app)
    {
        app.MapGet("/api/tags", () => Results.Json(new
        {
            models = Models.Select(m => new
            {
                name = m,
                model = m,
                modified_at = "2026-05-01T10:00:00.000000+00:00",
                size = 4_661_224_676L,
                digest = "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
                details = new { format = "gguf", family = "llama", parameter_size = "8.0B", quantization_level = "Q4_0" },
            }),
        }));
        app.MapPost("/api/chat", async (HttpContext context) =>
        {
            var request = await ReadRequestAsync(context);
            var model = request.GetProperty("model").GetString()!;
            var reply = Reply(model);
            if (reply.ErrorStatus is { } status)
            {
                context.Response.StatusCode = status;
                await context.Response.WriteAsJsonAsync(new { error = $"model \"{model}\" not found, try pulling it first" });
                return;
            }
            var total = reply.DurationMs * 1_000_000;
            if (!reply.Streams)
            {
                // What Ollama answers with "stream": false: the last message of a stream, holding the whole content.
                await Results.Json(new
                {
                    model,
                    created_at = DateTimeOffset.UtcNow,
                    message = new { role = "assistant", content = string.Concat(reply.Pieces) },
                    done_reason = "stop",
                    done = true,
                    total_duration = total,
                    prompt_eval_count = reply.PromptTokens,
                    eval_count = reply.OutputTokens,
                }).ExecuteAsync(context);
                return;
            }
            context.Response.ContentType = "application/x-ndjson";
            await WritePiecesAsync(context, reply, piece => Serialize(new
            {
                model,
                created_at = DateTimeOffset.UtcNow,
                message = new { role = "assistant", content = piece },
                done = false,
            }) + "\n");
            if (reply.StreamError is { } error)
            {
                await WriteLineAsync(context, Serialize(new { error }) + "\n");
                return;
            }
            if (!await HoldAsync(reply, context)) return;
            await WriteLineAsync(context, Serialize(new
            {
                model,
                created_at = DateTimeOffset.UtcNow,
                message = new { role = "assistant", content = "" },
                done_reason = "stop",
                done = true,
                total_duration = total,
                load_duration = total / 10,
                prompt_eval_count = reply.PromptTokens,
                prompt_eval_duration = total / 10,
                eval_count = reply.OutputTokens,
                eval_duration = total * 8 / 10,
            }) + "\n");
        });
    }
}

/// <summary>
/// An OpenAI-compatible server: <c>GET /v1/models</c> → <c>{"object":"list","data":[{"id","object":"model","created","owned_by"}]}</c>;
/// <c>POST /v1/chat/completions</c> with <c>stream</c> answers <c>text/event-stream</c>: <c>data: {chat.completion.chunk}</c>
/// events with <c>choices[0].delta.content</c>, a last choice with <c>finish_reason</c>, then — when the request set
/// <c>stream_options.include_usage</c> — a chunk with empty <c>choices</c> and <c>usage</c>, then <c>data: [DONE]</c>.
/// Errors are <c>{"error":{"message","type","param","code"}}</c>.
/// </summary>
public sealed class FakeOpenAi(params string[] models) : FakeBackend(models)
{
    public string? RequiredKey { get; set; }

    public static async Task<FakeOpenAi> StartAsync(params string[] models)
    {
        var fake = new FakeOpenAi(models);
        await fake.ListenAsync();
        return fake;
    }

    private bool Authorized(HttpContext context) =>
        RequiredKey is null || context.Request.Headers.Authorization.ToString() == "Bearer " + RequiredKey;

    private static IResult Error(int status, string message, string type) =>
        Results.Json(new { error = new { message, type, param = (string?)null, code = (string?)null } }, statusCode: status);

    protected override void Map(WebApplication app)
    {
        app.MapGet("/v1/models", (HttpContext context) => !Authorized(context)
            ? Error(401, "Invalid API key", "invalid_request_error")
            : Results.Json(new { @object = "list", data = Models.Select(m => new { id = m, @object = "model", created = 1_715_000_000, owned_by = "llamacpp" }) }));
        app.MapPost("/v1/chat/completions", async (HttpContext context) =>
        {
            if (!Authorized(context))
            {
                await Error(401, "Invalid API key", "invalid_request_error").ExecuteAsync(context);
                return;
            }
            var request = await ReadRequestAsync(context);
            var model = request.GetProperty("model").GetString()!;
            var reply = Reply(model);
            if (reply.ErrorStatus is { } status)
            {
                await Error(status, $"The model `{model}` does not exist.", "invalid_request_error").ExecuteAsync(context);
                return;
            }
            var includeUsage = request.TryGetProperty("stream_options", out var options) && options.TryGetProperty("include_usage", out var include) && include.GetBoolean();
            var id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..12];
            if (!reply.Streams)
            {
                // A server that ignores "stream": true answers a whole chat.completion.
                await Results.Json(new
                {
                    id,
                    @object = "chat.completion",
                    created = 1_715_000_000,
                    model,
                    choices = new[] { new { index = 0, message = new { role = "assistant", content = string.Concat(reply.Pieces) }, logprobs = (object?)null, finish_reason = "stop" } },
                    usage = new { prompt_tokens = reply.PromptTokens, completion_tokens = reply.OutputTokens, total_tokens = reply.PromptTokens + reply.OutputTokens },
                }).ExecuteAsync(context);
                return;
            }
            context.Response.ContentType = "text/event-stream";
            object? nullUsage = null;
            async Task ChunkAsync(object delta, string? finishReason) => await WriteLineAsync(context, "data: " + Serialize(new
            {
                id,
                @object = "chat.completion.chunk",
                created = 1_715_000_000,
                model,
                system_fingerprint = "fp_fake",
                choices = new[] { new { index = 0, delta, logprobs = (object?)null, finish_reason = finishReason } },
                usage = nullUsage,
            }) + "\n\n");
            await ChunkAsync(new { role = "assistant", content = "" }, null);
            foreach (var piece in reply.Pieces) await ChunkAsync(new { content = piece }, null);
            if (reply.StreamError is { } error)
            {
                await WriteLineAsync(context, "data: " + Serialize(new { error = new { message = error, type = "server_error" } }) + "\n\n");
                return;
            }
            if (!await HoldAsync(reply, context)) return;
            await ChunkAsync(new { }, "stop");
            if (includeUsage && reply.SendUsage)
            {
                await WriteLineAsync(context, "data: " + Serialize(new
                {
                    id,
                    @object = "chat.completion.chunk",
                    created = 1_715_000_000,
                    model,
                    choices = Array.Empty<object>(),
                    usage = new { prompt_tokens = reply.PromptTokens, completion_tokens = reply.OutputTokens, total_tokens = reply.PromptTokens + reply.OutputTokens },
                }) + "\n\n");
            }
            await WriteLineAsync(context, "data: [DONE]\n\n");
        });
    }
}
