using System.Runtime.InteropServices;

namespace Coordinator.Bench;

/// <summary>What the harness was asked to do.</summary>
public sealed class BenchOptions
{
    public bool Quick { get; private init; }

    public int Repeat { get; private init; }

    public HashSet<string> Only { get; private init; } = [];

    /// <summary>Engine scenarios to run (drain, latency, steady); empty: all.</summary>
    public HashSet<string> Scenarios { get; private init; } = [];

    /// <summary>Peers to compare the engine with (pgboss, graphile); <c>--peers none</c> runs ours alone.</summary>
    public string[] Peers { get; private init; } = ["pgboss", "graphile"];

    public string OutputDirectory { get; private init; } = "bench/results";

    public string AdminConnectionString { get; private init; } = "";

    public string ApiDll { get; private init; } = "";

    /// <summary>This build's coordinator node (BENCH_API_DLL).</summary>
    public CoordinatorBuild Ours => new("this build", ApiDll, "");

    /// <summary>
    /// The build the service scenarios measure beside ours in the same run (pg-engine: BENCH_BASELINE_DLL, set by
    /// bench/run.sh), or null: none built, or <c>--no-baseline</c>.
    /// </summary>
    public CoordinatorBuild? Baseline { get; private init; }

    /// <summary>Which commit the baseline is (BENCH_BASELINE_DESCRIPTION), for the report.</summary>
    public string BaselineDescription { get; private init; } = "";

    public string PeersDir { get; private init; } = "";

    public string PostgresDescription { get; private init; } = "";

    /// <summary>CPUs for the coordinator node processes in the single-node scenarios (taskset list), or null for any.</summary>
    public string? NodeCpus { get; private init; }

    public string? LoadCpusText { get; private init; }

    public nint? LoadCpus { get; private init; }

    public static BenchOptions Parse(string[] args)
    {
        var quick = args.Contains("--quick");
        string? Value(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
        var pinned = Environment.ProcessorCount >= 2 && !args.Contains("--no-pin");
        var baselineDll = args.Contains("--no-baseline") ? null : Environment.GetEnvironmentVariable("BENCH_BASELINE_DLL") is { Length: > 0 } dll ? dll : null;
        if (baselineDll is not null && !File.Exists(baselineDll))
        {
            throw new InvalidOperationException($"BENCH_BASELINE_DLL names {baselineDll}, which does not exist: build it (bench/run.sh does), or pass --no-baseline");
        }
        return new BenchOptions
        {
            Quick = quick,
            Repeat = int.TryParse(Value("--repeat"), out var repeat) ? repeat : quick ? 1 : 3,
            Only = (Value("--only") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet(),
            Scenarios = (Value("--scenarios") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet(),
            Peers = Value("--peers") is { } peers ? peers.Split(',', StringSplitOptions.RemoveEmptyEntries).Where(p => p != "none").ToArray() : ["pgboss", "graphile"],
            OutputDirectory = Value("--out") ?? "bench/results",
            AdminConnectionString = Environment.GetEnvironmentVariable("BENCH_PG") ?? throw new InvalidOperationException("BENCH_PG is not set; run bench/run.sh"),
            ApiDll = Environment.GetEnvironmentVariable("BENCH_API_DLL") ?? throw new InvalidOperationException("BENCH_API_DLL is not set; run bench/run.sh"),
            PeersDir = Environment.GetEnvironmentVariable("BENCH_PEERS_DIR") ?? "bench/peers",
            PostgresDescription = Environment.GetEnvironmentVariable("BENCH_PG_DESCRIPTION") ?? "",
            Baseline = baselineDll is null ? null : new CoordinatorBuild("pg-engine", baselineDll, "_pg"),
            BaselineDescription = baselineDll is null ? "" : Environment.GetEnvironmentVariable("BENCH_BASELINE_DESCRIPTION") ?? "pg-engine",
            // Two cores: the node gets the last one, the load generator the first; PostgreSQL floats.
            NodeCpus = pinned ? (Environment.ProcessorCount - 1).ToString(System.Globalization.CultureInfo.InvariantCulture) : null,
            LoadCpusText = pinned ? "0" : null,
            LoadCpus = pinned ? 1 : null,
        };
    }
}

/// <summary>A build of the coordinator that the service scenarios start as node processes; its databases' names end in <paramref name="DatabaseSuffix"/>.</summary>
public sealed record CoordinatorBuild(string Name, string Dll, string DatabaseSuffix);

public static class Machine
{
    public static string Describe()
    {
        var model = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        var memory = File.Exists("/proc/meminfo")
            ? long.Parse(File.ReadLines("/proc/meminfo").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024 / 1024
            : 0;
        return $"{Environment.ProcessorCount} CPUs ({model ?? "unknown"}), {memory} GiB RAM, {RuntimeInformation.OSDescription}, .NET {Environment.Version}";
    }
}
