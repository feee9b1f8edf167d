using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Coordinator.Grains;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Database;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Coordinator.Bench;

/// <summary>One scenario's outcome for one system, in the peers' terms.</summary>
public sealed record EngineResult(string System, string Version, string Scenario, int Jobs, double Seconds, double JobsPerSecond,
    LatencySummary? Latency, double? OfferedRate, double AchievedRate, DatabaseCost Cost, string Notes)
{
    public double StatementsPerJob => Cost.StatementsPer(Jobs);

    /// <summary>CPU time of the consumers' process while it drained (this process for ours, the Node process for a peer).</summary>
    public double ConsumerCpuSeconds { get; init; } = double.NaN;

    public double ConsumerCpuMicrosecondsPerJob => ConsumerCpuSeconds * 1e6 / Jobs;

    public double DbCpuMicrosecondsPerJob => Cost.CpuSecondsPer(Jobs) * 1e6;

    public double WalBytesPerJob => Cost.WalBytesPer(Jobs);

    public double DbCpuPercent => Seconds == 0 ? double.NaN : Cost.CpuSeconds / Seconds * 100;
}

/// <summary>
/// Our engine (Coordinator.Grains in-process, no HTTP) against PostgreSQL job queue libraries, on the same server,
/// a fresh database each, 16 consumers, no-op jobs.
/// </summary>
public sealed class EngineBenchmarks(BenchOptions options, BenchDatabase database, Report report)
{
    private const int Consumers = 16;
    private const int WarmUpJobs = 50;
    private const string Model = "bench:1";

    public async Task RunAsync()
    {
        var drainJobs = options.Quick ? 10_000 : 100_000;
        var latencyJobs = options.Quick ? 100 : 1000;
        int[] rates = options.Quick ? [500] : [200, 500, 1000];
        var duration = options.Quick ? 10 : 60;

        var results = new List<EngineResult>();
        bool Runs(string scenario) => options.Scenarios.Count == 0 || options.Scenarios.Contains(scenario);
        if (Runs("drain")) results.AddRange(await EachSystemAsync("drain", run => OursDrainAsync(run, drainJobs), $"--jobs {drainJobs}"));
        if (Runs("latency")) results.AddRange(await EachSystemAsync("latency", run => OursLatencyAsync(run, latencyJobs), $"--jobs {latencyJobs}"));
        foreach (var rate in Runs("steady") ? rates : [])
        {
            results.AddRange(await EachSystemAsync($"steady {rate}/s", run => OursSteadyAsync(run, rate, duration), $"--rate {rate} --duration {duration}", "steady"));
        }
        Write(results, drainJobs, latencyJobs, duration);
    }

    private async Task<List<EngineResult>> EachSystemAsync(string scenario, Func<int, Task<EngineResult>> ours, string peerArgs, string? peerScenario = null)
    {
        var all = new List<EngineResult>();
        var repeat = scenario.StartsWith("steady", StringComparison.Ordinal) ? 1 : options.Repeat;
        var oursRuns = new List<EngineResult>();
        for (var run = 0; run < repeat; run++)
        {
            var result = await ours(run);
            Console.WriteLine($"engine {scenario} run {run}: ours {Describe(result)}");
            oursRuns.Add(result);
        }
        all.Add(MedianOf(oursRuns));
        foreach (var peer in options.Peers)
        {
            var peerRuns = new List<EngineResult>();
            // pg-boss polls every 0.5 s, so 1,000 sequential jobs take it over two minutes a run: one run of it.
            var peerRepeat = peer == "pgboss" && scenario == "latency" ? 1 : repeat;
            for (var run = 0; run < peerRepeat; run++)
            {
                try
                {
                    var result = await PeerAsync(peer, run, peerScenario ?? scenario, peerArgs, scenario);
                    Console.WriteLine($"engine {scenario} run {run}: {peer} {Describe(result)}");
                    peerRuns.Add(result);
                }
                catch (Exception exception)
                {
                    Console.WriteLine($"engine {scenario} run {run}: {peer} FAILED: {exception.Message}");
                }
            }
            if (peerRuns.Count > 0) all.Add(MedianOf(peerRuns));
        }
        return all;
    }

