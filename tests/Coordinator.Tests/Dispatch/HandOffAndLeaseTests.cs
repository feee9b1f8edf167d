using System.Net;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// Hand-off (a job submitted while an idle poll of the same node can serve it is inserted already claimed for it)
/// and leases (in-process consumers that claim and start many jobs in one statement).
/// </summary>
public class HandOffAndLeaseTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private JobStore Jobs => Host.Get<JobStore>();

    private WaiterRegistry Registry => Host.Get<WaiterRegistry>();

    private Task<NpgsqlConnection> OpenAsync() => Host.OpenConnectionAsync();

    private async Task<T> ScalarAsync<T>(string sql, object parameters)
    {
        await using var connection = await OpenAsync();
        return await connection.QuerySingleAsync<T>(sql, parameters);
    }

    private Task<int> RequestsCountedAsync(long accountId) => ScalarAsync<int>(
        "SELECT coalesce(sum(requests), 0)::int FROM quota_usage WHERE account_id = @accountId AND day = @day",
        new { accountId, day = Host.Get<Quotas>().Today });

    /// <summary>Starts a long-poll and waits until it is idle (past its empty claim), the only state a hand-off takes.</summary>
    private async Task<Task<System.Text.Json.JsonElement?>> IdlePollAsync(ApiClient worker, string model)
    {
        var idleBefore = Registry.IdleCount;
        var poll = worker.PollAsync($"models[]={model}");
        await Eventually.TrueAsync(() => Registry.IdleCount > idleBefore, "the poll is parked and idle");
        return poll;
    }

    private static async Task<(long JobId, string Status)> SubmitAsync(ApiClient client, object job)
    {
        var json = await ApiClient.ExpectAsync(await client.PostAsync("jobs", job), HttpStatusCode.Created);
        return (json.GetProperty("job_id").GetInt64(), json.GetProperty("status").GetString()!);
    }

    [Fact]
    public async Task AJobSubmittedWhileAnIdlePollWaits_IsInsertedClaimedForIt_AndCountsAsARequest()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, workerId) = await client.NewWorkerAsync("w", model);
        var poll = await IdlePollAsync(worker, model);

        var (jobId, status) = await SubmitAsync(client, new { model, prompt = "handed" });

        Assert.Equal("claimed", status);
        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(jobId, assignment!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal("handed", assignment.Value.GetProperty("prompt").GetString());
        // One write: inserted claimed, by this worker, at the moment of submission, first attempt.
        var row = await ScalarAsync<(long WorkerId, int Attempts, bool SameInstant, long AccountId)>(
            "SELECT worker_id, attempts, claimed_at = created_at, account_id FROM jobs WHERE id = @jobId", new { jobId });
        Assert.Equal((workerId, 1, true), (row.WorkerId, row.Attempts, row.SameInstant));
        Assert.Equal(1, await RequestsCountedAsync(row.AccountId));
        // The worker goes on as after any claim.
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{jobId}/start"), HttpStatusCode.OK);
    }

    [Theory]
    [InlineData(0, false)] // same priority: the older job goes first, so no hand-off
    [InlineData(5, true)]  // higher priority: it ranks ahead of the older one, so it may be handed over
    public async Task AHandOff_NeverJumpsAheadOfADispatchableJobTheWorkerCouldServe(int newPriority, bool handed)
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var accountId = await ScalarAsync<long>("SELECT account_id FROM jobs WHERE id = @id", new { id = await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "x" }) });
        var poll = await IdlePollAsync(worker, model);
        // An older dispatchable job that woke nobody (as one committed by another silo whose wake is still on its way).
        var older = await ScalarAsync<long>("""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
            VALUES (@accountId, 'pending', @model, @model, 'exact', 'older', 0, 60, now()) RETURNING id
            """, new { accountId, model });

        var (jobId, status) = await SubmitAsync(client, new { model, prompt = "newer", priority = newPriority });

        Assert.Equal(handed ? "claimed" : "pending", status);
        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(handed ? jobId : older, assignment!.Value.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task AHandOffThatReachesTheDailyLimit_HoldsTheRest_AndAHeldJobIsNotHandedOver()
    {
        var client = await Host.NewAccountOnPlanAsync(1, null);
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var poll = await IdlePollAsync(worker, model);
        var (first, firstStatus) = await SubmitAsync(client, new { model, prompt = "1" });
        Assert.Equal("claimed", firstStatus);
        Assert.Equal(first, (await poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());

        poll = await IdlePollAsync(worker, model);
        var (second, secondStatus) = await SubmitAsync(client, new { model, prompt = "2" });

        Assert.Equal("pending", secondStatus);
        Assert.True((await client.GetJobAsync(second)).GetProperty("held").GetBoolean());
        // The poll was only woken: it claimed nothing and waits again.
        await Eventually.TrueAsync(() => Registry.IdleCount > 0, "the woken poll waits again");
        Assert.False(poll.IsCompleted);
    }

    [Fact]
    public async Task ALease_ClaimsAndStartsUpToN_InFetchOrder_AndCompleteManyFinishesOnlyTheWorkersOwn()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var low = await client.SubmitAsync(new { model, prompt = "low", priority = 1 });
        var high = await client.SubmitAsync(new { model, prompt = "high", priority = 9 });
        var mid = await client.SubmitAsync(new { model, prompt = "mid", priority = 5 });
        var (_, workerId) = await client.NewWorkerAsync("w", model);
        var (_, otherWorker) = await client.NewWorkerAsync("other", model);
        var accountId = await ScalarAsync<long>("SELECT account_id FROM jobs WHERE id = @low", new { low });
        var capabilities = new Capabilities([model], [], false);

        var leased = await Jobs.LeaseAsync(workerId, capabilities, 2);

        Assert.Equal(new[] { high, mid }, leased.Select(j => j.Id));
        Assert.All(leased, job => Assert.True(job.Started));
        Assert.Equal(2, await ScalarAsync<int>(
            "SELECT count(*)::int FROM jobs WHERE id = ANY(@ids) AND status = 'running' AND worker_id = @workerId AND started_at = claimed_at AND attempts = 1",
            new { ids = new[] { high, mid }, workerId }));
        Assert.Equal(2, await RequestsCountedAsync(accountId));
        // Another worker cannot complete them; the holder completes both in one call.
        Assert.Equal(new[] { false }, await Jobs.CompleteManyAsync(otherWorker, [(high, new JobResult("x", 1, 1, 1, null))]));
        var done = await Jobs.CompleteManyAsync(workerId, [(high, new JobResult("h", 1, 2, 3, null)), (mid, new JobResult("m", 1, 2, 3, null)), (low, new JobResult("l", 1, 2, 3, null))]);
        Assert.Equal(new[] { true, true, false }, done);
        Assert.Equal("h", (await client.GetJobAsync(high)).GetProperty("output").GetString());
        Assert.Equal("pending", (await client.GetJobAsync(low)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task ALeaseGivenBack_IsPendingAgain_AndNotCountedAsAnAttempt()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, prompt = "p" });
        var (_, workerId) = await client.NewWorkerAsync("w", model);
        var leased = Assert.Single(await Jobs.LeaseAsync(workerId, new Capabilities([model], [], false), 10));

        await Jobs.ReleaseClaimAsync(workerId, leased);

        var job = await client.GetJobAsync(id);
        Assert.Equal(("pending", 0), (job.GetProperty("status").GetString(), job.GetProperty("attempts").GetInt32()));
    }

    [Fact]
    public async Task NextJobsAsync_WaitsForWork_ThenTakesWhatIsThere()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var (_, workerId) = await client.NewWorkerAsync("w", model);
        var dispatcher = Host.Get<Dispatcher>();
        var idleBefore = Registry.IdleCount;
        var next = dispatcher.NextJobsAsync(workerId, new Capabilities([model], [], false), 8, CancellationToken.None);
        await Eventually.TrueAsync(() => Registry.IdleCount > idleBefore, "the consumer is parked and idle");

        var first = await client.SubmitAsync(new { model, prompt = "1" });

        // The idle consumer is handed the first job on submission.
        var got = await next.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(first, Assert.Single(got).Id);
        Assert.True(got[0].Started); // a lease consumer's poll is handed its job running, as a lease is
        Assert.Equal("running", (await client.GetJobAsync(first)).GetProperty("status").GetString());
        var later = new[] { await client.SubmitAsync(new { model, prompt = "2" }), await client.SubmitAsync(new { model, prompt = "3" }) };
        var batch = await dispatcher.NextJobsAsync(workerId, new Capabilities([model], [], false), 8, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(later, batch.Select(j => j.Id));
    }
}
