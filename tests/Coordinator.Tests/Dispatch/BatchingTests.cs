using System.Collections.Concurrent;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>Group-committed submissions, claims, starts and results (JobStore.Batched.cs) against the real database, and the quota counts of their grains.</summary>
public class BatchingTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private JobStore Jobs => Host.Get<JobStore>();

    private Task<NpgsqlConnection> OpenAsync() => Host.OpenConnectionAsync();

    private async Task<long> AccountOfAsync(long jobId)
    {
        await using var connection = await OpenAsync();
        return await connection.QuerySingleAsync<long>("SELECT account_id FROM jobs WHERE id = @jobId", new { jobId });
    }

    private static async Task<List<long>> WorkersAsync(ApiClient client, int count, string model)
    {
        var workers = new List<long>();
        for (var i = 0; i < count; i++) workers.Add((await client.NewWorkerAsync($"w{i}", model)).WorkerId);
        return workers;
    }

    [Fact]
    public async Task ManyConcurrentClaimsStartsAndResults_MoveEveryJobExactlyOnce_WithUsageAndCredits()
    {
        const int jobCount = 240;
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var submitted = await Task.WhenAll(Enumerable.Range(0, jobCount).Select(i => client.SubmitAsync(new { model, prompt = $"job {i}" })));
        var workers = await WorkersAsync(client, 16, model);
        var claims = new ConcurrentBag<(long Worker, long Job)>();

        // Every job is claimed by two workers at once, as two racing dispatcher activations would: one claim wins.
        await Task.WhenAll(submitted.Select((id, i) => Task.Run(async () =>
        {
            var rivals = new[] { workers[i % 16], workers[(i + 7) % 16] };
            var won = (await Task.WhenAll(rivals.Select(worker => Jobs.ClaimAsync(id, worker))))
                .Zip(rivals).Where(c => c.First is not null).ToList();
            var (job, worker) = Assert.Single(won);
            claims.Add((worker, job!.Id));
            Assert.Equal(TransitionOutcome.Done, (await Jobs.StartAsync(worker, id)).Outcome);
            var result = new JobResult($"out {id}", 2, (int)(id % 5) + 1, 7, null);
            Assert.Equal(TransitionOutcome.Done, (await Jobs.CompleteAsync(worker, id, result)).Outcome);
        })));

        Assert.Equal(submitted.Order(), claims.Select(c => c.Job).Order());
        await using var connection = await OpenAsync();
        var ids = submitted.ToArray();
        Assert.Equal(jobCount, await connection.QuerySingleAsync<int>("""
            SELECT count(*)::int FROM jobs
            WHERE id = ANY(@ids) AND status = 'completed' AND attempts = 1 AND output = 'out ' || id AND output_tokens = id % 5 + 1
            """, new { ids }));
        // Each job's usage and credits on its row: the tokens reported, credits at the default rate of 1 per 1000 output tokens.
        Assert.Equal(jobCount, await connection.QuerySingleAsync<int>("""
            SELECT count(*)::int FROM jobs
            WHERE id = ANY(@ids) AND input_tokens = 2 AND credits = round(output_tokens / 1000.0, 4) AND payout_batch_id IS NULL
            """, new { ids }));
        var held = claims.ToDictionary(c => c.Job, c => c.Worker);
        Assert.All(await connection.QueryAsync<(long Id, long WorkerId)>("SELECT id, worker_id FROM jobs WHERE id = ANY(@ids)", new { ids }),
            j => Assert.Equal(held[j.Id], j.WorkerId));
    }

    [Fact]
    public async Task ABatchOfClaimsNamingOneJobTwice_HandsItToOneWorker_AndNothingThatIsNotPendingAndUnheld()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var twice = await client.SubmitAsync(new { model, prompt = "p0" });
        var once = await client.SubmitAsync(new { model, prompt = "p1" });
        var cancelled = await client.SubmitAsync(new { model, prompt = "p2" });
        await ApiClient.ExpectAsync(await client.DeleteAsync($"jobs/{cancelled}"), System.Net.HttpStatusCode.OK);
        var heldJob = await client.SubmitAsync(new { model, prompt = "p3" });
        await using (var connection = await OpenAsync())
        {
            await connection.ExecuteAsync("UPDATE jobs SET held = true WHERE id = @heldJob", new { heldJob });
        }
        var workers = await WorkersAsync(client, 2, model);

        var claimed = await Jobs.ClaimBatchAsync([(twice, workers[0], null), (once, workers[1], null), (twice, workers[1], null), (cancelled, workers[0], null), (heldJob, workers[0], null)]);

        Assert.True(claimed[0] is null ^ claimed[2] is null, "one of the two claims of one job wins");
        Assert.Equal(once, claimed[1]!.Id);
        Assert.Null(claimed[3]);
        Assert.Null(claimed[4]);
        var winner = claimed[0] is null ? workers[1] : workers[0];
        await using var check = await OpenAsync();
        Assert.Equal((winner, 1), await check.QuerySingleAsync<(long, int)>("SELECT worker_id, attempts FROM jobs WHERE id = @twice AND status = 'claimed'", new { twice }));
    }

    [Fact]
    public async Task AMixedBatch_AppliesOnlyWhatTheWorkerMayDo_AndEachOtherItemGetsItsOwnAnswer()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var jobs = new List<long>();
        for (var i = 0; i < 3; i++) jobs.Add(await client.SubmitAsync(new { model, prompt = $"p{i}" }));
        var workers = await WorkersAsync(client, 2, model);
        var (a, b) = (workers[0], workers[1]);
        var j1 = (await Jobs.ClaimAsync(jobs[0], a))!.Id;
        var j2 = (await Jobs.ClaimAsync(jobs[1], a))!.Id;
        var j3 = (await Jobs.ClaimAsync(jobs[2], b))!.Id;

        // Starts: A's own claimed job (twice in the batch), B on A's job, B's own job.
        var started = await Jobs.StartBatchAsync([(a, j1), (b, j2), (a, j1), (b, j3)]);
        Assert.True(started[0] ^ started[2], "a job starts once, whichever duplicate wins");
        Assert.False(started[1]);
        Assert.True(started[3]);

        // Results: valid, a foreign worker's job, a job still only claimed, the same result twice, a job that does not exist.
        var first = new JobResult("first", 1, 10, 5, "m-used");
        var second = new JobResult("second", 1, 20, 5, null);
        var done = (await Jobs.CompleteBatchAsync([(a, j1, first), (a, j3, first), (a, j2, first), (a, j1, second), (a, long.MaxValue, first)]))
            .Select(account => account is not null).ToList();
        Assert.True(done[0] ^ done[3], "a result applies once, whichever duplicate wins");
        Assert.False(done[1]);
        Assert.False(done[2]);
        Assert.False(done[4]);

        // The public calls answer each refused item as before: foreign or unknown is not found, otherwise the state.
        var late = new JobResult("late", 1, 30, 5, null);
        Assert.Equal(TransitionOutcome.NotFound, (await Jobs.CompleteAsync(a, j3, late)).Outcome);
        Assert.Equal(TransitionOutcome.NotFound, (await Jobs.CompleteAsync(a, long.MaxValue, late)).Outcome);
        Assert.Equal((TransitionOutcome.WrongState, "claimed"), Outcome(await Jobs.CompleteAsync(a, j2, late)));
        Assert.Equal((TransitionOutcome.WrongState, "completed"), Outcome(await Jobs.CompleteAsync(a, j1, late)));
        Assert.Equal((TransitionOutcome.WrongState, "running"), Outcome(await Jobs.StartAsync(b, j3)));
        Assert.Equal(TransitionOutcome.NotFound, (await Jobs.StartAsync(b, j2)).Outcome);

        await using var connection = await OpenAsync();
        var winner = done[0] ? first : second;
        var row = await connection.QuerySingleAsync<(string Status, string Output, int OutputTokens)>(
            "SELECT status, output, output_tokens FROM jobs WHERE id = @j1", new { j1 });
        Assert.Equal(("completed", winner.Output, winner.OutputTokens), row);
        Assert.Equal("running", await connection.QuerySingleAsync<string>("SELECT status FROM jobs WHERE id = @j3", new { j3 }));
        Assert.Equal("claimed", await connection.QuerySingleAsync<string>("SELECT status FROM jobs WHERE id = @j2", new { j2 }));
        var usage = (await connection.QueryAsync<(long JobId, string? Model, int OutputTokens, decimal Credits)>(
            "SELECT id, COALESCE(model_used, model), output_tokens, credits FROM jobs WHERE id = ANY(@ids) AND credits IS NOT NULL",
            new { ids = new[] { j1, j2, j3 } })).ToList();
        Assert.Equal([(j1, winner.ModelUsed ?? model, winner.OutputTokens, winner.OutputTokens / 1000m)], usage);
    }

    [Fact]
    public async Task ClaimsReachingTheRequestLimit_CountOnce_AndHoldTheRest()
    {
        var client = await Host.NewAccountOnPlanAsync(3, null);
        var model = ApiClient.Unique();
        var ids = new List<long>();
        for (var i = 0; i < 6; i++) ids.Add(await client.SubmitAsync(new { model, prompt = $"p{i}" }));
        var workers = new List<ApiClient>();
        for (var i = 0; i < 3; i++) workers.Add((await client.NewWorkerAsync($"w{i}", model)).Worker);

        var claimed = await Task.WhenAll(workers.Select(worker => worker.PollAsync($"models[]={model}")));

        Assert.Equal(ids.Take(3), claimed.Select(job => job!.Value.GetProperty("job_id").GetInt64()).Order());
        Assert.Equal(3, (await Host.QuotaTodayAsync(await AccountOfAsync(ids[0]))).Requests);
        foreach (var id in ids.Skip(3)) Assert.True((await client.GetJobAsync(id)).GetProperty("held").GetBoolean());
        Assert.Equal(0, (await Host.DispatcherAsync(model)).QueuedJobs);
    }

    [Fact]
    public async Task TheCountsOfAnAccountWithoutLimits_ReachItsGrain_WithinASecondOrSo()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var ids = new List<long>();
        for (var i = 0; i < 5; i++) ids.Add(await client.SubmitAsync(new { model, prompt = $"p{i}" }));

        // The first claim asks the account's grain, which answers that the plan has no limit; the rest are added up on the
        // silo and sent together.
        foreach (var id in ids)
        {
            Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
            await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), System.Net.HttpStatusCode.OK);
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "o", input_tokens = 3, output_tokens = 7, duration_ms = 1 }),
                System.Net.HttpStatusCode.OK);
        }

        var accountId = await AccountOfAsync(ids[0]);
        await Eventually.TrueAsync(async () => await Host.QuotaTodayAsync(accountId) is { Requests: 5, Tokens: 50 },
            "the account's grain has every request and token counted");
    }

    [Fact]
    public async Task ResultsReachingTheTokenLimit_HoldTheAccountsOtherJobs()
    {
        var client = await Host.NewAccountOnPlanAsync(null, 100);
        var model = ApiClient.Unique();
        var ids = new List<long>();
        for (var i = 0; i < 4; i++) ids.Add(await client.SubmitAsync(new { model, prompt = $"p{i}" }));
        var workers = await WorkersAsync(client, 3, model);
        var items = workers.Zip(ids).ToList();
        foreach (var (worker, id) in items)
        {
            Assert.NotNull(await Jobs.ClaimAsync(id, worker));
            Assert.Equal(TransitionOutcome.Done, (await Jobs.StartAsync(worker, id)).Outcome);
        }

        // 3 × 40 tokens, reported at once through the workers' grains: the account passes 100.
        var done = await Task.WhenAll(items.Select(i => Host.Grains.GetGrain<IWorkerGrain>(i.First).CompleteAsync(i.Second, new JobResult("o", 0, 40, 5, null))));

        Assert.All(done, d => Assert.Equal(TransitionOutcome.Done, d.Outcome));
        var accountId = await AccountOfAsync(ids[0]);
        Assert.Equal(120, (await Host.QuotaTodayAsync(accountId)).Tokens);
        await using var connection = await OpenAsync();
        Assert.Equal(1, await connection.QuerySingleAsync<int>(
            "SELECT count(*)::int FROM jobs WHERE account_id = @accountId AND status = 'pending' AND held", new { accountId }));
    }

    [Fact]
    public async Task ABatchOfSubmissions_SharesOneCommit_AndABadOneFailsOnlyItsOwnCaller()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var accountId = await AccountOfAsync(await client.SubmitAsync(new { model, prompt = "first" }));
        NewJob Job(string prompt, int? priority = null) => new(model, ModelMatch.Exact, prompt, priority, 60, "t", null);

        var outcomes = await Jobs.SubmitBatchAsync([(accountId, Job("a", 4), null), (long.MaxValue, Job("nobody's"), null), (accountId, Job("b"), null)]);

        var a = await client.GetJobAsync(outcomes[0].Value.Row!.Id);
        Assert.Equal((4, "t"), (a.GetProperty("priority").GetInt32(), a.GetProperty("tag").GetString()));
        Assert.ThrowsAny<Exception>(() => outcomes[1].Value);
        var b = outcomes[2].Value.Row!;
        Assert.Equal(("pending", 0, false), (b.Status, b.Priority, b.Held)); // the plan's default priority
        Assert.True(b.Id > outcomes[0].Value.Row!.Id);

        // Many concurrent submissions through the public call: every one inserted once, each caller with its own row.
        var rows = (await Task.WhenAll(Enumerable.Range(0, 100).Select(i => Task.Run(() => Jobs.SubmitAsync(accountId, Job($"c{i}"), null)))))
            .Select(submitted => submitted.Row!).ToList();
        Assert.Equal(100, rows.Select(r => r.Id).Distinct().Count());
        await using var connection = await OpenAsync();
        var prompts = (await connection.QueryAsync<(long Id, string Prompt)>("SELECT id, prompt FROM jobs WHERE id = ANY(@ids)",
            new { ids = rows.Select(r => r.Id).ToArray() })).ToDictionary(r => r.Id, r => r.Prompt);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"c{i}"), rows.Select(r => prompts[r.Id]));
    }

    private static (TransitionOutcome, string?) Outcome<T>(Transition<T> transition) => (transition.Outcome, transition.CurrentStatus);
}
