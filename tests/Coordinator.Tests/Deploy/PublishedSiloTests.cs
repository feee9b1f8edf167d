using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Cluster;
using Coordinator.Tests.Infrastructure;
using Npgsql;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// The silo as the image runs it, without a Docker engine: Coordinator.Silo published in Release, started by
/// deploy/docker-entrypoint.sh in the environment the Dockerfile's silo stage sets (read from the Dockerfile; only the
/// ports are moved to free ones, as this machine runs other silos), against the test PostgreSQL. It must answer its
/// health endpoints and the paths the Kubernetes probes use, advertise the address the entrypoint found, and stop
/// cleanly on SIGTERM: exit code 0, marked dead in the membership table, within the stop timeouts of deploy/.
/// </summary>
[Collection(Alone.Name)]
public sealed class PublishedSiloTests
{
    /// <summary>How long systemd waits for the stop (deploy/coordinator.service's TimeoutStopSec; compose and Kubernetes wait as long), less a margin.</summary>
    private static readonly TimeSpan StopBound = SystemdUnitTests.TimeoutStopSec() - TimeSpan.FromSeconds(5);

    /// <summary>What the base image (mcr.microsoft.com/dotnet/aspnet:10.0) sets before the Dockerfile's ENV.</summary>
    private static readonly Dictionary<string, string> BaseImageEnvironment = new()
    {
        ["ASPNETCORE_HTTP_PORTS"] = "8080",
        ["DOTNET_RUNNING_IN_CONTAINER"] = "true",
        ["APP_UID"] = "1654",
    };

