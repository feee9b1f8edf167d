using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Coordinator.Silo;
using Coordinator.Tests.Cluster;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// deploy/compose.yaml without a Docker engine: <c>docker-compose config</c> (Debian's docker-compose, which test.sh
/// installs) validates it against the Compose schema and resolves its anchors and variables; the tests read what it
/// prints. The grid it describes then runs as plain processes: a silo, the stub backend with python3, and grid-worker
/// with the compose file's settings, and a job goes through.
/// </summary>
public sealed class ComposeTests
{
    private static readonly Lazy<Task<JsonElement>> Rendered = new(RenderAsync);

    [Fact]
    public async Task ComposeFile_PassesDockerComposeConfig()
    {
        var (exitCode, output, errors) = await DockerComposeAsync("config", "-q");

        Assert.True(exitCode == 0, $"docker-compose config -q: {exitCode}\n{output}\n{errors}");
    }

    [Fact]
    public async Task ThreeSilos_FromTheDockerfile_OnePostgres_OneCluster_TheirOwnPorts()
    {
        var services = (await Rendered.Value).GetProperty("services");
        var silos = services.EnumerateObject().Where(s => s.Name.StartsWith("silo-", StringComparison.Ordinal)).ToList();

        Assert.Equal(3, silos.Count);
        Assert.True(services.TryGetProperty("postgres", out _));
        var siloSettings = typeof(SiloOptions).GetProperties().Select(p => $"{SiloOptions.Section}__{p.Name}").ToHashSet();
        foreach (var silo in silos.Select(s => s.Value))
        {
            Assert.Equal("deploy/Dockerfile", silo.Get("build", "dockerfile").GetString());
            Assert.Equal("silo", silo.Get("build", "target").GetString());
            Assert.Equal("postgres", silo.Get("depends_on").EnumerateObject().Single().Name);
            Assert.True(TimeSpan.FromSeconds(40) <= Duration(silo.GetProperty("stop_grace_period").GetString()!), "stop_grace_period must cover the graceful stop");
            var environment = silo.GetProperty("environment");
            Assert.Contains("Host=postgres;", environment.GetProperty("ConnectionStrings__Postgres").GetString(), StringComparison.Ordinal);
            Assert.Equal("coordinator", environment.GetProperty("Cluster__ClusterId").GetString());
            foreach (var setting in environment.EnumerateObject().Where(e => e.Name.StartsWith("Cluster__", StringComparison.Ordinal)))
            {
                Assert.Contains(setting.Name, siloSettings);
            }
        }
        Assert.Single(silos, s => s.Value.GetProperty("environment").TryGetProperty("DevAccount__KeyFile", out _));
        var published = silos.SelectMany(s => s.Value.GetProperty("ports").EnumerateArray()).Select(p => p.GetProperty("published").GetInt32()).ToList();
        Assert.Equal(published.Count, published.Distinct().Count());
    }

    [Fact]
    public async Task GridWorker_ServesTheStub_WithSettingsGridWorkerKnows()
    {
        var services = (await Rendered.Value).GetProperty("services");
        var worker = services.GetProperty("grid-worker");
        var knownSettings = await File.ReadAllTextAsync(DeployFiles.PathOf("GridWorker/WorkerSettings.cs"));

        Assert.Equal("grid-worker", worker.Get("build", "target").GetString());
        var environment = worker.GetProperty("environment");
        foreach (var setting in environment.EnumerateObject())
        {
            Assert.Contains($"\"{setting.Name}\"", knownSettings, StringComparison.Ordinal);
        }
        Assert.Equal("openai", environment.GetProperty("GRID_WORKER_BACKEND").GetString());
        Assert.True(services.TryGetProperty(new Uri(environment.GetProperty("GRID_WORKER_BACKEND_URL").GetString()!).Host, out var stub));
        Assert.Contains("/stub/stub_openai.py", stub.GetProperty("command").EnumerateArray().Select(c => c.GetString()));
        Assert.StartsWith("silo-", new Uri(environment.GetProperty("GRID_WORKER_COORDINATOR").GetString()!).Host, StringComparison.Ordinal);
    }

