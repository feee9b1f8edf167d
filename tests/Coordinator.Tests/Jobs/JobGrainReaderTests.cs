using System.Net;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Jobs;

/// <summary>
/// A read waiting in a job's grain hears the job's end through the grain's notice, not through its 15 s fallback that
/// re-reads the row: the fake clock never moves here, so a read that missed the notice would never end.
/// </summary>
public class JobGrainReaderTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AWaitingRead_HearsTheEnd_AfterAWorkerGaveTheClaimBack()
    {
        var (accountId, key) = await Host.Anonymous().SignUpAsync("reader");
        var client = Host.WithKey(key);
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, prompt = "p" });
        var (first, firstId) = await client.NewWorkerAsync("first", model);
        Assert.Equal(id, (await first.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        var grain = Host.Grains.GetGrain<IJobGrain>(id);
        var opening = await grain.ReadStreamAsync(accountId, 0, 0, wait: false);
        var reading = grain.ReadStreamAsync(accountId, opening.Generation, opening.Offset, wait: true);

        // A claim given back (a poll that hung up as it was answered) used to deactivate the grain under the waiting read.
        await grain.ReleaseClaimAsync(firstId);
        var (second, _) = await client.NewWorkerAsync("second", model);
        Assert.Equal(id, (await second.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await second.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await second.PostAsync($"worker/jobs/{id}/result",
            new { output = "done", input_tokens = 1, output_tokens = 1, duration_ms = 1, model_used = (string?)null }), HttpStatusCode.OK);

        await Eventually.TrueAsync(() => reading.IsCompleted, "the waiting read ends with the job");
        Assert.Equal("completed", (await reading).Final?.Status);
    }
}
