using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.OpenAi;

/// <summary>
/// The official <c>openai</c> npm client (pinned in tests/tools/package.json, installed by test.sh) against <c>/v1</c>:
/// tests/tools/openai-client.mjs runs its scenarios while this test plays the worker over HTTP.
/// </summary>
public class OpenAiNodeClientTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task TheOpenAiNpmClient_ListsModels_CompletesSyncAndStreaming_AndRaisesItsErrors()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var script = RunScriptAsync(new Uri(Host.BaseAddress, "/v1").ToString(), client.Key, model, stop.Token);
        // The worker: the sync request first, then the streamed one, in chunks.
        // A script that fails (no openai package, say) says why at once, not after a poll's timeout.
        async Task<JsonElement> TakeAsync()
        {
            var take = OpenAi.TakeAsync(worker, model);
            if (await Task.WhenAny(take, script) == script) await script;
            return await take;
        }
        var sync = await TakeAsync();
        Assert.Equal("system: Be brief.\nuser: sync", sync.GetProperty("prompt").GetString());
        Assert.Equal(2, sync.GetProperty("params").GetProperty("messages").GetArrayLength());
        await OpenAi.ResultAsync(worker, sync.GetProperty("job_id").GetInt64(), "Hello from the grid", inputTokens: 9, outputTokens: 4);
        var streamed = await TakeAsync();
        var id = streamed.GetProperty("job_id").GetInt64();
        await OpenAi.ChunkAsync(worker, id, 0, "Hel");
        await OpenAi.ChunkAsync(worker, id, 1, "lo");
        await OpenAi.ResultAsync(worker, id, "Hello", inputTokens: 3, outputTokens: 2);

        var lines = (await script).ToDictionary(l => l.GetProperty("scenario").GetString()!);
        Assert.Contains(model, lines["models"].GetProperty("ids").EnumerateArray().Select(m => m.GetString()));

        var answer = lines["sync"];
        Assert.Equal(("chat.completion", "Hello from the grid", "stop"),
            (answer.GetProperty("object").GetString(), answer.GetProperty("content").GetString(), answer.GetProperty("finish").GetString()));
        Assert.Equal((9, 4, 13), (answer.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(),
            answer.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), answer.GetProperty("usage").GetProperty("total_tokens").GetInt32()));

        var stream = lines["stream"];
        Assert.Equal("assistant", stream.GetProperty("role").GetString());
        Assert.Equal("Hello", string.Concat(stream.GetProperty("deltas").EnumerateArray().Select(d => d.GetString())));
        Assert.Equal("stop", stream.GetProperty("finish").GetString());
        Assert.Equal(5, stream.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        Assert.Equal(("AuthenticationError", 401, "invalid_api_key"), (lines["bad_key"].GetProperty("error").GetString(),
            lines["bad_key"].GetProperty("status").GetInt32(), lines["bad_key"].GetProperty("code").GetString()));
        Assert.Equal(("NotFoundError", 404, "model_not_found"), (lines["unknown_model"].GetProperty("error").GetString(),
            lines["unknown_model"].GetProperty("status").GetInt32(), lines["unknown_model"].GetProperty("code").GetString()));

        // Both were grid jobs of the account.
        var jobs = (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray().ToList();
        Assert.Equal(2, jobs.Count(j => j.GetProperty("status").GetString() == "completed"));
    }

    /// <summary>Runs the script with node (<c>COORDINATOR_NODE</c>, else <c>node</c> on the PATH); answers its JSON lines.</summary>
    private static async Task<List<JsonElement>> RunScriptAsync(string baseUrl, string key, string model, CancellationToken cancellationToken)
    {
        var tools = ToolsDirectory();
        var node = Environment.GetEnvironmentVariable("COORDINATOR_NODE") ?? "node";
        using var process = Process.Start(new ProcessStartInfo(node, [Path.Combine(tools, "openai-client.mjs"), baseUrl, key, model])
        {
            WorkingDirectory = tools,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        try
        {
            var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var errors = process.StandardError.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken);
            Assert.True(process.ExitCode == 0, $"openai-client.mjs exited with {process.ExitCode}: {await errors}\n{await output}");
            return (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>tests/tools of this checkout, found upwards from the test assembly; its node_modules must hold openai.</summary>
    private static string ToolsDirectory()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var tools = Path.Combine(directory.FullName, "tests", "tools");
            if (!File.Exists(Path.Combine(tools, "openai-client.mjs"))) continue;
            if (!Directory.Exists(Path.Combine(tools, "node_modules", "openai")))
            {
                throw new InvalidOperationException($"the openai npm package is not installed in {tools}: run the tests with ./test.sh, or npm ci there.");
            }
            return tools;
        }
        throw new InvalidOperationException("tests/tools/openai-client.mjs not found above " + AppContext.BaseDirectory);
    }
}
