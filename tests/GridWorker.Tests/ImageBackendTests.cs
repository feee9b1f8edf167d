using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using Coordinator.Tests.Infrastructure;
using GridWorker.Backends;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace GridWorker.Tests;

/// <summary>
/// An OpenAI-compatible image server as its API documents it: <c>POST /v1/images/generations</c> with
/// <c>{"model", "prompt", "n", "response_format"}</c> answers <c>{"data": [{"b64_json"}]}</c>, or an error object.
/// </summary>
public sealed class FakeImages : FakeServer
{
    private readonly Channel<(JsonElement Body, string? Authorization)> _requests = Channel.CreateUnbounded<(JsonElement, string?)>();

    /// <summary>The status and body to answer.</summary>
    public Func<JsonElement, (int Status, object Body)> Answer { get; set; } =
        _ => (200, new { created = 1, data = new[] { new { b64_json = Convert.ToBase64String("not really a PNG"u8.ToArray()) } } });

    public static async Task<FakeImages> StartAsync()
    {
        var server = new FakeImages();
        await server.ListenAsync();
        return server;
    }

    public async Task<(JsonElement Body, string? Authorization)> NextRequestAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await _requests.Reader.ReadAsync(timeout.Token);
    }

    protected override void Map(WebApplication app) => app.MapPost("/v1/images/generations", async (HttpContext context) =>
    {
        using var body = await JsonDocument.ParseAsync(context.Request.Body);
        _requests.Writer.TryWrite((body.RootElement.Clone(), context.Request.Headers.Authorization.ToString()));
        var (status, answer) = Answer(body.RootElement);
        return Results.Json(answer, statusCode: status);
    });
}

/// <summary>The image backend against a fake image server, and end to end: <c>/api/gemini/generate-image</c> through grid-worker.</summary>
public sealed class ImageBackendTests(HostFixture fixture) : IClassFixture<HostFixture>, IAsyncLifetime
{
    private readonly HttpClient _http = Program.CreateHttpClient();
    private FakeImages _images = null!;

    public async Task InitializeAsync() => _images = await FakeImages.StartAsync();

    public async Task DisposeAsync()
    {
        await _images.DisposeAsync();
        _http.Dispose();
    }

    [Fact]
    public async Task MakesOneImage_AsB64Json_AndAnswersItAsADataUrl_PngUnlessTheServerSaysOtherwise()
    {
        var backend = new ImageBackend(_http, _images.BaseUrl, "sk-images", ["sd-turbo"]);
        Assert.Equal(["sd-turbo"], await backend.ListModelsAsync(default));

        var result = await backend.GenerateAsync(new BackendRequest("image:sd-turbo", "a red fox", GenerationParams.None, []), null, default);
        var (body, authorization) = await _images.NextRequestAsync();
        Assert.Equal("""{"model":"sd-turbo","prompt":"a red fox","n":1,"response_format":"b64_json"}""", body.GetRawText());
        Assert.Equal("Bearer sk-images", authorization);
        Assert.Equal("data:image/png;base64," + Convert.ToBase64String("not really a PNG"u8.ToArray()), result.Output);
        Assert.Equal(("image:sd-turbo", 0), (result.ModelUsed, result.OutputTokens));

        _images.Answer = _ => (200, new { output_format = "webp", data = new[] { new { b64_json = "UklGRg==" } } });
        Assert.Equal("data:image/webp;base64,UklGRg==", (await backend.GenerateAsync(new BackendRequest("sd-turbo", "p", GenerationParams.None, []), null, default)).Output);
    }

