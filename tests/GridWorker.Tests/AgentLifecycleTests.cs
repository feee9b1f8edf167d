using System.Net;
using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

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

    /// <summary>An agent on the worker clock running one job that the fake Ollama holds until the test releases it.</summary>
    private sealed record HeldJob(ApiClient Account, AgentRun Run, FakeOllama Ollama, long Id, string Model, TaskCompletionSource Hold) : IAsyncDisposable
    {
        public async Task<string?> StatusAsync() => (await Account.GetJobAsync(Id)).GetProperty("status").GetString();

        public async ValueTask DisposeAsync()
        {
            await Run.DisposeAsync();
            await Ollama.DisposeAsync();
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "the fake backend goes to the HeldJob, which the test disposes")]
    private async Task<HeldJob> StartHeldJobAsync(int timeoutSeconds = 600)
    {
        var model = ApiClient.Unique("held") + ":8b";
        var ollama = await FakeOllama.StartAsync(model);
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ollama.Reply = _ => new FakeReply { Hold = hold };
        var (account, run) = await StartAsync(ollama);
        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "a long story", timeout_seconds = timeoutSeconds });
        await ollama.NextRequestAsync();
        return new HeldJob(account, run, ollama, id, model, hold);
    }

    [Fact]
    public async Task LongJob_SendsHeartbeats_SoTheCoordinatorDoesNotRequeueIt()
    {
        await using var held = await StartHeldJobAsync();
        await held.Account.WaitForJobAsync(held.Id, "running");

        // 60 s into the job the worker's 30 s heartbeat has fired (the clocks move in steps).
        fixture.Clock.Advance(TimeSpan.FromSeconds(60));
        _workerClock.Advance(TimeSpan.FromSeconds(30));
        await Eventually.TrueAsync(() => held.Run.Output.Lines.Any(l => l.Contains("heartbeat (1 job(s) running)", StringComparison.Ordinal)), "a heartbeat was sent");
        // 120 s after the claim: without that heartbeat the worker would be 30 s past the 90 s offline window.
        fixture.Clock.Advance(TimeSpan.FromSeconds(60));
        await Host.Get<GridDuties>().RunOnceAsync();

        var job = await held.Account.GetJobAsync(held.Id);
        Assert.Equal("running", job.GetProperty("status").GetString());
        Assert.Equal(1, job.GetProperty("attempts").GetInt32());
        held.Hold.SetResult();
        Assert.Equal("completed", (await held.Account.WaitForJobAsync(held.Id, "completed", "pending", "failed")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task JobPastItsTimeLimit_IsFailedWithTheReason()
    {
        await using var held = await StartHeldJobAsync(timeoutSeconds: 60);
        _workerClock.Advance(TimeSpan.FromSeconds(60));

        var job = await held.Account.WaitForJobAsync(held.Id, "failed", "completed");
        Assert.Equal("failed", job.GetProperty("status").GetString());
        Assert.Equal($"time limit reached: {held.Model} on Ollama did not finish within the job's 60 s", job.GetProperty("error").GetString());
        await Eventually.TrueAsync(() => held.Run.Agent.RunningJobs == 0, "the job left the agent");
    }

    [Fact]
    public async Task Shutdown_LetsARunningJobFinishWithinTheGracePeriod_AndTakesNoMore()
    {
        await using var held = await StartHeldJobAsync();
        held.Run.RequestStop();
        var later = await held.Account.SubmitAsync(new { model = held.Model, model_match = "exact", prompt = "too late" });
        Assert.False(held.Run.Run.IsCompleted);
        held.Hold.SetResult();

        Assert.Equal(0, await held.Run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("completed", await held.StatusAsync());
        Assert.Equal("pending", (await held.Account.GetJobAsync(later)).GetProperty("status").GetString());
        Assert.Contains(held.Run.Output.Lines, l => l.Contains("1 running job(s) get 30 s to finish", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Shutdown_FailsJobsStillRunningAfterTheGracePeriod()
    {
        await using var held = await StartHeldJobAsync();
        held.Run.RequestStop();
        _workerClock.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal("running", await held.StatusAsync());
        _workerClock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(0, await held.Run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        var job = await held.Account.GetJobAsync(held.Id);
        Assert.Equal("failed", job.GetProperty("status").GetString());
        Assert.Equal(WorkerAgent.ShuttingDownMessage, job.GetProperty("error").GetString());
    }

    [Fact]
    public async Task HostStop_WaitsForTheRunningJob_ThenTheAgentStops()
    {
        await using var held = await StartHeldJobAsync();
        // The host's own shutdown (what a service manager's stop comes down to), not the signal path.
        var hostStopped = held.Run.Host.StopAsync();
        await Eventually.TrueAsync(() => held.Run.Output.Lines.Any(l => l.Contains("1 running job(s) get 30 s to finish", StringComparison.Ordinal)),
            "the agent took the host's stopping token");
        Assert.False(hostStopped.IsCompleted);
        Assert.Equal("running", await held.StatusAsync());
        // Its timeout runs on the real clock, which a test cannot move: the grace period is the agent's to keep.
        Assert.Equal(Timeout.InfiniteTimeSpan, held.Run.Host.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout);

        held.Hold.SetResult();
        await hostStopped.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, await held.Run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("completed", await held.StatusAsync());
        Assert.Equal("stopped", held.Run.Output.Lines[^1][9..]);
    }

    [Fact]
    public async Task SecondStopRequest_FailsTheRunningJobAtOnce()
    {
        await using var held = await StartHeldJobAsync();
        held.Run.RequestStop();
        Assert.Equal("running", await held.StatusAsync());
        held.Run.RequestStop();

        // Well inside the grace period: the worker clock has not moved.
        Assert.Equal(0, await held.Run.Run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(held.Run.Output.Lines, l => l.EndsWith($"warning: job {held.Id} failed: {WorkerAgent.ShuttingDownMessage}", StringComparison.Ordinal));
        Assert.DoesNotContain(held.Run.Output.Lines, l => l.Contains("grace period over", StringComparison.Ordinal));
        Assert.Equal(0, held.Run.Agent.RunningJobs);
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
        // The clock moves until the check has run: the watch may not have started its wait when the test first moves it.
        await Eventually.TrueAsync(() => { _workerClock.Advance(TimeSpan.FromSeconds(60)); return run.Agent.AdvertisedModels.Any(m => m.Name == added); },
            "the new model was advertised");
        Assert.Contains(run.Output.Lines, l => l.Contains($"models changed: now serving {first}, {added}", StringComparison.Ordinal)
            || l.Contains($"models changed: now serving {added}, {first}", StringComparison.Ordinal));
        var models = await ApiClient.ExpectAsync(await account.GetAsync("models"), HttpStatusCode.OK);
        Assert.Contains(added, models.GetRawText(), StringComparison.Ordinal);

        var id = await account.SubmitAsync(new { model = added, model_match = "exact", prompt = "p" });
        Assert.Equal(added, (await account.WaitForJobAsync(id, "completed")).GetProperty("model_used").GetString());

        // A model that goes away is withdrawn too.
        ollama.Models = [added];
        await Eventually.TrueAsync(() => { _workerClock.Advance(TimeSpan.FromSeconds(60)); return run.Agent.AdvertisedModels.All(m => m.Name != first); },
            "the removed model was withdrawn");
    }
}
