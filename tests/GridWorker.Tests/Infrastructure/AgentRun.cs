using System.Net;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace GridWorker.Tests.Infrastructure;

/// <summary>Keeps every line a writer is given; safe to read while the agent writes.</summary>
public sealed class LineWriter : TextWriter
{
    private readonly Lock _lock = new();
    private readonly List<string> _lines = [];
    private readonly StringBuilder _partial = new();

    public override Encoding Encoding => Encoding.UTF8;

    public IReadOnlyList<string> Lines
    {
        get { lock (_lock) return _lines.ToList(); }
    }

    public override string ToString() => string.Join('\n', Lines);

    public override void Write(char value)
    {
        lock (_lock)
        {
            if (value == '\n')
            {
                _lines.Add(_partial.ToString().TrimEnd('\r'));
                _partial.Clear();
            }
            else
            {
                _partial.Append(value);
            }
        }
    }

    public override void WriteLine(string? value)
    {
        lock (_lock) _lines.Add(value ?? "");
    }
}

/// <summary>
/// The real agent, run in-process on the host <c>grid-worker run</c> builds (<see cref="WorkerHost"/>) against a
/// coordinator and a backend, until the test stops it. Only the process's signals stay the test runner's.
/// </summary>
public sealed class AgentRun : IAsyncDisposable
{
    private readonly WorkerService _service;

    private AgentRun(WorkerSettings settings, TimeProvider time)
    {
        Settings = settings;
        Output = new LineWriter();
        var builder = WorkerHost.CreateBuilder(settings, Output, time);
        builder.Services.AddSingleton<IHostLifetime, NoSignalsLifetime>();
        Host = builder.Build();
        Agent = Host.Services.GetRequiredService<WorkerAgent>();
        _service = Host.Services.GetRequiredService<WorkerService>();
        Run = Task.Run(async () =>
        {
            await Host.RunAsync();
            return await _service.ExitCode;
        });
    }

    public IHost Host { get; }

    public WorkerSettings Settings { get; }

    public WorkerAgent Agent { get; }

    public LineWriter Output { get; }

    /// <summary>The agent's exit code, once it has stopped.</summary>
    public Task<int> Run { get; }

    /// <summary>Settings for a test worker: short retry waits so reconnect tests finish quickly.</summary>
    public static WorkerSettings SettingsFor(Uri coordinator, string key, FakeBackendInfo backend, string? name = null) => new()
    {
        Coordinator = WorkerSettings.NormalizeCoordinator(coordinator.ToString()),
        ApiKey = key,
        Name = name ?? ApiClient.Unique("worker-"),
        Backend = backend.Kind,
        BackendUrl = backend.Url,
        RetryInitialDelay = TimeSpan.FromMilliseconds(50),
        RetryMaxDelay = TimeSpan.FromMilliseconds(500),
    };

    public static AgentRun Start(WorkerSettings settings, TimeProvider? time = null) => new(settings, time ?? TimeProvider.System);

    /// <summary>Starts the agent and waits until it has registered.</summary>
    public static async Task<AgentRun> StartRegisteredAsync(WorkerSettings settings, TimeProvider? time = null)
    {
        var run = Start(settings, time);
        await Eventually.TrueAsync(() => run.Agent.WorkerId != 0 || run.Run.IsCompleted, "the agent registered", 30_000);
        Assert.True(run.Agent.WorkerId != 0, "the agent stopped before registering:\n" + run.Output);
        return run;
    }

    /// <summary>
    /// Ctrl-C, as <see cref="SignalLifetime"/> passes it on: the first stops polling and lets running jobs finish
    /// within the grace period, a second fails them now. The first returns once the agent has said it is stopping
    /// (its grace period is running then), so a test can move the clock through it.
    /// </summary>
    public void RequestStop()
    {
        var registered = Agent.WorkerId != 0;
        _service.RequestStop();
        if (!registered) return; // an agent still starting up stops without a word
        Assert.True(SpinWait.SpinUntil(() => Output.Lines.Any(IsStopping) || Run.IsCompleted, TimeSpan.FromSeconds(30)),
            "the agent did not take the stop:\n" + Output);
    }

    public async Task<int> StopAsync()
    {
        RequestStop();
        return await Run.WaitAsync(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        _service.RequestStop();
        Agent.AbortRunningJobs();
        try
        {
            await Run.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (Exception)
        {
            // a test that failed may leave the agent in any state; the test's own assertion says why
        }
    }

    /// <summary>The agent's "stopping" line, as text or as JSON.</summary>
    private static bool IsStopping(string line) =>
        line.Contains("\"event\":\"stopping\"", StringComparison.Ordinal)
        || System.Text.RegularExpressions.Regex.IsMatch(line, @"^\d\d:\d\d:\d\d stopping(:|$)");
}

/// <summary>A host lifetime that leaves the process's signals alone: in a test they belong to the test runner.</summary>
public sealed class NoSignalsLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

public sealed record FakeBackendInfo(BackendKind Kind, Uri Url);

public static class GridExtensions
{
    public static FakeBackendInfo Info(this Fakes.FakeBackend fake) =>
        new(fake is Fakes.FakeOpenAi ? BackendKind.OpenAi : BackendKind.Ollama, fake.BaseUrl);

    /// <summary>A new key on this account, not yet bound to a worker: what a volunteer passes as --api-key.</summary>
    public static async Task<string> NewKeyAsync(this ApiClient account)
    {
        var created = await ApiClient.ExpectAsync(await account.PostAsync("keys", new { name = ApiClient.Unique("k") }), HttpStatusCode.Created);
        return created.GetProperty("key").GetString()!;
    }

    /// <summary>Waits until the job reaches one of the given statuses; answers it.</summary>
    public static async Task<JsonElement> WaitForJobAsync(this ApiClient account, long id, params string[] statuses)
    {
        JsonElement job = default;
        var deadline = Environment.TickCount64 + 30_000;
        while (true)
        {
            job = await account.GetJobAsync(id);
            if (statuses.Contains(job.GetProperty("status").GetString())) return job;
            Assert.True(Environment.TickCount64 < deadline, $"job {id} did not reach {string.Join("/", statuses)}: {job}");
            await Task.Delay(20);
        }
    }
}