    [Fact]
    public async Task PublishedSilo_StartedByTheEntrypoint_AnswersHealth_AndStopsCleanlyOnSigterm()
    {
        var work = Directory.CreateTempSubdirectory("coordinator-published-");
        try
        {
            var published = Path.Combine(work.FullName, "app");
            await PublishAsync(published);
            var database = await TestDatabase.CreateAsync();
            var (http, aitbc, silo) = (FreePort(), FreePort(), FreePort());

            var start = new ProcessStartInfo("/bin/sh")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(DeployFiles.PathOf("deploy/docker-entrypoint.sh"));
            start.Environment.Clear();
            foreach (var inherited in new[] { "PATH", "DOTNET_ROOT" })
            {
                if (Environment.GetEnvironmentVariable(inherited) is { } value) start.Environment[inherited] = value;
            }
            start.Environment["HOME"] = work.FullName;
            foreach (var (key, value) in BaseImageEnvironment) start.Environment[key] = value;
            var image = Dockerfile.Read(DeployFiles.PathOf("deploy/Dockerfile"))["silo"].Environment;
            foreach (var (key, value) in image) start.Environment[key] = value;
            Assert.Equal("/app", image["COORDINATOR_APP_DIR"]);
            start.Environment["COORDINATOR_APP_DIR"] = published;
            start.Environment["PORT"] = Invariant(http);
            start.Environment["Aitbc__Port"] = Invariant(aitbc);
            start.Environment["Cluster__SiloPort"] = Invariant(silo);
            start.Environment["Cluster__GatewayPort"] = Invariant(FreePort());
            start.Environment["Blobs__LocalPath"] = Path.Combine(work.FullName, "blobs");
            start.Environment["ConnectionStrings__Postgres"] = database;

            var log = new StringBuilder();
            using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the entrypoint");
            // ASP.NET Core says so once the silo has joined and Kestrel listens: the moment to ask for health.
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            process.OutputDataReceived += (_, e) =>
            {
                lock (log) log.AppendLine(e.Data);
                if (e.Data?.Contains("Application started.", StringComparison.Ordinal) == true) started.TrySetResult();
            };
            process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            string Log() { lock (log) return log.ToString(); }
            try
            {
                using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
                var baseAddress = new Uri($"http://127.0.0.1:{http}/");
                var health = await HealthOnceStartedAsync(client, new Uri(baseAddress, "api/v1/health"), started.Task, process, Log);

                Assert.Equal("ok", health.GetProperty("status").GetString());
                var advertised = Log().Split('\n').Select(l => l.Trim())
                    .Single(l => l.StartsWith("coordinator: advertising ", StringComparison.Ordinal)).Split(' ')[2];
                Assert.StartsWith($"S{advertised}:{silo}:", health.GetProperty("node").GetString(), StringComparison.Ordinal);
                using (var aitbcHealth = await client.GetAsync(new Uri($"http://127.0.0.1:{aitbc}/health")))
                {
                    Assert.Equal(HttpStatusCode.OK, aitbcHealth.StatusCode);
                }
                var container = KubernetesManifestTests.SiloContainer(await KubernetesManifestTests.SiloDeploymentAsync());
                foreach (var probe in new[] { "startupProbe", "readinessProbe", "livenessProbe" })
                {
                    using var answer = await client.GetAsync(new Uri(baseAddress, container.Get(probe, "httpGet", "path").GetString()!.TrimStart('/')));
                    Assert.True(answer.StatusCode == HttpStatusCode.OK, $"{probe}: {answer.StatusCode}");
                }

                var generation = health.GetProperty("node").GetString()!.Split(':')[2];
                var stopwatch = Stopwatch.StartNew();
                using (var kill = Process.Start("kill", ["-s", "TERM", Invariant(process.Id)]))
                {
                    await kill.WaitForExitAsync();
                }
                using var stopped = new CancellationTokenSource(StopBound);
                await process.WaitForExitAsync(stopped.Token);

                Assert.True(process.ExitCode == 0, $"exit code {process.ExitCode}:\n{Log()}");
                Assert.True(stopwatch.Elapsed < StopBound, $"stopped after {stopwatch.Elapsed}");
                Assert.Equal(6, await MembershipStatusAsync(database, silo, generation)); // SiloStatus.Dead: it left, it did not vanish
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync();
                }
            }
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Publishes from the Release build that the test run has just made (<c>--no-build</c>), so the suite compiles the
    /// silo once; the Dockerfile runs the same publish on a fresh build.
    /// </summary>
    private static async Task PublishAsync(string output)
    {
        var (exitCode, stdout, stderr) = await DeployFiles.RunAsync("dotnet", DeployFiles.Root,
            ["publish", "Coordinator.Silo/Coordinator.Silo.csproj", "-c", "Release", "--no-build", "-p:UseAppHost=false", "-o", output, "--nologo", "--disable-build-servers"],
            TimeSpan.FromMinutes(5));
        Assert.True(exitCode == 0, $"dotnet publish failed ({exitCode}):\n{stdout}\n{stderr}");
        Assert.True(File.Exists(Path.Combine(output, "Coordinator.Silo.dll")), "the publish has no Coordinator.Silo.dll");
    }

    /// <summary>Waits for the silo's "Application started." (or its exit), then asks <paramref name="health"/> once.</summary>
    private static async Task<JsonElement> HealthOnceStartedAsync(HttpClient client, Uri health, Task started, Process process, Func<string> log)
    {
        var first = await Task.WhenAny(started, process.WaitForExitAsync()).WaitAsync(TimeSpan.FromSeconds(90));
        Assert.True(first == started, $"the silo exited with {(process.HasExited ? process.ExitCode : 0)} before it started:\n{log()}");
        using var response = await client.GetAsync(health);
        Assert.True(response.IsSuccessStatusCode, $"{health}: {(int)response.StatusCode} once the silo had started:\n{log()}");
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    private static async Task<int> MembershipStatusAsync(string database, int port, string generation)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT status FROM orleans_membership WHERE port = @port AND generation = @generation", connection);
        command.Parameters.AddWithValue("port", port);
        command.Parameters.AddWithValue("generation", int.Parse(generation, CultureInfo.InvariantCulture));
        return (int)(await command.ExecuteScalarAsync() ?? -1);
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static int FreePort() => Coordinator.Tests.Infrastructure.TestPorts.Next();
}
