using System.Text;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;

namespace GridWorker.Tests;

/// <summary>Assignments with <c>blobs</c>: images go to the model as base64, documents as text; the worker key stays home.</summary>
public sealed class BlobTests : IAsyncLifetime
{
    private FakeCoordinator _coordinator = null!;
    private FakeOllama _ollama = null!;

    public async Task InitializeAsync()
    {
        _coordinator = await FakeCoordinator.StartAsync();
        _ollama = await FakeOllama.StartAsync("llava:7b");
    }

    public async Task DisposeAsync()
    {
        await _coordinator.DisposeAsync();
        await _ollama.DisposeAsync();
    }

    private static object Assignment(long id, params object[] blobs) => new
    {
        job_id = id, model = "llava:7b", model_family = "llava", model_match = "exact", prompt = "What is in the picture?",
        blobs, priority = 0, timeout_seconds = 600, attempt = 1,
    };

    [Fact]
    public async Task ImageAndDocumentBlobs_ReachTheModel()
    {
        byte[] cat = [0x89, 0x50, 0x4E, 0x47, 1, 2, 3];
        _coordinator.Files["cat.png"] = (cat, "image/png");
        _coordinator.Files["notes.txt"] = (Encoding.UTF8.GetBytes("the cat is called Tom"), "text/plain");
        _coordinator.Enqueue(Assignment(5,
            new { id = 1, type = "image", url = new Uri(_coordinator.BaseUrl, "/files/cat.png").ToString() },
            new { id = 2, type = "document", url = "/files/notes.txt" }));
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(_coordinator.BaseUrl, "vk_live_worker", _ollama.Info()));

        var report = await _coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        var message = (await _ollama.NextRequestAsync()).GetProperty("messages")[0];
        Assert.Equal([Convert.ToBase64String(cat)], message.GetProperty("images").EnumerateArray().Select(i => i.GetString()));
        Assert.StartsWith("What is in the picture?", message.GetProperty("content").GetString(), StringComparison.Ordinal);
        Assert.Contains("the cat is called Tom", message.GetProperty("content").GetString(), StringComparison.Ordinal);
        Assert.Equal(5L, report.JobId);
        Assert.Equal(345, report.Body.GetProperty("output_tokens").GetInt32());

        // A presigned (absolute) URL gets no key; a coordinator-relative one gets the worker's.
        var requests = _coordinator.FileRequests.ToDictionary(r => r.Name, r => r.Authorization);
        Assert.Null(requests["cat.png"]);
        Assert.Equal("Bearer vk_live_worker", requests["notes.txt"]);
    }

    [Fact]
    public async Task UnavailableBlob_FailsTheJobWithTheReason()
    {
        _coordinator.Enqueue(Assignment(6, new { id = 3, type = "image", url = (string?)null }));
        _coordinator.Enqueue(Assignment(7, new { id = 4, type = "image", url = new Uri(_coordinator.BaseUrl, "/files/missing.png").ToString() }));
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(_coordinator.BaseUrl, "vk_live_worker", _ollama.Info()));

        var first = await _coordinator.NextReportAsync();
        Assert.Equal(("fail", 6L, "attachment 3 has no download URL"), (first.Kind, first.JobId, first.Body.GetProperty("error").GetString()));
        var second = await _coordinator.NextReportAsync();
        Assert.Equal(("fail", 7L, "attachment 4 could not be downloaded: 404 Not Found"), (second.Kind, second.JobId, second.Body.GetProperty("error").GetString()));
    }
}
