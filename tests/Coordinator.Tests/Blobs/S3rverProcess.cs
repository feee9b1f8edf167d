using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Coordinator.Tests.Blobs;

/// <summary>
/// A real S3-compatible server (s3rver from npm, installed by ./test.sh into tests/tools) on a free loopback port,
/// with one bucket, storing under a temporary folder. It speaks S3's wire protocol but does not check signatures.
/// </summary>
public sealed partial class S3rverProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;
    private readonly StringBuilder _output = new();
    private bool _disposed;

    private S3rverProcess(Process process, string directory)
    {
        _process = process;
        _directory = directory;
    }

    public const string Bucket = "coordinator-test";

    public Uri ServiceUrl { get; private set; } = null!;

    /// <summary>The settings that point a node's blob store at this server.</summary>
    public Dictionary<string, string?> Settings => new()
    {
        ["Blobs:Store"] = "s3",
        ["Blobs:S3:ServiceUrl"] = ServiceUrl.ToString(),
        ["Blobs:S3:Bucket"] = Bucket,
        ["Blobs:S3:AccessKey"] = "S3RVER",
        ["Blobs:S3:SecretKey"] = "S3RVER",
    };

    public static async Task<S3rverProcess> StartAsync()
    {
        var executable = Environment.GetEnvironmentVariable("COORDINATOR_S3RVER")
            ?? throw new InvalidOperationException("COORDINATOR_S3RVER is not set: run the tests with ./test.sh, which installs s3rver from tests/tools.");
        var directory = Path.Combine(Path.GetTempPath(), "coordinator-s3rver", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        var process = Process.Start(new ProcessStartInfo(executable, ["--directory", directory, "--address", "127.0.0.1", "--port", "0", "--configure-bucket", Bucket])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var server = new S3rverProcess(process, directory);
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            lock (server._output) server._output.AppendLine(e.Data);
            if (e.Data is not null && ListeningLine().Match(e.Data) is { Success: true } match) listening.TrySetResult(new Uri($"http://127.0.0.1:{match.Groups[1].Value}"));
        };
        process.ErrorDataReceived += (_, e) => { lock (server._output) server._output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        Task started;
        try
        {
            // Listening, or exited: whichever comes first; a server that does neither within a minute is stuck.
            started = await Task.WhenAny(listening.Task, process.WaitForExitAsync()).WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            started = Task.CompletedTask;
        }
        if (started != listening.Task)
        {
            await server.DisposeAsync();
            throw new InvalidOperationException("s3rver did not start:\n" + server.Output());
        }
        server.ServiceUrl = await listening.Task;
        return server;
    }

    /// <summary>What the server printed, for failure messages.</summary>
    public string Output()
    {
        lock (_output) return _output.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A temporary folder left behind is harmless.
        }
    }

    [GeneratedRegex(@"listening on [^:\s]+:(\d+)")]
    private static partial Regex ListeningLine();
}
