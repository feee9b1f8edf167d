using System.Diagnostics;
using System.Runtime.InteropServices;
using Coordinator.Bench;

// The benchmark harness. Normally started by bench/run.sh, which provisions PostgreSQL and builds everything:
//   dotnet Coordinator.Bench.dll [--quick] [--only engine,dispatch,lifecycle,receipts-cost,telemetry,backlog,position,parked,priority,scale,failover,rolling,stream,openai,lightning,receipts-verify,ledger-verify] [--repeat N] [--out DIR]
// Environment: BENCH_PG (admin connection string), BENCH_API_DLL (Coordinator.Silo.dll), BENCH_PEERS_DIR (bench/peers),
// BENCH_BASELINE_DLL and BENCH_BASELINE_DESCRIPTION (pg-engine's Coordinator.Api.dll, measured beside ours; --no-baseline skips it).
var options = BenchOptions.Parse(args);
var database = new BenchDatabase(options.AdminConnectionString);
await database.InitAsync();
using var http = HttpGrid.CreateClient();
var report = new Report();
var clock = Stopwatch.StartNew();

bool Wanted(string name) => options.Only.Count == 0 || options.Only.Contains(name);
string[] sections = ["engine", "dispatch", "lifecycle", "receipts-cost", "telemetry", "backlog", "position", "parked", "priority", "scale", "failover", "rolling", "stream", "openai", "lightning", "receipts-verify", "ledger-verify"];
if (!sections.Any(Wanted)) return 0;  // e.g. --only worker: bench/run.sh measures the agent on its own
// A run of some sections only does not replace the latest complete one.
var resultName = options.Only.Count == 0 ? "latest" : "partial";

if (Wanted("engine"))
{
    await new EngineBenchmarks(options, database, report).RunAsync();
    await SaveAsync();
}

if (Wanted("receipts-verify"))
{
    new ReceiptBenchmarks(options, report).Run();
}
if (Wanted("ledger-verify"))
{
    await new LedgerBenchmark(options, database, report).RunAsync();
    await SaveAsync();
}

var service = new ServiceBenchmarks(options, database, http, report);
// The load generator keeps to its CPU so that the node under test has its own (see BenchOptions.NodeCpus).
if (options.LoadCpus is { } loadCpus && OperatingSystem.IsLinux()) Process.GetCurrentProcess().ProcessorAffinity = loadCpus;
if (Wanted("dispatch")) { await service.DispatchLatencyAsync(); await SaveAsync(); }
if (Wanted("lifecycle")) { await service.LifecycleAsync(); await SaveAsync(); }
if (Wanted("receipts-cost")) { await service.ReceiptsCostAsync(); await SaveAsync(); }
if (Wanted("telemetry")) { await service.TelemetryCostAsync(); await SaveAsync(); }
if (Wanted("backlog")) { await service.BacklogAsync(); await SaveAsync(); }
if (Wanted("position")) { await service.QueuePositionAsync(); await SaveAsync(); }
if (Wanted("parked")) { await service.ParkedPollsAsync(); await SaveAsync(); }
if (Wanted("priority")) { await service.PriorityAsync(); await SaveAsync(); }
if (Wanted("stream")) { await service.StreamLatencyAsync(); await service.StreamThroughputAsync(); await SaveAsync(); }
if (Wanted("openai")) { await service.OpenAiOverheadAsync(); await SaveAsync(); }
if (Wanted("lightning")) { await service.AgentJobsAsync(); await SaveAsync(); await service.AgentSessionsAsync(); await SaveAsync(); await service.GeminiRelayAsync(); await SaveAsync(); }
if (options.LoadCpus is not null && OperatingSystem.IsLinux()) Process.GetCurrentProcess().ProcessorAffinity = (nint)((1L << Environment.ProcessorCount) - 1);
if (Wanted("scale")) { await service.ScaleOutAsync(); await SaveAsync(); }
if (Wanted("failover")) { await new FailoverBenchmark(options, database, http, report).RunAsync(); await SaveAsync(); }
if (Wanted("rolling")) { await new RollingBenchmark(options, database, http, report).RunAsync(); await SaveAsync(); }

// Written after every section, so that a failure late in a long run keeps what was measured before it.
async Task SaveAsync()
{
    report.Set("run", new
    {
        mode = options.Quick ? "quick" : "full",
        options.Repeat,
        started_utc = DateTime.UtcNow - clock.Elapsed,
        seconds = clock.Elapsed.TotalSeconds,
        machine = Machine.Describe(),
        postgres = options.PostgresDescription,
        node_cpus = options.NodeCpus,
        load_cpus = options.LoadCpusText,
        baseline = options.Baseline is null ? null : options.BaselineDescription,
    });
    await report.WriteAsync(options.OutputDirectory, resultName, $"Benchmark results ({(options.Quick ? "quick" : "full")} run, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC)",
    [
        $"- Machine: {Machine.Describe()}",
        $"- PostgreSQL: {options.PostgresDescription}",
        options.Baseline is null
            ? "- Baseline: none (not built, or --no-baseline): the service scenarios measured this build alone."
            : $"- Baseline: {options.BaselineDescription}, the last commit before the Orleans move, built from .data/pg-engine/src; every service scenario ran on both builds in this run, alternating, each on its own fresh database.",
        $"- CPU placement: coordinator nodes under test on CPU {options.NodeCpus ?? "any"}, the load generator (HTTP clients and simulated workers) on CPU {options.LoadCpusText ?? "any"}, PostgreSQL unpinned. The engine comparison and scale-out run unpinned.",
        $"- Command: `./bench/run.sh {string.Join(' ', args.Where((a, i) => a != "--out" && (i == 0 || args[i - 1] != "--out")))}`; took {clock.Elapsed.TotalMinutes:F1} minutes.",
    ]);
}

Console.WriteLine($"\nwrote {Path.Combine(options.OutputDirectory, resultName)}.md and .json in {clock.Elapsed.TotalMinutes:F1} min");
return 0;

