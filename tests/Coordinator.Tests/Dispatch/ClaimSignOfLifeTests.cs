using System.Net;
using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// A node whose offline window (35 s) is barely longer than its poll window (30 s), with the default heartbeat throttle
/// (10 s): a worker waiting in a poll can then have been silent longer than the offline window when a job reaches it.
/// </summary>
public sealed class ShortOfflineWindowFixture : IAsyncLifetime
{
    private GridHost? _host;

    public ManualTimeProvider Clock { get; } = new();

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync() =>
        _host = await GridHost.StartAsync(time: Clock, settings: new Dictionary<string, string?> { ["Dispatch:OfflineAfter"] = "00:00:35" });

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
    }
}

/// <summary>A claim counts as a sign of life: the offline sweep right after it does not take the job away.</summary>
public class ClaimSignOfLifeTests(ShortOfflineWindowFixture fixture) : IClassFixture<ShortOfflineWindowFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AWorkerHandedAJobAfterALongWait_IsNotTakenOffline_AndKeepsTheJob()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, workerId) = await client.NewWorkerAsync("w", model);
        // Registered (seen) now; the poll 9 s later is within the heartbeat throttle and writes nothing.
        fixture.Clock.Advance(TimeSpan.FromSeconds(9));
        var poll = await ParkAsync(worker, model);
        fixture.Clock.Advance(TimeSpan.FromSeconds(27));

        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal(id, (await poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        await Host.Get<GridDuties>().RunOnceAsync();

        await AssertStillHeldAsync(client, worker, workerId, id);
    }

    [Fact]
    public async Task AWorkerThatClaimsAJobAfterALongWait_IsNotTakenOffline_AndKeepsTheJob()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, workerId) = await client.NewWorkerAsync("w", model);
        // A job that is not dispatchable until the client retries it: the retry wakes the parked poll, which claims.
        var id = await SubmitAndFailAsync(client, model);
        fixture.Clock.Advance(TimeSpan.FromSeconds(9));
        var poll = await ParkAsync(worker, model);
        fixture.Clock.Advance(TimeSpan.FromSeconds(27));

        await ApiClient.ExpectAsync(await client.PostAsync($"jobs/{id}/retry"), HttpStatusCode.OK);
        Assert.Equal(id, (await poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        await Host.Get<GridDuties>().RunOnceAsync();

        await AssertStillHeldAsync(client, worker, workerId, id);
    }

    private async Task<Task<System.Text.Json.JsonElement?>> ParkAsync(ApiClient worker, string model)
    {
        var poll = worker.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);
        return poll;
    }

    /// <summary>A failed job of the model, claimed and failed by another worker.</summary>
    private static async Task<long> SubmitAndFailAsync(ApiClient client, string model)
    {
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var (other, _) = await client.NewWorkerAsync("other", model);
        Assert.Equal(id, (await other.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await other.PostAsync($"worker/jobs/{id}/fail", new { error = "failed on purpose" }), HttpStatusCode.OK);
        return id;
    }

    private async Task AssertStillHeldAsync(ApiClient client, ApiClient worker, long workerId, long id)
    {
        var job = await client.GetJobAsync(id);
        Assert.Equal(("claimed", 1), (job.GetProperty("status").GetString(), job.GetProperty("attempts").GetInt32()));
        await using (var connection = await Host.OpenConnectionAsync())
        {
            Assert.True(await connection.QuerySingleAsync<bool>("SELECT online FROM workers WHERE id = @workerId", new { workerId }));
        }
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
    }
}
