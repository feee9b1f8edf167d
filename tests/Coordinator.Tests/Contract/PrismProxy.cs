using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Coordinator.Tests.Contract;

/// <summary>
/// Stoplight Prism's validating proxy (<c>prism proxy SPEC UPSTREAM --errors</c>) in front of a node: any response that
/// does not match the spec comes back with an <c>sl-violations</c> header, which <see cref="CallAsync"/> collects.
/// </summary>
public sealed class PrismProxy : IAsyncDisposable
{
    private readonly Process _prism;
    private readonly StringBuilder _output = new();
    private readonly HttpClient _proxy;

    private PrismProxy(Process prism, HttpClient proxy)
    {
        _prism = prism;
        _proxy = proxy;
    }

    /// <summary>What Prism found wrong so far, one line per response.</summary>
    public List<string> Violations { get; } = [];

    /// <summary>The spec file: <paramref name="name"/> beside the Grid API's (COORDINATOR_SPEC points at that one).</summary>
    public static string Spec(string name)
    {
        var grid = Environment.GetEnvironmentVariable("COORDINATOR_SPEC")
            ?? throw new InvalidOperationException("COORDINATOR_SPEC is not set: run the tests with ./test.sh (it points at ../shared/specs/grid-api.openapi.yaml).");
        return Path.Combine(Path.GetDirectoryName(grid)!, name);
    }

    public static async Task<PrismProxy> StartAsync(string spec, Uri upstream)
    {
        var prism = Environment.GetEnvironmentVariable("COORDINATOR_PRISM")
            ?? throw new InvalidOperationException("COORDINATOR_PRISM is not set: run the tests with ./test.sh, which installs Prism from tests/tools.");
        var port = FreePort();
        var process = Process.Start(new ProcessStartInfo(prism, ["proxy", spec, upstream.ToString().TrimEnd('/'), "--errors", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--host", "127.0.0.1"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var proxy = new PrismProxy(process, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(60) });
        // Prism says when it listens: "Prism is listening on http://127.0.0.1:PORT".
        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            lock (proxy._output) proxy._output.AppendLine(e.Data);
            if (e.Data?.Contains("Prism is listening", StringComparison.Ordinal) == true) listening.TrySetResult();
        };
        process.ErrorDataReceived += (_, e) => { lock (proxy._output) proxy._output.AppendLine(e.Data); };
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException("prism exited early:\n" + proxy.Output()));
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await listening.Task.WaitAsync(TimeSpan.FromSeconds(60));
        return proxy;
    }

    /// <summary>
    /// Sends a request through Prism; <paramref name="authorize"/> adds the caller's credentials. Answers the body (default
    /// when empty). A violation is recorded; a status other than <paramref name="expected"/> fails at once.
    /// </summary>
    public async Task<JsonElement> CallAsync(HttpMethod method, string path, Action<HttpRequestMessage> authorize, object? body, HttpStatusCode expected)
    {
        using var request = new HttpRequestMessage(method, path);
        authorize(request);
        if (body is not null) request.Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        using var response = await _proxy.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.Headers.TryGetValues("sl-violations", out var violations))
        {
            Violations.Add($"{method} {path} → {(int)response.StatusCode}: {string.Join(" ", violations)}");
        }
        Assert.True(response.StatusCode == expected || response.Headers.Contains("sl-violations"),
            $"{method} {path}: expected {(int)expected}, got {(int)response.StatusCode}: {text}\nPrism said:\n{Output()}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Fails listing every violation Prism reported.</summary>
    public void AssertNoViolations() =>
        Assert.True(Violations.Count == 0, "Prism reported contract violations:\n" + string.Join("\n", Violations));

    private string Output()
    {
        lock (_output) return _output.ToString()[^Math.Min(_output.Length, 4000)..];
    }

    private static int FreePort() => Coordinator.Tests.Infrastructure.TestPorts.Next();

    public async ValueTask DisposeAsync()
    {
        _proxy.Dispose();
        if (!_prism.HasExited) _prism.Kill(entireProcessTree: true);
        await _prism.WaitForExitAsync();
        _prism.Dispose();
    }
}
