using System.Net;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// Hand-off (a job submitted while a poll is parked on its dispatcher is inserted already claimed for that poll's worker),
/// claims given back, and the dispatcher's backstop read of the table.
/// </summary>
public class HandOffTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private async Task<T> ScalarAsync<T>(string sql, object parameters)
    {
        await using var connection = await Host.OpenConnectionAsync();
        return await connection.QuerySingleAsync<T>(sql, parameters);
    }

    /// <summary>Starts a long-poll and waits until it is parked on its dispatcher, the only state a hand-off takes.</summary>
    private async Task<Task<System.Text.Json.JsonElement?>> IdlePollAsync(ApiClient worker, string model, int parked = 1)
    {
        var poll = worker.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model, parked);
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
        Assert.Equal(1, (await Host.QuotaTodayAsync(row.AccountId)).Requests);
        // The worker goes on as after any claim.
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{jobId}/start"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task JobsGoToTheLongestParkedPolls_InTheOrderTheyParked()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var polls = new List<(long WorkerId, Task<System.Text.Json.JsonElement?> Poll)>();
        for (var i = 0; i < 3; i++)
        {
            var (worker, workerId) = await client.NewWorkerAsync($"w{i}", model);
            polls.Add((workerId, await IdlePollAsync(worker, model, parked: i + 1)));
        }

        var jobs = new List<long>();
        for (var i = 0; i < 3; i++) jobs.Add((await SubmitAsync(client, new { model, prompt = $"p{i}" })).JobId);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(jobs[i], (await polls[i].Poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
            Assert.Equal(polls[i].WorkerId, await ScalarAsync<long>("SELECT worker_id FROM jobs WHERE id = @id", new { id = jobs[i] }));
        }
    }

    [Fact]
    public async Task AJobTheDispatcherWasNeverToldOf_IsFoundByItsBackstopRead_AndServedToAWaitingPoll()
    {
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Dispatch:RescanInterval"] = "00:00:00.300" });
        var client = await host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var accountId = await ScalarAsync<long>("SELECT account_id FROM jobs WHERE id = @id",
            new { id = await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "x" }) }, host);
        var poll = worker.PollAsync($"models[]={model}");
        await host.ParkedAsync(model);

        // Written behind the dispatcher's back, as a notice lost with a failed call would leave it.
        var missed = await ScalarAsync<long>("""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
            VALUES (@accountId, 'pending', @model, @model, 'exact', 'missed', 0, 60, now()) RETURNING id
            """, new { accountId, model }, host);

        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(missed, assignment!.Value.GetProperty("job_id").GetInt64());
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
        // The poll was only looked at: it claimed nothing and waits again.
        await Host.ParkedAsync(model);
        Assert.False(poll.IsCompleted);
    }

    [Fact]
    public async Task AClaimGivenBack_IsPendingAgain_NotCountedAsAnAttempt_AndGoesToTheNextPoll()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, prompt = "p" });
        var (first, firstId) = await client.NewWorkerAsync("first", model);
        Assert.Equal(id, (await first.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        var (second, _) = await client.NewWorkerAsync("second", model);
        var poll = await IdlePollAsync(second, model);

        await Host.Grains.GetGrain<IJobGrain>(id).ReleaseClaimAsync(firstId);

        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((id, 1), (assignment!.Value.GetProperty("job_id").GetInt64(), assignment.Value.GetProperty("attempt").GetInt32()));
        // The first worker no longer holds it.
        await ApiClient.ExpectAsync(await first.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.NotFound);
    }

    private static async Task<T> ScalarAsync<T>(string sql, object parameters, GridHost host)
    {
        await using var connection = await host.OpenConnectionAsync();
        return await connection.QuerySingleAsync<T>(sql, parameters);
    }
}