    [Fact]
    public async Task ServerErrors_AndAnswersWithoutAnImage_FailWithTheServersWords()
    {
        var backend = new ImageBackend(_http, _images.BaseUrl, null, ["sd-turbo"]);
        _images.Answer = _ => (400, new { error = new { message = "Your prompt was rejected by the safety system", type = "invalid_request_error" } });
        var error = await Assert.ThrowsAsync<BackendException>(() => backend.GenerateAsync(new BackendRequest("image:sd-turbo", "p", GenerationParams.None, []), null, default));
        Assert.Contains("400", error.Message, StringComparison.Ordinal);
        Assert.Contains("rejected by the safety system", error.Message, StringComparison.Ordinal);

        _images.Answer = _ => (200, new { data = new[] { new { url = "https://example.com/image.png" } } });
        error = await Assert.ThrowsAsync<BackendException>(() => backend.GenerateAsync(new BackendRequest("image:sd-turbo", "p", GenerationParams.None, []), null, default));
        Assert.Contains("b64_json", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheImageServer_IsConfiguredByFlagsOrEnvironment_AndNeedsItsModels()
    {
        string[] required = ["--coordinator", "http://grid:3000", "--api-key", "vk_live_x"];
        var settings = WorkerSettings.Parse([.. required, "--image-url", "http://127.0.0.1:7860", "--image-models", "sd-turbo, sdxl"],
            name => name == "GRID_WORKER_IMAGE_API_KEY" ? "sk-img" : null).Settings!;
        Assert.Equal((new Uri("http://127.0.0.1:7860"), "sk-img"), (settings.ImageUrl, settings.ImageApiKey));
        Assert.Equal(["sd-turbo", "sdxl"], settings.ImageModels);
        Assert.Null(WorkerSettings.Parse(required, _ => null).Settings!.ImageUrl);

        Assert.Contains("--image-models", Assert.Throws<SettingsException>(() => WorkerSettings.Parse([.. required, "--image-url", "http://127.0.0.1:7860"], _ => null)).Message, StringComparison.Ordinal);
        Assert.Contains("--image-url", Assert.Throws<SettingsException>(() => WorkerSettings.Parse([.. required, "--image-models", "sd"], _ => null)).Message, StringComparison.Ordinal);
        Assert.Contains("http(s) URL", Assert.Throws<SettingsException>(() => WorkerSettings.Parse([.. required, "--image-url", "ftp://x", "--image-models", "sd"], _ => null)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OnlyJobsWhoseParamsSayImage_AreImageJobs()
    {
        using var image = JsonDocument.Parse("""{"kind":"image"}""");
        using var text = JsonDocument.Parse("""{"max_tokens":5}""");
        Assert.True(ImageBackend.IsImageJob(image.RootElement));
        Assert.False(ImageBackend.IsImageJob(text.RootElement));
        Assert.False(ImageBackend.IsImageJob(null));
    }

    [Fact]
    public async Task GenerateImage_RunsOnAGridWorkerWithAnImageBackend_EndToEnd()
    {
        var textModel = ApiClient.Unique("text") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(textModel);
        var account = await fixture.Host.NewAccountOnPlanAsync(null, null);
        var settings = AgentRun.SettingsFor(fixture.Host.BaseAddress, await account.NewKeyAsync(), ollama.Info()) with
        {
            ImageUrl = _images.BaseUrl,
            ImageModels = ["sd-turbo"],
        };
        await using var run = await AgentRun.StartRegisteredAsync(settings);
        Assert.Equal([new WorkerModelEntry(textModel, true), new WorkerModelEntry("image:sd-turbo", true)], run.Agent.AdvertisedModels);

        _images.Answer = _ => (200, new { data = new[] { new { b64_json = "iVBORw0KGgo=" } } });
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(fixture.Host.BaseAddress, "/api/gemini/generate-image"))
        {
            Content = new StringContent("""{"prompt": "a lighthouse at dusk"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", account.Key);
        var image = await ApiClient.ExpectAsync(await account.Http.SendAsync(request), HttpStatusCode.OK);
        Assert.Equal(("iVBORw0KGgo=", "image/png"), (image.GetProperty("b64_json").GetString(), image.GetProperty("mimeType").GetString()));
        var (body, _) = await _images.NextRequestAsync();
        Assert.Equal(("sd-turbo", "a lighthouse at dusk"), (body.GetProperty("model").GetString(), body.GetProperty("prompt").GetString()));
    }
}
