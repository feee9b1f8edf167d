using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;
using Coordinator.Tests.Infrastructure;

namespace GridWorker.Tests;

/// <summary>
/// <c>grid-worker</c> as its own process, stopped with real signals: what the host it runs on must leave as it was
/// (the reporter's lines alone on the console, the exit codes, a second signal failing running jobs).
/// </summary>
public sealed class ProgramTests
{
    private const string Model = "llama3:8b";

    /// <summary>A worker process serving one job that the fake Ollama holds until the test releases it.</summary>
    private sealed record HeldJob(FakeCoordinator Coordinator, FakeOllama Ollama, WorkerProcess Worker, TaskCompletionSource Hold) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Hold.TrySetResult();
            await Worker.DisposeAsync();
            await Ollama.DisposeAsync();
            await Coordinator.DisposeAsync();
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "the fakes go to the HeldJob, which the test disposes")]
    private static async Task<HeldJob> StartHeldJobAsync()
    {
        var coordinator = await FakeCoordinator.StartAsync();
        var ollama = await FakeOllama.StartAsync(Model);
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ollama.Reply = _ => new FakeReply { Hold = hold };
        var worker = WorkerProcess.Start("--coordinator", coordinator.BaseUrl.ToString(), "--api-key", "vk_live_worker",
            "--backend-url", ollama.BaseUrl.ToString(), "--name", "process-worker");
        var held = new HeldJob(coordinator, ollama, worker, hold);
        await Eventually.TrueAsync(() => worker.Output.Lines.Any(l => l.Contains("registered as worker 1", StringComparison.Ordinal)) || worker.HasExited,
            "the worker registered", 30_000);
        Assert.False(worker.HasExited, $"grid-worker exited:\n{worker.Output}\n{worker.Errors}");
        coordinator.Enqueue(new { job_id = 7, model = Model, model_match = "exact", prompt = "p", blobs = Array.Empty<object>(), timeout_seconds = 600 });
        await ollama.NextRequestAsync();
        return held;
    }

    [Fact]
    public async Task FirstSignal_LetsTheRunningJobFinish_AndTheConsoleHoldsOnlyTheReportersLines()
    {
        await using var held = await StartHeldJobAsync();
        await held.Worker.SignalAsync("TERM");
        await Eventually.TrueAsync(() => held.Worker.Output.Lines.Any(l => l.EndsWith(" stopping: no new jobs; 1 running job(s) get 30 s to finish", StringComparison.Ordinal)),
            "the worker took the signal");
        Assert.False(held.Worker.HasExited);

        held.Hold.SetResult();
        Assert.Equal(("result", 7L), await NextReportAsync(held.Coordinator));
        Assert.Equal(0, await held.Worker.ExitCodeAsync());
        // Registered, stopping, the job, stopped: the host added no start-up or shutdown lines of its own.
        Assert.Collection(held.Worker.Output.Lines,
            l => Assert.Contains("registered as worker 1 \"process-worker\"", l, StringComparison.Ordinal),
            l => Assert.Contains("stopping: no new jobs", l, StringComparison.Ordinal),
            l => Assert.Contains("job 7 done:", l, StringComparison.Ordinal),
            l => Assert.Matches(@"^\d\d:\d\d:\d\d stopped$", l));
        Assert.Empty(held.Worker.Errors.Lines);
    }

    [Fact]
    public async Task SecondSignal_FailsTheRunningJobAtOnce()
    {
        await using var held = await StartHeldJobAsync();
        await held.Worker.SignalAsync("INT");
        await Eventually.TrueAsync(() => held.Worker.Output.Lines.Any(l => l.Contains("stopping: no new jobs", StringComparison.Ordinal)), "the worker took the first signal");
        await held.Worker.SignalAsync("INT");

        // Well inside the 30 s grace period, with the backend still holding the job.
        Assert.Equal(0, await held.Worker.ExitCodeAsync(20_000));
        Assert.Contains(held.Worker.Output.Lines, l => l.EndsWith($"warning: job 7 failed: {WorkerAgent.ShuttingDownMessage}", StringComparison.Ordinal));
        Assert.DoesNotContain(held.Worker.Output.Lines, l => l.Contains("grace period over", StringComparison.Ordinal) || l.Contains("job 7 done", StringComparison.Ordinal));
    }

    [Fact]
    public async Task VersionHelpAndBadFlags_AnswerAtOnce_WithTheirExitCodes()
    {
        await using (var version = WorkerProcess.Start("--version"))
        {
            Assert.Equal(0, await version.ExitCodeAsync());
            Assert.Equal([WorkerAgent.AgentVersion], version.Output.Lines);
        }
        await using (var help = WorkerProcess.Start("--help"))
        {
            Assert.Equal(0, await help.ExitCodeAsync());
            Assert.Equal(WorkerSettings.HelpText.TrimEnd('\n').Split('\n'), help.Output.Lines);
        }
        await using (var bad = WorkerProcess.Start("--coordinator", "http://127.0.0.1:9", "--api-key", "k", "--port", "1"))
        {
            Assert.Equal(2, await bad.ExitCodeAsync());
            Assert.Empty(bad.Output.Lines);
            Assert.StartsWith("grid-worker: unknown option '--port'", Assert.Single(bad.Errors.Lines), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task NoBackend_ExitsWithOne_AndTheReportersLineAlone()
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using var worker = WorkerProcess.Start("--coordinator", coordinator.BaseUrl.ToString(), "--api-key", "vk_live_worker", "--backend-url", "http://127.0.0.1:9");
        Assert.Equal(1, await worker.ExitCodeAsync());
        Assert.EndsWith("error: Ollama is not reachable at http://127.0.0.1:9. Start it with `ollama serve`, or set --backend-url.",
            Assert.Single(worker.Output.Lines), StringComparison.Ordinal);
        Assert.Empty(worker.Errors.Lines);
    }

    private static async Task<(string Kind, long JobId)> NextReportAsync(FakeCoordinator coordinator)
    {
        var report = await coordinator.NextReportAsync();
        return (report.Kind, report.JobId);
    }
}
