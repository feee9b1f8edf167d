using System.Net;
using Coordinator.Grid.Duties;
using Coordinator.Tests.Infrastructure;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;

namespace GridWorker.Tests;

/// <summary>
/// Time-driven behaviour of the agent: heartbeats, time limits, the grace period and the model watch. The coordinator
/// and the agent each run on a manual clock the test moves; nothing sleeps.
/// </summary>
public class AgentLifecycleTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private readonly ManualTimeProvider _workerClock = new();

    private async Task<(ApiClient Account, AgentRun Run)> StartAsync(FakeBackend backend)
    {
        var account = await Host.NewAccountOnPlanAsync(null, null);
        var settings = AgentRun.SettingsFor(Host.BaseAddress, await account.NewKeyAsync(), backend.Info());
        return (account, await AgentRun.StartRegisteredAsync(settings, _workerClock));
    }

    private static TaskCompletionSource NewHold() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    [Fact]
    public async Task LongJob_SendsHeartbeats_SoTheCoordinatorDoesNotRequeueIt()
    {
        var model = ApiClient.Unique("hb") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var hold = NewHold();
        ollama.Reply = _ => new FakeReply { Hold = hold };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "a long story" });
        await ollama.NextRequestAsync();
        await account.WaitForJobAsync(id, "running");

        // 60 s into the job the worker's 30 s heartbeat has fired (twice; the clocks move in steps).
        fixture.Clock.Advance(TimeSpan.FromSeconds(60));
        _workerClock.Advance(TimeSpan.FromSeconds(30));
        await Eventually.TrueAsync(() => run.Output.Lines.Any(l => l.Contains("heartbeat (1 job(s) running)", StringComparison.Ordinal)), "a heartbeat was sent");
        // 120 s after the claim: without that heartbeat the worker would be 30 s past the 90 s offline window.
        fixture.Clock.Advance(TimeSpan.FromSeconds(60));
        var report = await Host.Get<GridDuties>().RunOnceAsync();

        var job = await account.GetJobAsync(id);
        Assert.Equal("running", job.GetProperty("status").GetString());
        Assert.Equal(1, job.GetProperty("attempts").GetInt32());
        hold.SetResult();
        Assert.Equal("completed", (await account.WaitForJobAsync(id, "completed", "pending", "failed")).GetProperty("status").GetString());
        Assert.NotNull(report);
    }

    [Fact]
    public async Task JobPastItsTimeLimit_IsFailedWithTheReason()
    {
        var model = ApiClient.Unique("tl") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        ollama.Reply = _ => new FakeReply { Hold = NewHold() };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p", timeout_seconds = 60 });
        await ollama.NextRequestAsync();
        _workerClock.Advance(TimeSpan.FromSeconds(60));

        var job = await account.WaitForJobAsync(id, "failed", "completed");
        Assert.Equal("failed", job.GetProperty("status").GetString());
        Assert.Equal($"time limit reached: {model} on Ollama did not finish within the job's 60 s", job.GetProperty("error").GetString());
        Assert.Equal(0, run.Agent.RunningJobs);
    }

    [Fact]
    public async Task Shutdown_LetsARunningJobFinishWithinTheGracePeriod_AndTakesNoMore()
    {
        var model = ApiClient.Unique("gs") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var hold = NewHold();
        ollama.Reply = _ => new FakeReply { Hold = hold };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        await ollama.NextRequestAsync();
        run.RequestStop();
        var later = await account.SubmitAsync(new { model, model_match = "exact", prompt = "too late" });
        Assert.False(run.Run.IsCompleted);
        hold.SetResult();

        Assert.Equal(0, await run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("completed", (await account.GetJobAsync(id)).GetProperty("status").GetString());
        Assert.Equal("pending", (await account.GetJobAsync(later)).GetProperty("status").GetString());
        Assert.Contains(run.Output.Lines, l => l.Contains("1 running job(s) get 30 s to finish", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Shutdown_FailsJobsStillRunningAfterTheGracePeriod()
    {
        var model = ApiClient.Unique("gf") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        ollama.Reply = _ => new FakeReply { Hold = NewHold() };
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        await ollama.NextRequestAsync();
        run.RequestStop();
        _workerClock.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal("running", (await account.GetJobAsync(id)).GetProperty("status").GetString());
        _workerClock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(0, await run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        var job = await account.GetJobAsync(id);
        Assert.Equal("failed", job.GetProperty("status").GetString());
        Assert.Equal(WorkerAgent.ShuttingDownMessage, job.GetProperty("error").GetString());
    }

    [Fact]
    public async Task NewModelOnTheBackend_IsAdvertisedAndServed()
    {
        var first = ApiClient.Unique("mc") + ":8b";
        var added = ApiClient.Unique("mc") + ":14b";
        await using var ollama = await FakeOllama.StartAsync(first);
        var (account, run) = await StartAsync(ollama);
        await using var stopAgent = run;

        ollama.Models = [first, added];
        _workerClock.Advance(TimeSpan.FromSeconds(60));
        await Eventually.TrueAsync(() => run.Agent.AdvertisedModels.Any(m => m.Name == added), "the new model was advertised");
        Assert.Contains(run.Output.Lines, l => l.Contains($"models changed: now serving {first}, {added}", StringComparison.Ordinal)
            || l.Contains($"models changed: now serving {added}, {first}", StringComparison.Ordinal));
        var models = await ApiClient.ExpectAsync(await account.GetAsync("models"), HttpStatusCode.OK);
        Assert.Contains(added, models.GetRawText(), StringComparison.Ordinal);

        var id = await account.SubmitAsync(new { model = added, model_match = "exact", prompt = "p" });
        Assert.Equal(added, (await account.WaitForJobAsync(id, "completed")).GetProperty("model_used").GetString());

        // A model that goes away is withdrawn too.
        ollama.Models = [added];
        _workerClock.Advance(TimeSpan.FromSeconds(60));
        await Eventually.TrueAsync(() => run.Agent.AdvertisedModels.All(m => m.Name != first), "the removed model was withdrawn");
    }
}
