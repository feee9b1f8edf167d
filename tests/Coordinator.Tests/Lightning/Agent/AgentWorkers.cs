using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>A grid job as the fake worker received it.</summary>
internal sealed record TakenJob(long Id, string Model, string Prompt);

/// <summary>The worker's side of the agent's grid jobs, played over HTTP by a worker of a fresh account.</summary>
internal static class AgentWorkers
{
    /// <summary>Registers a worker (of a fresh account) that serves exactly <paramref name="models"/>.</summary>
    public static async Task<ApiClient> NewAsync(GridHost host, params string[] models)
    {
        var owner = await host.NewAccountAsync("agent-worker-owner");
        var (worker, _) = await owner.NewWorkerAsync("agent-worker-" + Guid.NewGuid().ToString("N")[..8], models);
        return worker;
    }

    /// <summary>Takes the next job of <paramref name="model"/> (long-polling until there is one) and starts it.</summary>
    public static async Task<TakenJob> TakeAsync(ApiClient worker, string model)
    {
        JsonElement? assignment = null;
        for (var polls = 0; assignment is null && polls < 5; polls++) assignment = await worker.PollAsync($"models[]={Uri.EscapeDataString(model)}");
        Assert.True(assignment is not null, $"no job of {model} came");
        var id = assignment!.Value.GetProperty("job_id").GetInt64();
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        return new TakenJob(id, model, assignment.Value.GetProperty("prompt").GetString()!);
    }

    public static async Task CompleteAsync(ApiClient worker, long id, string output, int inputTokens = 5, int outputTokens = 3) =>
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output, input_tokens = inputTokens, output_tokens = outputTokens, duration_ms = 10, model_used = (string?)null }), HttpStatusCode.OK);

    public static async Task FailAsync(ApiClient worker, long id, string error) =>
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/fail", new { error }), HttpStatusCode.OK);
}