    private static string Describe(EngineResult r) =>
        $"{r.JobsPerSecond:F0} jobs/s, {r.Latency?.ToString() ?? "-"}, {r.StatementsPerJob:F2} statements/job, {r.WalBytesPerJob:F0} WAL B/job, DB CPU {r.DbCpuPercent:F0}%" +
        (double.IsNaN(r.ConsumerCpuSeconds) ? "" : $", consumer CPU {r.ConsumerCpuMicrosecondsPerJob:F1} µs/job");

    private static EngineResult MedianOf(List<EngineResult> runs)
    {
        if (runs.Count == 1) return runs[0];
        var byThroughput = runs.OrderBy(r => r.JobsPerSecond).ToList();
        var middle = byThroughput[byThroughput.Count / 2];
        var latency = runs[0].Latency is null ? null : LatencySummary.MedianOf(runs.Select(r => r.Latency!).ToList());
        return middle with { Latency = latency, Notes = $"{middle.Notes} (median of {runs.Count} runs)".Trim() };
    }

    // ---- ours -------------------------------------------------------------------------------------------------

    private async Task<EngineResult> OursDrainAsync(int run, int jobs)
    {
        await using var engine = await EngineNode.StartAsync(database, $"eng_ours_drain_{run}", Consumers);
        await database.ExecAsync(engine.ConnectionString, $"""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
            SELECT {engine.AccountId}, 'pending', '{Model}', 'bench', 'exact', 'noop', 0, 600, now() FROM generate_series(1, {jobs});
            ANALYZE jobs;
            """);
        await database.ResetStatementsAsync();
        var before = await database.SnapshotAsync(engine.Database);
        var started = Stopwatch.GetTimestamp();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        await engine.ConsumeAsync(jobs, onClaimed: null);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu;
        var cost = await database.CostSinceAsync(engine.Database, before);
        foreach (var line in await database.TopStatementsAsync(engine.Database, jobs, 6)) Console.WriteLine($"    {line}");
        return new EngineResult("coordinator", "this repo", "drain", jobs, seconds, jobs / seconds, null, null, jobs / seconds, cost,
            $"{EngineNode.Slots} polls per consumer through the worker, dispatcher and job grains (claims by id from the dispatcher's memory), claims, starts and results group-committed; jobs pre-inserted with SQL")
        {
            ConsumerCpuSeconds = cpu.TotalSeconds,
        };
    }

