using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// A silo as a separate process (<c>dotnet Coordinator.Silo.dll</c>, the build the tests reference), so that a test can
/// kill it the way an operating system does: <see cref="Kill"/> is SIGKILL, with no chance to leave the cluster, and
/// <see cref="Terminate"/> is SIGTERM, what systemd, Kubernetes and <c>docker stop</c> send first.
/// </summary>
public sealed class SiloProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private SiloProcess(Process process, Uri baseAddress, int siloPort)
    {
        _process = process;
        BaseAddress = baseAddress;
        SiloPort = siloPort;
    }

    /// <summary>The port of its silo-to-silo endpoint: its row in the membership table.</summary>
    public int SiloPort { get; }

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary><c>http://127.0.0.1:port/api/v1/</c>.</summary>
    public Uri BaseAddress { get; }

    public bool HasExited => _process.HasExited;

    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    /// <summary>
    /// Starts a silo process on <c>connectionString</c>'s database with test settings (and <c>settings</c> over them), and
    /// waits until it answers health; with <c>waitUntilHealthy</c> false, answers once the process runs (a silo not
    /// expected to become healthy).
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "returned to the caller once healthy, disposed here when it never becomes healthy")]
    public static async Task<SiloProcess> StartAsync(string connectionString, IDictionary<string, string>? settings = null, bool waitUntilHealthy = true)
    {
        var port = FreePort();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Coordinator.Silo.dll"));
        start.ArgumentList.Add("--urls");
        start.ArgumentList.Add($"http://127.0.0.1:{port}");
        start.Environment["ConnectionStrings__Postgres"] = connectionString;
        var siloPort = FreePort();
        start.Environment["Cluster__SiloPort"] = siloPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["Aitbc__Port"] = FreePort().ToString(CultureInfo.InvariantCulture);
        start.Environment["Cluster__GatewayPort"] = "0";
        start.Environment["Cluster__ProbeTimeout"] = "00:00:01";
        start.Environment["Cluster__MissedProbesLimit"] = "2";
        start.Environment["Cluster__TableRefreshTimeout"] = "00:00:02";
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["RateLimits__Enabled"] = "false";
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) start.Environment[key] = value;
        if (start.Environment["Cluster__SiloPort"] is { } chosen) siloPort = int.Parse(chosen, CultureInfo.InvariantCulture);

        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start a silo process");
        var silo = new SiloProcess(process, new Uri($"http://127.0.0.1:{port}/api/v1/"), siloPort);
        process.OutputDataReceived += (_, e) => silo.Append(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!waitUntilHealthy) return silo;

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Environment.TickCount64 + 60_000;
        while (true)
        {
            try
            {
                using var response = await http.GetAsync(new Uri(silo.BaseAddress, "health"));
                if (response.IsSuccessStatusCode) return silo;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            if (process.HasExited || Environment.TickCount64 > deadline)
            {
                await silo.DisposeAsync();
                throw new InvalidOperationException($"the silo process did not become healthy:\n{silo.Log}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>SIGKILL: the process ends at once, its sockets reset, its membership row says it is alive.</summary>
    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    /// <summary>SIGTERM: the silo begins its graceful stop; <see cref="WaitForExitAsync"/> waits for its end.</summary>
    public void Terminate()
    {
        if (_process.HasExited) return;
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", _process.Id.ToString(CultureInfo.InvariantCulture) }, UseShellExecute = false })
            ?? throw new InvalidOperationException("could not run kill");
        kill.WaitForExit();
    }

    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_log) _log.AppendLine(line);
    }

    private static int FreePort() => Coordinator.Tests.Infrastructure.TestPorts.Next();
}
