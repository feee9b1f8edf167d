using System.Net;
using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// The claim lease (default 15 s): a claim whose worker does not start it in time is given back, as when the poll it was
/// claimed for was parked on a node that died before answering. Driven by a fake clock, duties run by hand.
/// </summary>
public class ClaimLeaseTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private Task<DutyReport> RunDutiesAsync() => Host.Get<GridDuties>().RunOnceAsync();

    [Fact]
    public async Task AClaimNotStartedWithinTheLease_GoesBackToPending_WithoutCountingAnAttempt_AndALateStartIsRefused()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync();

        fixture.Clock.Advance(TimeSpan.FromSeconds(14));
        await RunDutiesAsync();
        Assert.Equal(("claimed", 1), await StatusAndAttemptsAsync(client, id));

        fixture.Clock.Advance(TimeSpan.FromSeconds(2));
        await RunDutiesAsync();
        Assert.Equal(("pending", 0), await StatusAndAttemptsAsync(client, id));
        Assert.Equal(((long?)null, false), await WorkerAndClaimedAtAsync(id));

        // The worker that was never told of the job cannot start it now: it does not hold it.
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.NotFound);
        Assert.Equal(("pending", 0), await StatusAndAttemptsAsync(client, id));
    }

    [Fact]
    public async Task AGivenBackClaim_WakesAParkedPoll_AtOnce()
    {
        var client = await Host.NewAccountAsync();
        var (_, id, model) = await client.SubmitAndClaimAsync();
        fixture.Clock.Advance(TimeSpan.FromSeconds(16));
        var (alive, _) = await client.NewWorkerAsync("alive", model);
        var poll = alive.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);

        await RunDutiesAsync();

        // The clock stands still, so the poll's window cannot end: only a wake answers it.
        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(1, assignment.Value.GetProperty("attempt").GetInt32());
        await ApiClient.ExpectAsync(await alive.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task AHandedOffJobNotStartedWithinTheLease_GoesBackToPending_WithoutCountingAnAttempt()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var poll = worker.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);
        var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal(id, (await poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(("claimed", 1), await StatusAndAttemptsAsync(client, id));

        fixture.Clock.Advance(TimeSpan.FromSeconds(16));
        await RunDutiesAsync();

        Assert.Equal(("pending", 0), await StatusAndAttemptsAsync(client, id));
        Assert.Equal(((long?)null, false), await WorkerAndClaimedAtAsync(id));
    }

    [Fact]
    public async Task AJobStartedWithinTheLease_KeepsRunning()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync();
        fixture.Clock.Advance(TimeSpan.FromSeconds(14));
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);

        fixture.Clock.Advance(TimeSpan.FromSeconds(30));
        await RunDutiesAsync();

        Assert.Equal(("running", 1), await StatusAndAttemptsAsync(client, id));
    }

    private static async Task<(string? Status, int Attempts)> StatusAndAttemptsAsync(ApiClient client, long id)
    {
        var job = await client.GetJobAsync(id);
        return (job.GetProperty("status").GetString(), job.GetProperty("attempts").GetInt32());
    }

    /// <summary>Who holds the job, and whether it has a claim time: neither shows through the API.</summary>
    private async Task<(long? WorkerId, bool Claimed)> WorkerAndClaimedAtAsync(long id)
    {
        await using var connection = await Host.OpenConnectionAsync();
        return await connection.QuerySingleAsync<(long?, bool)>("SELECT worker_id, claimed_at IS NOT NULL FROM jobs WHERE id = @id", new { id });
    }
}
