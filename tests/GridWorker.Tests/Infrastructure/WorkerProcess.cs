using System.Diagnostics;

namespace GridWorker.Tests.Infrastructure;

/// <summary>
/// The built <c>grid-worker</c> in a process of its own, as a volunteer runs it: its console output, its exit code,
/// and real signals. It reads no config file and none of the test machine's GRID_WORKER_* variables.
/// </summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly DirectoryInfo _home;

    private WorkerProcess(Process process, DirectoryInfo home)
    {
        _process = process;
        _home = home;
    }

    /// <summary>Standard output, a line at a time.</summary>
    public LineWriter Output { get; } = new();

    /// <summary>Standard error, a line at a time.</summary>
    public LineWriter Errors { get; } = new();

    public bool HasExited => _process.HasExited;

    public static WorkerProcess Start(params string[] args)
    {
        var home = Directory.CreateTempSubdirectory("grid-worker-home-");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(AgentDll());
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("GRID_WORKER_", StringComparison.Ordinal)).ToList()) start.Environment.Remove(name);
        start.Environment.Remove("XDG_CONFIG_HOME");
        start.Environment["HOME"] = home.FullName;

        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start grid-worker");
        var worker = new WorkerProcess(process, home);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) worker.Output.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) worker.Errors.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return worker;
    }

    /// <summary>Sends a signal (INT for Ctrl-C, TERM) the way an operator or a service manager would.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", ["-s", signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>The exit code, once the process has ended and its output is read to the end.</summary>
    public async Task<int> ExitCodeAsync(int timeoutMs = 30_000)
    {
        using var timeout = new CancellationTokenSource(timeoutMs);
        await _process.WaitForExitAsync(timeout.Token);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        _home.Delete(recursive: true);
    }

    /// <summary>GridWorker's own build output (with its own dependencies), built with the tests in the same configuration.</summary>
    private static string AgentDll()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var (framework, configuration) = (output.Name, output.Parent!.Name);
        var root = output;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Orleans.sln"))) root = root.Parent;
        var dll = Path.Combine(root?.FullName ?? "", "GridWorker", "bin", configuration, framework, "grid-worker.dll");
        Assert.True(File.Exists(dll), $"grid-worker is not built at {dll}");
        return dll;
    }
}
