using System.Net;
using Coordinator.Silo;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// deploy/coordinator.service with <c>systemd-analyze verify</c> (Debian's systemd, which ships it; the check runs
/// offline, without systemd running), then the choices the issue asks for, read from the unit. That the silo stops
/// within its TimeoutStopSec is measured by <see cref="PublishedSiloTests"/>.
/// </summary>
public sealed class SystemdUnitTests
{
    /// <summary>ASP.NET Core's default <c>HostOptions.ShutdownTimeout</c>: the longest graceful stop.</summary>
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Unit_PassesSystemdAnalyzeVerify()
    {
        var directory = Directory.CreateTempSubdirectory("coordinator-unit-");
        try
        {
            var unit = await File.ReadAllTextAsync(DeployFiles.PathOf("deploy/coordinator.service"));
            // verify checks that ExecStart's program exists; a machine whose .NET is elsewhere gets that path instead.
            if (!File.Exists("/usr/bin/dotnet")) unit = unit.Replace("/usr/bin/dotnet", DotnetOnPath(), StringComparison.Ordinal);
            var copy = Path.Combine(directory.FullName, "coordinator.service");
            await File.WriteAllTextAsync(copy, unit);

            var (exitCode, output, errors) = await RunVerifyAsync(copy);

            // verify exits 0 on some mistakes (an unknown Type=, a bad Restart=) and only prints them: both must be clean.
            Assert.True(exitCode == 0 && output.Trim().Length == 0 && errors.Trim().Length == 0,
                $"systemd-analyze verify: exit {exitCode}\n{output}\n{errors}");
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public void Unit_RunsTheSiloAsAnUnprivilegedUser_FromAnEnvironmentFile_AndStopsItBySigterm()
    {
        var service = Service();

        Assert.NotEqual("root", service["User"]);
        Assert.Equal("/etc/coordinator/coordinator.env", service["EnvironmentFile"]);
        Assert.EndsWith(" /opt/coordinator/Coordinator.Silo.dll", service["ExecStart"], StringComparison.Ordinal);
        Assert.Equal("notify", service["Type"]);
        Assert.Equal("on-failure", service["Restart"]);
        Assert.Equal("SIGTERM", service["KillSignal"]);
        Assert.True(TimeoutStopSec() >= ShutdownTimeout + TimeSpan.FromSeconds(10),
            $"TimeoutStopSec {TimeoutStopSec()} leaves no margin over the silo's {ShutdownTimeout} graceful stop");
    }

    [Fact]
    public void EnvironmentExample_SetsTheSilosOwnSettings()
    {
        var settings = File.ReadAllLines(DeployFiles.PathOf("deploy/coordinator.env.example"))
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        var siloSettings = typeof(SiloOptions).GetProperties().Select(p => $"{SiloOptions.Section}__{p.Name}").ToHashSet();

        Assert.Contains("ConnectionStrings__Postgres", settings.Keys);
        Assert.All(settings.Keys.Where(k => k.StartsWith("Cluster__", StringComparison.Ordinal)), key => Assert.Contains(key, siloSettings));
        Assert.True(IPAddress.TryParse(settings["Cluster__AdvertisedAddress"], out var address) && !IPAddress.IsLoopback(address),
            "a silo on a plain host must advertise an address the other hosts reach");
    }

    /// <summary>The unit's TimeoutStopSec (seconds, as the unit writes it).</summary>
    internal static TimeSpan TimeoutStopSec() => TimeSpan.FromSeconds(int.Parse(Service()["TimeoutStopSec"].TrimEnd('s'), System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>The [Service] section's settings (the last value of a key wins, as in systemd).</summary>
    private static Dictionary<string, string> Service()
    {
        var settings = new Dictionary<string, string>();
        var section = "";
        foreach (var raw in File.ReadAllLines(DeployFiles.PathOf("deploy/coordinator.service")))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#') || line.StartsWith(';')) continue;
            if (line.StartsWith('[')) section = line;
            else if (section == "[Service]")
            {
                var parts = line.Split('=', 2);
                settings[parts[0].Trim()] = parts[1].Trim();
            }
        }
        return settings;
    }

    private static async Task<(int, string, string)> RunVerifyAsync(string unit)
    {
        try
        {
            return await DeployFiles.RunAsync("systemd-analyze", Path.GetDirectoryName(unit)!, ["verify", unit]);
        }
        catch (System.ComponentModel.Win32Exception exception)
        {
            throw new InvalidOperationException($"systemd-analyze could not be run ({exception.Message}): apt-get install systemd (./test.sh installs it)", exception);
        }
    }

    private static string DotnetOnPath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "dotnet")).FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("dotnet is not on the PATH");
}
