using System.Net;
using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Dispatch;

/// <summary>Timeouts, the offline sweep and requeue, driven by a fake clock on a database of their own.</summary>
public class DutiesTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private Task<DutyReport> RunDutiesAsync() => Host.Get<GridDuties>().RunOnceAsync();

    [Fact]
    public async Task AJobStillOutAfterItsTimeout_IsCancelledWithAReason()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(new { timeout_seconds = 60 }, start: true);

        fixture.Clock.Advance(TimeSpan.FromSeconds(59));
        await worker.PatchAsync("worker/heartbeat");
        await RunDutiesAsync();
        Assert.Equal("running", (await client.GetJobAsync(id)).GetProperty("status").GetString());

        fixture.Clock.Advance(TimeSpan.FromSeconds(2));
        await worker.PatchAsync("worker/heartbeat");
        Assert.True((await RunDutiesAsync()).TimedOut >= 1);
        var job = await client.GetJobAsync(id);
        Assert.Equal("cancelled", job.GetProperty("status").GetString());
        Assert.Contains("timed out", job.GetProperty("error").GetString());

        // The worker's late result is refused and changes nothing.
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "late", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("cancelled", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task ASilentWorker_GoesOffline_AndItsJobIsRequeuedForAnother()
    {
        var client = await Host.NewAccountAsync();
        var (dead, id, model) = await client.SubmitAndClaimAsync(start: true);
        Assert.Contains(await ModelNamesAsync(client), n => n == model);

        fixture.Clock.Advance(TimeSpan.FromSeconds(91));
        var report = await RunDutiesAsync();
        Assert.True(report.WentOffline >= 1);
        Assert.True(report.Requeued >= 1);

        Assert.DoesNotContain(await ModelNamesAsync(client), n => n == model);
        var job = await client.GetJobAsync(id);
        Assert.Equal("pending", job.GetProperty("status").GetString());
        Assert.Equal(1, job.GetProperty("attempts").GetInt32());

        // A late result from the dead worker is refused.
        await ApiClient.ExpectAsync(await dead.PostAsync($"worker/jobs/{id}/result", new { output = "zombie", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.NotFound);

        var (alive, _) = await client.NewWorkerAsync("alive", model);
        var assignment = await alive.PollAsync($"models[]={model}");
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(2, assignment.Value.GetProperty("attempt").GetInt32());
    }

    [Fact]
    public async Task HeartbeatsKeepAWorkerOnline()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        for (var i = 0; i < 3; i++)
        {
            fixture.Clock.Advance(TimeSpan.FromSeconds(60));
            await ApiClient.ExpectAsync(await worker.PatchAsync("worker/heartbeat"), HttpStatusCode.OK);
            await RunDutiesAsync();
        }
        Assert.Contains(await ModelNamesAsync(client), n => n == model);
    }

    [Fact]
    public async Task AJobAbandonedThreeTimes_Fails()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, prompt = "p" });
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var (worker, _) = await client.NewWorkerAsync($"w{attempt}", model);
            Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
            fixture.Clock.Advance(TimeSpan.FromSeconds(91));
            await RunDutiesAsync();
        }
        var job = await client.GetJobAsync(id);
        Assert.Equal("failed", job.GetProperty("status").GetString());
        Assert.Contains("abandoned 3 times", job.GetProperty("error").GetString());
        Assert.Equal(3, job.GetProperty("attempts").GetInt32());
    }

    private static async Task<List<string>> ModelNamesAsync(ApiClient client) =>
        (await ApiClient.ExpectAsync(await client.GetAsync("models"), HttpStatusCode.OK)).EnumerateArray().Select(m => m.GetProperty("name").GetString()!).ToList();
}
