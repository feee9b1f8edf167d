using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Gemini;

/// <summary><c>POST /api/gemini/generate-image</c> end to end: an image job that only a worker with image models takes.</summary>
public class ImageTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AnImage_IsAGridJobForAnImageWorker_AndComesBackAsBase64WithItsMimeType()
    {
        var grid = await Host.NewAccountAsync();
        var client = Gemini.Client(Host, grid.Key);
        var imageWorker = await Gemini.NewFamilyWorkerAsync(grid, "image:sd-test");

        var answer = client.PostAsync("generate-image", new { prompt = "a red fox in snow" });
        var assignment = await Gemini.TakeAsync(imageWorker, "image:sd-test", "image");
        var jobId = assignment.GetProperty("job_id").GetInt64();
        Assert.Equal(("image", "family", "a red fox in snow"), (assignment.GetProperty("model").GetString(), assignment.GetProperty("model_match").GetString(),
            assignment.GetProperty("prompt").GetString()));
        Assert.Equal("image", assignment.GetProperty("params").GetProperty("kind").GetString());

        var png = Convert.ToBase64String([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]);
        await Gemini.ResultAsync(imageWorker, jobId, "data:image/webp;base64," + png);
        var image = await ApiClient.ExpectAsync(await answer, HttpStatusCode.OK);
        Assert.Equal((png, "image/webp"), (image.GetProperty("b64_json").GetString(), image.GetProperty("mimeType").GetString()));

        // A worker that fails the job: 502 with its reason.
        answer = client.PostAsync("generate-image", new { prompt = "a blue fox" });
        jobId = (await Gemini.TakeAsync(imageWorker, "image:sd-test", "image")).GetProperty("job_id").GetInt64();
        await ApiClient.ExpectAsync(await imageWorker.PostAsync($"worker/jobs/{jobId}/fail", new { error = "out of VRAM" }), HttpStatusCode.OK);
        Assert.Contains("out of VRAM", await Gemini.ErrorAsync(await answer, HttpStatusCode.BadGateway), StringComparison.Ordinal);

        // A worker whose output is not an image: 502, not garbage passed on.
        answer = client.PostAsync("generate-image", new { prompt = "a green fox" });
        jobId = (await Gemini.TakeAsync(imageWorker, "image:sd-test", "image")).GetProperty("job_id").GetInt64();
        await Gemini.ResultAsync(imageWorker, jobId, "I am a text model");
        Assert.Contains("not a base64 data: URL", await Gemini.ErrorAsync(await answer, HttpStatusCode.BadGateway), StringComparison.Ordinal);
    }
}

/// <summary>A grid with no image worker at all: the client hears so at once.</summary>
public class NoImageWorkerTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    [Fact]
    public async Task WithoutAnImageWorker_GenerateImageIs503AtOnce_AndNoJobIsMade()
    {
        var grid = await fixture.Host.NewAccountAsync();
        await grid.NewWorkerAsync("text", "llama3.2:1b");
        var client = Gemini.Client(fixture.Host, grid.Key);

        var response = await client.PostAsync("generate-image", new { prompt = "a fox" });
        Assert.Contains("no worker serves image generation", await Gemini.ErrorAsync(response, HttpStatusCode.ServiceUnavailable), StringComparison.Ordinal);
        Assert.Empty((await ApiClient.ExpectAsync(await grid.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray());
    }
}
