using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// The deploy/ folder of this checkout and the tools that check it: tests/tools/validate-deploy.mjs, run with node
/// (<c>COORDINATOR_NODE</c>, else <c>node</c> on the PATH) on the npm packages test.sh installs (kubernetes-models,
/// dockerfile-utils, yaml).
/// </summary>
internal static class DeployFiles
{
    private const string Validator = "validate-deploy.mjs";

    /// <summary>The repository root: the first folder above the test assembly that holds deploy/Dockerfile.</summary>
    public static string Root { get; } = FindRoot();

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    /// <summary>Runs validate-deploy.mjs with <paramref name="args"/>; answers its JSON array.</summary>
    public static async Task<JsonElement> ValidateAsync(params string[] args)
    {
        var tools = Path.Combine(Root, "tests", "tools");
        foreach (var package in new[] { "kubernetes-models", "dockerfile-utils", "yaml" })
        {
            if (!Directory.Exists(Path.Combine(tools, "node_modules", package)))
            {
                throw new InvalidOperationException($"the {package} npm package is not installed in {tools}: run the tests with ./test.sh, or npm ci there.");
            }
        }
        var (exitCode, output, errors) = await RunAsync(Environment.GetEnvironmentVariable("COORDINATOR_NODE") ?? "node", tools,
            [Path.Combine(tools, Validator), .. args]);
        Assert.True(exitCode == 0, $"{Validator} {string.Join(' ', args)} exited with {exitCode}: {errors}");
        return JsonDocument.Parse(output).RootElement.Clone();
    }

    /// <summary>Runs a program to its end (at most <paramref name="timeout"/>, default a minute): exit code, stdout, stderr.</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> RunAsync(string program, string workingDirectory,
        IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
        };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(1));
        try
        {
            var output = process.StandardOutput.ReadToEndAsync(cancel.Token);
            var errors = process.StandardError.ReadToEndAsync(cancel.Token);
            await process.WaitForExitAsync(cancel.Token);
            return (process.ExitCode, await output, await errors);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "deploy", "Dockerfile"))) return directory.FullName;
        }
        throw new InvalidOperationException("deploy/Dockerfile not found above " + AppContext.BaseDirectory);
    }
}
