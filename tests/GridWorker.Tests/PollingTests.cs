using Coordinator.Tests.Infrastructure;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;

namespace GridWorker.Tests;

/// <summary>How the poll loop paces itself: backoff with jitter, and no spinning on 204s that come back at once.</summary>
public sealed class PollingTests
{
    [Fact]
    public void Backoff_DoublesWithJitter_UpToTheMaximum()
    {
        var settings = new WorkerSettings
        {
            Coordinator = new Uri("http://127.0.0.1:1/api/v1/"), ApiKey = "k",
            RetryInitialDelay = TimeSpan.FromSeconds(1), RetryMaxDelay = TimeSpan.FromSeconds(60),
        };
        using var http = new HttpClient();
        using var agent = new WorkerAgent(settings, http, new Reporter(TextWriter.Null, false, TimeProvider.System), TimeProvider.System);
        foreach (var (failures, ceiling) in new[] { (0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (40, 60.0) })
        {
            var waits = Enumerable.Range(0, 200).Select(_ => agent.Backoff(failures).TotalSeconds).ToList();
            Assert.All(waits, w => Assert.InRange(w, ceiling / 2, ceiling));
            Assert.True(waits.Distinct().Count() > 100, "the waits are jittered"); // equal waits would synchronise restarting workers
        }
    }

    [Fact]
    public async Task EmptyPollsThatComeBackAtOnce_AreBackedOff()
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var ollama = await FakeOllama.StartAsync("llama3:8b");
        coordinator.AnswerEmptyPollsAtOnce = true;
        var clock = new ManualTimeProvider();
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", ollama.Info()), clock);

        // The first quick 204 is polled again at once; the second waits on the clock instead of spinning.
        await Eventually.TrueAsync(() => coordinator.Polls >= 2, "two polls");
        Assert.Equal(2, coordinator.Polls);
        // (The clock is moved until the poll happens: the agent may not have started its wait when the test first moves it.)
        await Eventually.TrueAsync(() => { clock.Advance(TimeSpan.FromSeconds(1)); return coordinator.Polls >= 3; }, "a third poll once the wait is over");

        // Once polls hold again, a job is taken as usual.
        coordinator.AnswerEmptyPollsAtOnce = false;
        coordinator.Enqueue(new { job_id = 9, model = "llama3:8b", model_match = "exact", prompt = "p", blobs = Array.Empty<object>(), timeout_seconds = 600 });
        var report = coordinator.NextReportAsync();
        await Eventually.TrueAsync(() => { clock.Advance(TimeSpan.FromSeconds(1)); return report.IsCompleted; }, "the job was served");
        Assert.Equal(("result", 9L), ((await report).Kind, (await report).JobId));
    }
}
