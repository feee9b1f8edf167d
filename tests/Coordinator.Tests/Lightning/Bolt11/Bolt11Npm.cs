using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>
/// Runs tests/tools/bolt11-vectors.js, which drives the npm <c>bolt11</c> package (pinned in tests/tools/package.json,
/// installed by test.sh): it signs random invoices for the decoder to read, and decodes the encoder's invoices.
/// </summary>
internal static class Bolt11Npm
{
    private const string Script = "bolt11-vectors.js";

    /// <summary>Random invoices signed by bolt11: an array of <c>{input, decoded}</c>.</summary>
    public static async Task<JsonElement> SignAsync(int count) => await RunAsync("[]", "sign", count.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>What bolt11 decodes from each invoice: an array of <c>{ok: true, decoded}</c> or <c>{ok: false, error}</c>.</summary>
    public static async Task<JsonElement> DecodeAsync(IEnumerable<string> invoices) => await RunAsync(JsonSerializer.Serialize(invoices), "decode");

    /// <summary>Runs the script with node (<c>COORDINATOR_NODE</c>, else <c>node</c> on the PATH); answers its JSON.</summary>
    private static async Task<JsonElement> RunAsync(string stdin, params string[] args)
    {
        var tools = ToolsDirectory();
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("COORDINATOR_NODE") ?? "node")
        {
            WorkingDirectory = tools,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
        };
        start.ArgumentList.Add(Path.Combine(tools, Script));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("node did not start (apt-get install nodejs npm)");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var errors = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
            await process.WaitForExitAsync(timeout.Token);
            Assert.True(process.ExitCode == 0, $"{Script} exited with {process.ExitCode}: {await errors}");
            return JsonDocument.Parse(await output).RootElement.Clone();
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>tests/tools of this checkout, found upwards from the test assembly; its node_modules must hold bolt11.</summary>
    private static string ToolsDirectory()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var tools = Path.Combine(directory.FullName, "tests", "tools");
            if (!File.Exists(Path.Combine(tools, Script))) continue;
            if (!Directory.Exists(Path.Combine(tools, "node_modules", "bolt11")))
            {
                throw new InvalidOperationException($"the bolt11 npm package is not installed in {tools}: run the tests with ./test.sh, or npm ci there.");
            }
            return tools;
        }
        throw new InvalidOperationException($"tests/tools/{Script} not found above " + AppContext.BaseDirectory);
    }
}