    private async Task<EngineResult> OursLatencyAsync(int run, int jobs)
    {
        await using var engine = await EngineNode.StartAsync(database, $"eng_ours_latency_{run}", Consumers);
        var latencies = new Latencies();
        using var gate = new SemaphoreSlim(0);
        var measuring = false;
        var consuming = engine.ConsumeAsync(WarmUpJobs + jobs, job =>
        {
            if (measuring) latencies.AddSince(long.Parse(job.Prompt, CultureInfo.InvariantCulture));
            gate.Release();
        });
        await WarmUpAsync(engine, gate);
        measuring = true;
        await database.ResetStatementsAsync();
        var before = await database.SnapshotAsync(engine.Database);
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < jobs; i++)
        {
            await engine.SubmitAsync();
            await gate.WaitAsync(TimeSpan.FromSeconds(30));
        }
        await consuming;
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cost = await database.CostSinceAsync(engine.Database, before);
        foreach (var line in await database.TopStatementsAsync(engine.Database, jobs, 6)) Console.WriteLine($"    {line}");
        return new EngineResult("coordinator", "this repo", "latency", jobs, seconds, jobs / seconds, latencies.Summarise(), null, jobs / seconds, cost,
            "submission through the dispatcher grain → inserted already claimed for a parked consumer poll (one statement)");
    }

    private async Task<EngineResult> OursSteadyAsync(int run, int rate, int durationSeconds)
    {
        await using var engine = await EngineNode.StartAsync(database, $"eng_ours_steady_{rate}_{run}", Consumers);
        var latencies = new Latencies();
        var total = rate * durationSeconds;
        var measuring = false;
        using var gate = new SemaphoreSlim(0);
        var consuming = engine.ConsumeAsync(WarmUpJobs + total, job =>
        {
            if (measuring) latencies.AddSince(long.Parse(job.Prompt, CultureInfo.InvariantCulture));
            else gate.Release();
        });
        await WarmUpAsync(engine, gate);
        measuring = true;
        await database.ResetStatementsAsync();
        var before = await database.SnapshotAsync(engine.Database);
        var started = Stopwatch.GetTimestamp();
        var submitted = 0;
        var inserts = new List<Task>(total);
        while (submitted < total)
        {
            var due = Math.Min(total, (int)(Stopwatch.GetElapsedTime(started).TotalSeconds * rate));
            for (; submitted < due; submitted++) inserts.Add(engine.SubmitAsync());
            await Task.Delay(10);
        }
        var offeredSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        await Task.WhenAll(inserts);
        await consuming.WaitAsync(TimeSpan.FromSeconds(60));
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cost = await database.CostSinceAsync(engine.Database, before);
        foreach (var line in await database.TopStatementsAsync(engine.Database, total, 6)) Console.WriteLine($"    {line}");
        return new EngineResult("coordinator", "this repo", "steady", total, seconds, total / seconds, latencies.Summarise(), rate, total / offeredSeconds, cost,
            "individual inserts on a 10 ms schedule");
    }

    /// <summary>As the peers do: 50 jobs one by one through the same path before measuring; then every consumer is parked again.</summary>
    private static async Task WarmUpAsync(EngineNode engine, SemaphoreSlim started)
    {
        for (var i = 0; i < WarmUpJobs; i++)
        {
            await engine.SubmitAsync();
            await started.WaitAsync(TimeSpan.FromSeconds(30));
        }
        await Until.TrueAsync(async () => await engine.ParkedConsumersAsync() == Consumers * EngineNode.Slots, "every consumer's polls are parked again");
    }

    // ---- peers ------------------------------------------------------------------------------------------------

    private async Task<EngineResult> PeerAsync(string peer, int run, string peerScenario, string peerArgs, string scenarioLabel)
    {
        var dbName = $"eng_{peer}_{scenarioLabel.Replace(' ', '_').Replace("/", "", StringComparison.Ordinal)}_{run}";
        var connection = await database.CreateAsync(dbName);
        var start = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(options.PeersDir, $"{peer}.mjs"));
        foreach (var arg in $"--conn {BenchDatabase.ToUrl(connection)} --scenario {peerScenario} --consumers {Consumers} {peerArgs}".Split(' ')) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        BenchDatabase.Snapshot? before = null;
        JsonElement? final = null;
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith('{')) continue;
            using var json = JsonDocument.Parse(line);
            if (json.RootElement.TryGetProperty("event", out var e) && e.GetString() == "measuring") before = await database.SnapshotAsync(dbName);
            else final = json.RootElement.Clone();
        }
        await process.WaitForExitAsync();
        if (process.ExitCode != 0 || final is not { } r || before is null)
        {
            throw new InvalidOperationException($"{peer} exited {process.ExitCode}: {(await stderr)[..Math.Min(2000, (await stderr).Length)]}");
        }
        var cost = await database.CostSinceAsync(dbName, before);
        await database.DropAsync(dbName);
        LatencySummary? latency = null;
        if (r.TryGetProperty("latency_ms", out var l) && l.ValueKind == JsonValueKind.Object)
        {
            latency = new LatencySummary(r.GetProperty("jobs").GetInt32(), l.GetProperty("p50").GetDouble(), l.GetProperty("p95").GetDouble(), l.GetProperty("p99").GetDouble(), l.GetProperty("max").GetDouble());
        }
        return new EngineResult(r.GetProperty("system").GetString()!, r.GetProperty("version").GetString()!, peerScenario, r.GetProperty("jobs").GetInt32(),
            r.GetProperty("seconds").GetDouble(), r.GetProperty("jobs_per_sec").GetDouble(), latency,
            r.TryGetProperty("offered_rate", out var o) && o.ValueKind == JsonValueKind.Number ? o.GetDouble() : null,
            r.TryGetProperty("achieved_rate", out var a) && a.ValueKind == JsonValueKind.Number ? a.GetDouble() : r.GetProperty("jobs_per_sec").GetDouble(),
            cost, r.TryGetProperty("notes", out var n) ? n.GetString() ?? "" : "")
        {
            ConsumerCpuSeconds = r.TryGetProperty("cpu_seconds", out var c) && c.ValueKind == JsonValueKind.Number ? c.GetDouble() : double.NaN,
        };
    }

    // ---- report -----------------------------------------------------------------------------------------------

    private void Write(List<EngineResult> results, int drainJobs, int latencyJobs, int duration)
    {
        report.Set("engine.results", results.Select(r => new
        {
            r.System, r.Version, r.Scenario, r.Jobs, r.Seconds, r.JobsPerSecond, latency_ms = r.Latency, r.OfferedRate, r.AchievedRate,
            statements_per_job = r.StatementsPerJob, wal_bytes_per_job = r.WalBytesPerJob, db_cpu_percent = r.DbCpuPercent,
            consumer_cpu_seconds = double.IsNaN(r.ConsumerCpuSeconds) ? (double?)null : r.ConsumerCpuSeconds, r.Notes,
        }).ToList());

        var ours = results.Where(r => r.System == "coordinator").ToList();
        var rows = new List<string[]>();
        string Ratio(double us, double them, bool higherIsBetter) =>
            double.IsNaN(us) || double.IsNaN(them) || us == 0 || them == 0 ? "n/a" : $"{(higherIsBetter ? us / them : them / us):F2}×";
        foreach (var group in results.GroupBy(r => r.Scenario == "steady" ? $"steady {r.OfferedRate}/s" : r.Scenario))
        {
            var us = group.First(r => r.System == "coordinator");
            foreach (var peer in group.Where(r => r.System != "coordinator"))
            {
                if (us.Latency is null)
                {
                    rows.Add([group.Key, peer.System, "jobs/s", Report.Num(us.JobsPerSecond), Report.Num(peer.JobsPerSecond), Ratio(us.JobsPerSecond, peer.JobsPerSecond, true)]);
                    rows.Add([group.Key, peer.System, "DB CPU µs / job", Report.Num(us.DbCpuMicrosecondsPerJob, "F1"), Report.Num(peer.DbCpuMicrosecondsPerJob, "F1"),
                        Ratio(us.DbCpuMicrosecondsPerJob, peer.DbCpuMicrosecondsPerJob, false)]);
                    rows.Add([group.Key, peer.System, "consumer process CPU µs / job", Report.Num(us.ConsumerCpuMicrosecondsPerJob, "F1"), Report.Num(peer.ConsumerCpuMicrosecondsPerJob, "F1"),
                        Ratio(us.ConsumerCpuMicrosecondsPerJob, peer.ConsumerCpuMicrosecondsPerJob, false)]);
                }
                else
                {
                    rows.Add([group.Key, peer.System, "p50 latency", Report.Ms(us.Latency.P50), Report.Ms(peer.Latency?.P50 ?? double.NaN), Ratio(us.Latency.P50, peer.Latency?.P50 ?? double.NaN, false)]);
                    rows.Add([group.Key, peer.System, "p99 latency", Report.Ms(us.Latency.P99), Report.Ms(peer.Latency?.P99 ?? double.NaN), Ratio(us.Latency.P99, peer.Latency?.P99 ?? double.NaN, false)]);
                    if (group.Key == "latency")
                    {
                        rows.Add([group.Key, peer.System, "p95 / max latency", $"{Report.Ms(us.Latency.P95)} / {Report.Ms(us.Latency.Max)}",
                            $"{Report.Ms(peer.Latency?.P95 ?? double.NaN)} / {Report.Ms(peer.Latency?.Max ?? double.NaN)}", ""]);
                    }
                    else
                    {
                        rows.Add([group.Key, peer.System, "DB CPU", $"{us.DbCpuPercent:F0}%", $"{peer.DbCpuPercent:F0}%", Ratio(us.DbCpuPercent, peer.DbCpuPercent, false)]);
                    }
                }
                rows.Add([group.Key, peer.System, "SQL statements / job", Report.Num(us.StatementsPerJob, "F2"), Report.Num(peer.StatementsPerJob, "F2"), Ratio(us.StatementsPerJob, peer.StatementsPerJob, false)]);
                rows.Add([group.Key, peer.System, "WAL bytes / job", Report.Num(us.WalBytesPerJob), Report.Num(peer.WalBytesPerJob), Ratio(us.WalBytesPerJob, peer.WalBytesPerJob, false)]);
            }
        }
        var versions = string.Join(", ", results.Where(r => r.System != "coordinator").Select(r => $"{r.System} {r.Version}").Distinct());
        var notes = results.Where(r => r.System != "coordinator").GroupBy(r => r.System).Select(g => $"{g.Key}: {g.First().Notes.Replace(" (median of 3 runs)", "", StringComparison.Ordinal)}");
        report.Table("Engine against library queues (same PostgreSQL server, fresh database each, 16 consumers, no-op jobs)",
            ["scenario", "peer", "figure", "coordinator", "peer", "coordinator better by"], rows,
            [$"Drain: {drainJobs:N0} pre-inserted jobs. Latency: {latencyJobs:N0} sequential jobs, insert to handler start, idle consumers. Steady: fixed offered rate for {duration} s; DB CPU is the PostgreSQL server's CPU time over the run's wall time (100% = one core). Ratios above 1 favour the coordinator. Peers: {versions}.",
             .. notes]);
    }
}

