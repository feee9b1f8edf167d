using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// Every claim made for a poll names the poll (<c>jobs.poll_id</c>), so that the claims of a poll whose answer was lost
/// (the call carrying it failed) go back at once instead of after the claim lease. Driven by a fake clock.
/// </summary>
public class PollClaimsTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private PollClaims PollClaims => Host.Get<PollClaims>();

    [Fact]
    public async Task AClaimFromTheQueue_AndAHandOff_EachRecordTheirPoll()
    {
        var client = await Host.NewAccountAsync();
        var (worker, queued, model) = await client.SubmitAndClaimAsync();

        var poll = worker.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);
        var handed = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal(handed, (await poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());

        var queuedPoll = await PollOfAsync(queued);
        var handedPoll = await PollOfAsync(handed);
        Assert.NotNull(queuedPoll);
        Assert.NotNull(handedPoll);
        Assert.NotEqual(queuedPoll, handedPoll);
    }

    [Fact]
    public async Task ReleasingAPollsClaims_GivesBackOnlyItsClaimedJobs_AndAParkedPollGetsThemAtOnce()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (_, workerId) = await client.NewWorkerAsync("w1", model);
        var (_, otherWorkerId) = await client.NewWorkerAsync("w2", model);
        var capabilities = new Capabilities([model], [], false);
        var worker = Host.Grains.GetGrain<IWorkerGrain>(workerId);
        var otherWorker = Host.Grains.GetGrain<IWorkerGrain>(otherWorkerId);
        var (lostPoll, otherPoll) = (Guid.NewGuid(), Guid.NewGuid());

        // One job of each kind, each claimed through the worker grain for a poll the test names.
        var started = await client.SubmitAsync(new { model, prompt = "started" });
        Assert.Equal(started, (await worker.NextJobAsync(lostPoll, capabilities))!.Id);
        Assert.Equal(Transition<string>.Done(JobStatus.Running), await worker.StartAsync(started));
        var lost = await client.SubmitAsync(new { model, prompt = "lost" });
        Assert.Equal(lost, (await worker.NextJobAsync(lostPoll, capabilities))!.Id);
        var ofAnotherPoll = await client.SubmitAsync(new { model, prompt = "another poll" });
        Assert.Equal(ofAnotherPoll, (await worker.NextJobAsync(otherPoll, capabilities))!.Id);
        var ofAnotherWorker = await client.SubmitAsync(new { model, prompt = "another worker" });
        Assert.Equal(ofAnotherWorker, (await otherWorker.NextJobAsync(lostPoll, capabilities))!.Id);

        var (next, _) = await client.NewWorkerAsync("w3", model);
        var waiting = next.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);

        Assert.Equal(1, await PollClaims.ReleaseAsync(workerId, lostPoll));

        // The clock stands still, so the poll's window cannot end: only the released job answers it, not counted as an attempt.
        var assignment = (await waiting.WaitAsync(TimeSpan.FromSeconds(10)))!.Value;
        Assert.Equal(lost, assignment.GetProperty("job_id").GetInt64());
        Assert.Equal(1, assignment.GetProperty("attempt").GetInt32());
        Assert.Equal("running", (await client.GetJobAsync(started)).GetProperty("status").GetString());
        Assert.Equal("claimed", (await client.GetJobAsync(ofAnotherPoll)).GetProperty("status").GetString());
        Assert.Equal("claimed", (await client.GetJobAsync(ofAnotherWorker)).GetProperty("status").GetString());
        Assert.Equal(0, await PollClaims.ReleaseAsync(workerId, lostPoll));
    }

    [Fact]
    public async Task AClaimCommittedAfterItsPollWasLost_GoesBack_WhenTheClockPassesTheSecondLook()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (_, workerId) = await client.NewWorkerAsync("w", model);
        var pollId = Guid.NewGuid();

        // The front end gave the poll up before the claim made for it committed.
        await PollClaims.AnswerLostAsync(workerId, pollId);
        var id = await client.SubmitAsync(new { model, prompt = "late" });
        Assert.Equal(id, (await Host.Grains.GetGrain<IWorkerGrain>(workerId).NextJobAsync(pollId, new Capabilities([model], [], false)))!.Id);

        fixture.Clock.Advance(PollClaims.LateClaimsAfter - TimeSpan.FromMilliseconds(1));
        Assert.Equal("claimed", (await client.GetJobAsync(id)).GetProperty("status").GetString());

        fixture.Clock.Advance(TimeSpan.FromMilliseconds(1));
        await Eventually.TrueAsync(async () => (await client.GetJobAsync(id)).GetProperty("status").GetString() == "pending", "the late claim went back");
        Assert.Equal(0, (await client.GetJobAsync(id)).GetProperty("attempts").GetInt32());
    }

    private async Task<Guid?> PollOfAsync(long id)
    {
        await using var connection = await Host.OpenConnectionAsync();
        return await connection.QuerySingleAsync<Guid?>("SELECT poll_id FROM jobs WHERE id = @id", new { id });
    }
}
