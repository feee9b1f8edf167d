using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Coordinator.Bench;

/// <summary>A coordinator node as its own process (the built Coordinator.Silo.dll: a silo with its front end), optionally pinned to CPUs with taskset.</summary>
public sealed class NodeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private int _disposed;

    private NodeProcess(Process process, HttpGrid grid)
    {
        _process = process;
        Grid = grid;
    }

    public HttpGrid Grid { get; }

    public int Pid => _process.Id;

    public double CpuSeconds => ProcessStats.CpuSeconds(Pid);

    public double RssMegabytes => ProcessStats.RssMegabytes(Pid);

    public static async Task<NodeProcess> StartAsync(string apiDll, string connectionString, HttpClient http, string? cpus, IDictionary<string, string>? settings = null)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await StartOnceAsync(apiDll, connectionString, http, cpus, settings);
            }
            catch (InvalidOperationException exception) when (attempt < 3 && exception.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                // A port free when asked was taken before the node bound it (by one of the bench's own outgoing
                // connections, which draw from the same ephemeral range): start it again on other ports.
            }
        }
    }

    private static async Task<NodeProcess> StartOnceAsync(string apiDll, string connectionString, HttpClient http, string? cpus, IDictionary<string, string>? settings)
    {
        var port = FreePort();
        var start = new ProcessStartInfo
        {
            FileName = cpus is null ? "dotnet" : "taskset",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (cpus is not null)
        {
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add(cpus);
            start.ArgumentList.Add("dotnet");
        }
        start.ArgumentList.Add(apiDll);
        start.ArgumentList.Add("--urls");
        start.ArgumentList.Add($"http://127.0.0.1:{port}");
        start.Environment["ConnectionStrings__Postgres"] = connectionString;
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["DOTNET_gcServer"] = "0";
        // The bench drives thousands of requests from a few keys and one address: it measures the grid, not the rate limits.
        start.Environment["RateLimits__Enabled"] = "false";
        // Each node is a silo of the bench database's cluster, on a port of its own, with no gateway.
        start.Environment["Cluster__SiloPort"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["Aitbc__Port"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["Cluster__GatewayPort"] = "0";
        // COORDINATOR_BENCH_NODE_LOGS=<folder>: each node's console goes to <folder>/node-<pid>.log, with UTC timestamps,
        // and COORDINATOR_BENCH_NODE_LOG_LEVELS=Category=Level;... raises categories above Warning (for diagnosing a run).
        var logFolder = Environment.GetEnvironmentVariable("COORDINATOR_BENCH_NODE_LOGS");
        if (!string.IsNullOrEmpty(logFolder))
        {
            start.Environment["Logging__Console__FormatterOptions__TimestampFormat"] = "HH:mm:ss.fff ";
            start.Environment["Logging__Console__FormatterOptions__UseUtcTimestamp"] = "true";
            start.Environment["Logging__Console__FormatterOptions__SingleLine"] = "true";
            foreach (var level in (Environment.GetEnvironmentVariable("COORDINATOR_BENCH_NODE_LOG_LEVELS") ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                var (category, value) = (level[..level.IndexOf('=')], level[(level.IndexOf('=') + 1)..]);
                start.Environment[$"Logging__LogLevel__{category}"] = value;
            }
        }
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) start.Environment[key] = value;

        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the coordinator node");
        var log = new System.Text.StringBuilder();
#pragma warning disable CA2000 // The log file stays open as long as the bench process: its writes flush as they come.
        var file = string.IsNullOrEmpty(logFolder) ? null : new StreamWriter(Path.Combine(logFolder, $"node-{process.Id}.log")) { AutoFlush = true };
#pragma warning restore CA2000
        process.OutputDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); file?.WriteLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); file?.WriteLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var node = new NodeProcess(process, new HttpGrid(http, new Uri($"http://127.0.0.1:{port}/api/v1/")));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!await node.Grid.HealthyAsync())
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                await node.DisposeAsync();
                lock (log) throw new InvalidOperationException($"the coordinator node did not become healthy:\n{log}");
            }
            await Task.Delay(20);
        }
        return node;
    }

    /// <summary>SIGTERM, the graceful stop; answers the exit code and how long the node took to exit.</summary>
    public async Task<(int ExitCode, TimeSpan Took)> TerminateAsync(TimeSpan timeout)
    {
        var started = Stopwatch.GetTimestamp();
        using (var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", Pid.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })
            ?? throw new InvalidOperationException("could not run kill"))
        {
            await kill.WaitForExitAsync();
        }
        using var wait = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(wait.Token);
        return (_process.ExitCode, Stopwatch.GetElapsedTime(started));
    }

    public async ValueTask DisposeAsync()
    {
        // A scenario that kills a node disposes it twice: when it kills it, and with the others at the end.
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }

    /// <summary>A loopback port free at the moment of asking.</summary>
    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