/// <summary>The engine in-process: a generic host with AddGrid and a silo (dispatchers, duties), an account with no limits and N registered workers.</summary>
public sealed class EngineNode : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly BenchDatabase _server;
    private readonly long[] _workers;
    private readonly Capabilities _capabilities = new([Model], [], false);

    private EngineNode(IHost host, BenchDatabase server, string connectionString, string database, long accountId, long[] workers)
    {
        _host = host;
        _server = server;
        ConnectionString = connectionString;
        Database = database;
        AccountId = accountId;
        _workers = workers;
    }

    public string ConnectionString { get; }

    public string Database { get; }

    public long AccountId { get; }

    public JobStore Jobs => _host.Services.GetRequiredService<JobStore>();

    private IGrainFactory Grains => _host.Services.GetRequiredService<IGrainFactory>();

    /// <summary>Consumer polls parked on the bench model's dispatcher.</summary>
    public async Task<int> ParkedConsumersAsync() => (await Grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(Model)).StatsAsync()).ParkedPolls;

    private const string Model = "bench:1";

    public static async Task<EngineNode> StartAsync(BenchDatabase database, string name, int consumers)
    {
        var connectionString = await database.CreateAsync(name);
        // The content root is the binaries, not the working directory: a host watches its content root for config
        // changes, and the working directory holds PostgreSQL's data (.data/bench-pg), whose every write the watcher
        // would read (9% of this process's CPU during the drain).
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddGrid(builder.Configuration, connectionString);
        // The engine runs in a silo of its own, as in the coordinator (one silo, so its clustering can stay local).
        builder.UseOrleans(silo => silo.UseLocalhostClustering(siloPort: FreePort(), gatewayPort: FreePort()));
        // Bench jobs have no webhooks; the HTTP host renders webhook bodies, the engine alone needs a stand-in.
        builder.Services.AddSingleton<Coordinator.Grains.Webhooks.IJobRenderer, NoWebhookBodies>();
        var host = builder.Build();
        await host.Services.GetRequiredService<Migrator>().MigrateAsync();
        await host.StartAsync();
        var accounts = host.Services.GetRequiredService<AccountStore>();
        var account = await accounts.CreateAccountAsync("bench");
        await database.ExecAsync(connectionString, $"""
            INSERT INTO plans (id, name, daily_requests, daily_tokens) VALUES ('bench-unlimited', 'bench', NULL, NULL);
            UPDATE accounts SET plan = 'bench-unlimited' WHERE id = {account.AccountId};
            """);
        var workers = new long[consumers];
        for (var i = 0; i < consumers; i++)
        {
            var key = await accounts.CreateKeyAsync(account.AccountId, $"w{i}");
            workers[i] = await host.Services.GetRequiredService<WorkerStore>().RegisterAsync(account.AccountId, key.Id,
                new WorkerRegistration($"w{i}", "bench", "linux", [new WorkerModel("bench:1", false)], false));
        }
        return new EngineNode(host, database, connectionString, name, account.AccountId, workers);
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>A no-op job whose prompt is the current timestamp, through the real submission path (its dispatcher grain).</summary>
    public Task SubmitAsync() =>
        Grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(Model)).SubmitAsync(AccountId,
            new NewJob(Model, ModelMatch.Exact, Stopwatch.GetTimestamp().ToString(CultureInfo.InvariantCulture), 0, 600, null, null));

    /// <summary>
    /// Runs every consumer until <paramref name="jobs"/> jobs are complete. A consumer is a worker with
    /// <see cref="Slots"/> polls at once, each going the grain path a worker's HTTP calls go, without HTTP: a poll on its
    /// worker grain (a job claimed for it, or handed over on submission), then start and result on the same grain. The
    /// silo's group commit puts concurrent claims, starts and results into shared statements.
    /// </summary>
    public async Task ConsumeAsync(int jobs, Action<ClaimedJob>? onClaimed)
    {
        var completed = 0;
        using var stop = new CancellationTokenSource();
        var result = new JobResult("", 0, 0, 0, null);
        var slots = _workers.SelectMany(worker => Enumerable.Repeat(worker, Slots)).ToList();

        await Task.WhenAll(slots.Select(workerId => Task.Run(async () =>
        {
            var worker = Grains.GetGrain<IWorkerGrain>(workerId);
            while (!stop.IsCancellationRequested)
            {
                var pollId = Guid.NewGuid();
                await using var cancel = stop.Token.Register(() => _ = worker.CancelPollAsync(pollId));
                if (await worker.NextJobAsync(pollId, _capabilities) is not { } job) continue;
                onClaimed?.Invoke(job);
                if ((await worker.StartAsync(job.Id)).Outcome != TransitionOutcome.Done) throw new InvalidOperationException("a start was refused");
                if ((await worker.CompleteAsync(job.Id, result)).Outcome != TransitionOutcome.Done) throw new InvalidOperationException("a result was refused");
                if (Interlocked.Increment(ref completed) >= jobs) await stop.CancelAsync();
            }
        })));
    }

    /// <summary>Polls each consumer keeps open: 16 consumers hold up to 512 jobs at once, as graphile-worker's local queue of 500.</summary>
    public const int Slots = 32;

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
        await _server.DropAsync(Database);
    }
}

internal sealed class NoWebhookBodies : Coordinator.Grains.Webhooks.IJobRenderer
{
    public string Render(JobRow job) => throw new InvalidOperationException("bench jobs have no webhooks");
}
