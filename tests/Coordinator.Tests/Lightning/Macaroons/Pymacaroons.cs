using System.Diagnostics;

namespace Coordinator.Tests.Lightning.Macaroons;

/// <summary>
/// tests/tools/verify_macaroon.py on Debian's python3 with python3-pymacaroons (0.13), the reference implementation the
/// session macaroons must agree with. Debian's interpreter is used by its path when it is there: the package is
/// installed for it, not for another python3 earlier on the PATH.
/// </summary>
internal static class Pymacaroons
{
    private static string Script => Path.Combine(AppContext.BaseDirectory, "tools", "verify_macaroon.py");

    private static string Interpreter => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    /// <summary>pymacaroons' verdict on <paramref name="token"/> for a session at <paramref name="now"/>: "ok &lt;identifier&gt; &lt;caveats&gt;" or "bad: …".</summary>
    public static async Task<string> VerifyAsync(string token, byte[] rootKey, string sessionId, DateTimeOffset now)
    {
        var (exitCode, output, error) = await RunAsync(
            Script, "verify", "--key", Convert.ToHexStringLower(rootKey), "--session", sessionId, "--now", now.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture), token);
        Assert.True(error.Length == 0, error);
        var verdict = output.Trim();
        Assert.Equal(verdict.StartsWith("ok ", StringComparison.Ordinal) ? 0 : 1, exitCode);
        return verdict;
    }

    /// <summary>A macaroon minted and serialized by pymacaroons: format V1 (its default) unless <paramref name="v2"/>.</summary>
    public static async Task<string> MintAsync(byte[] rootKey, string identifier, bool v2, params string[] caveats)
    {
        var args = new List<string> { Script, "mint", "--key", Convert.ToHexStringLower(rootKey), "--identifier", identifier, "--location", SessionMacaroonsLocation };
        if (v2) args.Add("--v2");
        foreach (var caveat in caveats) args.AddRange(["--caveat", caveat]);
        var (exitCode, output, error) = await RunAsync([.. args]);
        Assert.True(exitCode == 0 && error.Length == 0, error);
        return output.Trim();
    }

    private static async Task<(int ExitCode, string Output, string Error)> RunAsync(params string[] args)
    {
        var start = new ProcessStartInfo(Interpreter) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("python3 did not start (apt-get install python3 python3-pymacaroons)");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output, await error);
    }

    private const string SessionMacaroonsLocation = Coordinator.Grains.Lightning.Macaroons.SessionMacaroons.Location;
}
