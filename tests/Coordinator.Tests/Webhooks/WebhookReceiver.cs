using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Webhooks;

/// <summary>A real HTTP receiver on loopback that records each delivery and answers with scripted status codes.</summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<int> _script = new();

    private WebhookReceiver(WebApplication app) => _app = app;

    public sealed record Received(string Body, string? Signature, string? Delivery, string? Event, string? ContentType);

    public ConcurrentQueue<Received> Requests { get; } = new();

    public Uri Url { get; private set; } = null!;

    /// <summary>Status codes to answer, in order; once used up, 200.</summary>
    public void Answer(params int[] statuses)
    {
        foreach (var status in statuses) _script.Enqueue(status);
    }

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = Loopback.CreateBuilder();
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.MapPost("/hook", async (HttpContext context) =>
        {
            using var reader = new StreamReader(context.Request.Body);
            var body = await reader.ReadToEndAsync();
            receiver.Requests.Enqueue(new Received(body, context.Request.Headers["X-Vibe-Signature"], context.Request.Headers["X-Vibe-Delivery"],
                context.Request.Headers["X-Vibe-Event"], context.Request.ContentType));
            context.Response.StatusCode = receiver._script.TryDequeue(out var status) ? status : 200;
        });
        await app.StartAsync();
        var address = Loopback.AddressOf(app);
        receiver.Url = new Uri(new Uri(address), "/hook");
        return receiver;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