    /// <summary>
    /// The compose grid as processes: a silo that keeps the development key (as silo-1 does), the stub backend, and
    /// grid-worker started with the compose file's GRID_WORKER_* settings, its URLs pointed at the local ports.
    /// </summary>
    [Fact]
    public async Task TheComposeGrid_AsProcesses_CompletesAJobOnTheStub()
    {
        var work = Directory.CreateTempSubdirectory("coordinator-compose-");
        var keyFile = Path.Combine(work.FullName, "dev-api-key");
        var stubPort = FreePort();
        var processes = new List<Running>();
        await using var silo = await SiloProcess.StartAsync(await TestDatabase.CreateAsync(), new Dictionary<string, string> { ["DevAccount__KeyFile"] = keyFile });
        try
        {
            var stub = Start("python3", [DeployFiles.PathOf("deploy/stub-backend/stub_openai.py"), "--host", "127.0.0.1", "--port", Invariant(stubPort)], new Dictionary<string, string>());
            processes.Add(stub);
            // grid-worker stops at once when its backend does not answer; compose waits for the stub's health check.
            await WaitForStubAsync(new Uri($"http://127.0.0.1:{stubPort}/health"), stub);

            var compose = (await Rendered.Value).GetProperty("services").GetProperty("grid-worker").GetProperty("environment");
            var environment = compose.EnumerateObject().ToDictionary(e => e.Name, e => e.Value.GetString()!);
            environment["GRID_WORKER_COORDINATOR"] = silo.BaseAddress.ToString();
            environment["GRID_WORKER_BACKEND_URL"] = $"http://127.0.0.1:{stubPort}";
            var key = (await File.ReadAllTextAsync(keyFile)).Trim();
            environment["GRID_WORKER_API_KEY"] = key;
            environment["HOME"] = work.FullName;
            var gridWorker = DeployFiles.PathOf("GridWorker/bin/Release/net10.0/grid-worker.dll");
            Assert.True(File.Exists(gridWorker), $"{gridWorker} is missing: build the solution in Release (./test.sh does)");
            var worker = Start("dotnet", [gridWorker], environment);
            processes.Add(worker);

            using var http = new HttpClient { BaseAddress = silo.BaseAddress, Timeout = TimeSpan.FromSeconds(20) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using var submitted = await http.PostAsJsonAsync("jobs", new { model = "stub:echo", prompt = "rows wait in order" });
            Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
            var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("job_id").GetInt64();

            // The job's stream ends with the job as it finished: no polling, the end is the event.
            var (stream, opened) = await EventStreamReader.OpenAsync(http, key, $"jobs/{id}/stream");
            Assert.True(stream is not null, $"no event stream for job {id}: {opened.StatusCode}");
            await using var events = stream!;
            SseEvent? end;
            do
            {
                end = await events.NextAsync(TimeSpan.FromSeconds(60));
                Assert.True(end is not null, $"the stream of job {id} ended before the job; worker: {worker.Output}");
            }
            while (end!.Name != "job");
            var job = end.Json;
            Assert.Equal("completed", job.GetProperty("status").GetString());
            Assert.Equal("stub:echo heard: rows wait in order", job.GetProperty("output").GetString());
        }
        finally
        {
            foreach (var process in processes.Select(p => p.Process))
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                process.Dispose();
            }
            work.Delete(recursive: true);
        }
    }

    private static async Task WaitForStubAsync(Uri health, Running stub)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var response = await http.GetAsync(health);
                if (response.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            Assert.False(stub.Process.HasExited, $"the stub backend exited: {stub.Output}");
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"the stub backend did not answer within 30 s: {stub.Output}");
            await Task.Delay(50);
        }
    }

    private static async Task<JsonElement> RenderAsync()
    {
        var (exitCode, output, errors) = await DockerComposeAsync("config");
        Assert.True(exitCode == 0, $"docker-compose config: {exitCode}\n{errors}");
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, output);
            return Assert.Single((await DeployFiles.ValidateAsync("yaml", file)).EnumerateArray());
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Debian's docker-compose (<c>COORDINATOR_DOCKER_COMPOSE</c> points elsewhere); needs no Docker engine for <c>config</c>.</summary>
    private static async Task<(int, string, string)> DockerComposeAsync(params string[] args)
    {
        var program = Environment.GetEnvironmentVariable("COORDINATOR_DOCKER_COMPOSE") ?? "docker-compose";
        try
        {
            return await DeployFiles.RunAsync(program, DeployFiles.Root, ["-f", "deploy/compose.yaml", .. args]);
        }
        catch (System.ComponentModel.Win32Exception exception)
        {
            throw new InvalidOperationException($"{program} could not be run ({exception.Message}): apt-get install docker-compose (./test.sh installs it)", exception);
        }
    }

    /// <summary>A process started by a test, with its stdout and stderr kept.</summary>
    private sealed class Running(Process process, StringBuilder output)
    {
        public Process Process { get; } = process;

        public string Output
        {
            get
            {
                lock (output) return output.ToString();
            }
        }
    }

    private static Running Start(string program, IEnumerable<string> args, Dictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new Running(process, output);
    }

    /// <summary>Compose durations as docker-compose prints them: <c>45s</c>, <c>1m30s</c>.</summary>
    private static TimeSpan Duration(string text)
    {
        var total = TimeSpan.Zero;
        var number = "";
        foreach (var c in text)
        {
            if (char.IsDigit(c)) number += c;
            else
            {
                var value = int.Parse(number, CultureInfo.InvariantCulture);
                total += c switch { 'h' => TimeSpan.FromHours(value), 'm' => TimeSpan.FromMinutes(value), 's' => TimeSpan.FromSeconds(value), _ => throw new FormatException(text) };
                number = "";
            }
        }
        return total;
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static int FreePort() => Coordinator.Tests.Infrastructure.TestPorts.Next();
}
