using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// A grid worker for the agent's two models, played over the worker protocol: the eval model answers a verdict in JSON
/// (a rejection when the request says <c>please reject</c>), the work model answers <c>done: &lt;request&gt;</c> with the
/// output tokens the request names as <c>tokens=N</c> (default 10), or fails the job when the request says
/// <c>please fail</c>. Several slots poll at once, so that concurrent requests run concurrently.
/// </summary>
public sealed partial class FakeAgentWorker : IAsyncDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _slots = [];
    private int _evals;
    private int _works;

    private FakeAgentWorker() { }

    /// <summary>Eval jobs answered.</summary>
    public int Evals => Volatile.Read(ref _evals);

    /// <summary>Work jobs answered (completed or failed).</summary>
    public int Works => Volatile.Read(ref _works);

    public static async Task<FakeAgentWorker> StartAsync(GridHost host, string evalModel, string workModel, int slots = 4)
    {
        var grid = await host.NewAccountAsync("agent-worker");
        var (worker, _) = await grid.NewWorkerAsync(ApiClient.Unique("w"), evalModel, workModel);
        var fake = new FakeAgentWorker();
        var query = $"models[]={Uri.EscapeDataString(evalModel)}&models[]={Uri.EscapeDataString(workModel)}";
        for (var i = 0; i < slots; i++) fake._slots.Add(Task.Run(() => fake.ServeAsync(worker, query, evalModel)));
        return fake;
    }

    private async Task ServeAsync(ApiClient worker, string query, string evalModel)
    {
        while (!_stopping.IsCancellationRequested)
        {
            JsonElement? assignment;
            try
            {
                assignment = await worker.PollAsync(query, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (assignment is not { } job) continue;
            var id = job.GetProperty("job_id").GetInt64();
            var prompt = job.GetProperty("prompt").GetString()!;
            await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
            if (job.GetProperty("model").GetString() == evalModel)
            {
                var verdict = prompt.Contains("please reject", StringComparison.Ordinal)
                    ? """{"accept": false, "reason": "not something this agent does", "estimated_tokens": 5}"""
                    : """{"accept": true, "reason": "a fair request", "estimated_tokens": 100}""";
                await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
                    new { output = verdict, input_tokens = 50, output_tokens = 20, duration_ms = 1 }), HttpStatusCode.OK);
                Interlocked.Increment(ref _evals);
            }
            else if (prompt.Contains("please fail", StringComparison.Ordinal))
            {
                await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/fail", new { error = "the backend broke" }), HttpStatusCode.OK);
                Interlocked.Increment(ref _works);
            }
            else
            {
                var tokens = TokensPattern().Match(prompt) is { Success: true } match ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 10;
                await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
                    new { output = "done: " + prompt, input_tokens = 0, output_tokens = tokens, duration_ms = 1 }), HttpStatusCode.OK);
                Interlocked.Increment(ref _works);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await Task.WhenAll(_slots);
        _stopping.Dispose();
    }

    [GeneratedRegex(@"tokens=(\d+)")]
    private static partial Regex TokensPattern();
}
