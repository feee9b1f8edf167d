using System.Net.Http.Json;
using System.Text.Json;

namespace GridWorker.Backends;

/// <summary>
/// An OpenAI-compatible image server (<c>POST /v1/images/generations</c>), for the coordinator's image jobs. The worker
/// advertises each of its <see cref="Models"/> as <c>image:&lt;model&gt;</c>, the family the coordinator sends image jobs
/// to, and marks nothing else so; an image job's <c>params.kind</c> is <c>image</c>. The answer goes back as the result's
/// output, a <c>data:</c> URL: <c>data:image/png;base64,…</c> (the server's <c>output_format</c> when it names one, else PNG).
/// </summary>
public sealed class ImageBackend(HttpClient http, Uri baseUrl, string? apiKey, IReadOnlyList<string> models) : InferenceBackend(http, baseUrl)
{
    /// <summary>The family of image models on the grid, and the prefix of their advertised names.</summary>
    public const string Family = "image";

    public IReadOnlyList<string> Models => models;

    public override string DisplayName => "The image server";

    public override string UnreachableMessage =>
        $"The image server is not reachable at {BaseUrl.ToString().TrimEnd('/')}. Start it, or set --image-url.";

    public override string NoModelsMessage => "No image models are configured: set --image-models.";

    /// <summary>The advertised name of an image model: <c>sd-turbo</c> → <c>image:sd-turbo</c>.</summary>
    public static string AdvertisedName(string model) => $"{Family}:{model}";

    /// <summary>Whether an assignment is an image job: its <c>params.kind</c> is <c>image</c>.</summary>
    public static bool IsImageJob(JsonElement? parameters) =>
        parameters is { ValueKind: JsonValueKind.Object } p && p.StringOf("kind") == "image";

    /// <summary>The configured models: image servers' model lists do not say which models make images.</summary>
    public override Task<IReadOnlyList<string>> ListModelsAsync(CancellationToken cancellationToken) => Task.FromResult(models);

    /// <summary>Makes one image of the job's prompt with <see cref="BackendRequest.Model"/> (its advertised name or the server's own).</summary>
    public override async Task<BackendResult> GenerateAsync(BackendRequest job, Action<string>? onText, CancellationToken cancellationToken)
    {
        var model = job.Model.StartsWith(Family + ":", StringComparison.Ordinal) ? job.Model[(Family.Length + 1)..] : job.Model;
        var payload = new { model, prompt = job.Prompt, n = 1, response_format = "b64_json" };
        using var request = new HttpRequestMessage(HttpMethod.Post, Endpoint("/v1/images/generations")) { Content = JsonContent.Create(payload) };
        using var response = await SendAsync(request, cancellationToken, apiKey);
        if (!response.IsSuccessStatusCode) throw await ErrorOfAsync(response, model, cancellationToken);
        using var body = ParseChunk(await response.Content.ReadAsStringAsync(cancellationToken));
        var root = body.RootElement;
        if (ErrorText(root) is { } error) throw new BackendException($"The image server failed to make an image with {model}: {error}");
        var image = root.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array && data.GetArrayLength() > 0 ? data[0].StringOf("b64_json") : null;
        if (string.IsNullOrEmpty(image)) throw new BackendException($"The image server answered without data[0].b64_json for {model}");
        var mimeType = root.StringOf("output_format") is { Length: > 0 } format ? "image/" + format.ToLowerInvariant() : "image/png";
        return new BackendResult($"data:{mimeType};base64,{image}", null, 0, AdvertisedName(model), null);
    }
}
