using System.Diagnostics;

namespace Coordinator.Tests.Receipts;

/// <summary>Runs Debian's python3 (with python3-cryptography), the reference the receipts must agree with.</summary>
internal static class Python
{
    /// <summary>tests/tools/verify_receipt.py, copied beside the test assembly.</summary>
    public static string VerifyReceiptScript => Path.Combine(AppContext.BaseDirectory, "tools", "verify_receipt.py");

    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string stdin, params string[] args)
    {
        var start = new ProcessStartInfo("python3")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new System.Text.UTF8Encoding(false),
            StandardOutputEncoding = System.Text.Encoding.UTF8,
        };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("python3 did not start (apt-get install python3 python3-cryptography)");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output, await error);
    }

    /// <summary>Verifies receipts (a JSON array of receipt objects) with verify_receipt.py: its verdict on each, "ok" or "bad: …".</summary>
    public static async Task<IReadOnlyList<string>> VerifyAsync(string receiptsArray, params string[] trustedKeys)
    {
        var args = new List<string> { VerifyReceiptScript };
        foreach (var key in trustedKeys) args.AddRange(["--trust", key]);
        args.Add("-");
        var (exitCode, output, error) = await RunAsync(receiptsArray, [.. args]);
        var verdicts = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line[(line.IndexOf(' ', StringComparison.Ordinal) + 1)..]).ToList();
        Assert.True(error.Length == 0, error);
        Assert.Equal(verdicts.All(v => v == "ok") ? 0 : 1, exitCode);
        return verdicts;
    }
}
