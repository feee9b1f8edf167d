using System.Collections.Concurrent;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Jobs;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>Group-committed claims, starts and results (JobStore.Batched.cs) against the real database.</summary>
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

    private async Task<Dictionary<short, (int Requests, long Tokens)>> CountersAsync(long accountId)
    {
        await using var connection = await OpenAsync();
        var rows = await connection.QueryAsync<(short Shard, int Requests, long Tokens)>(
            "SELECT shard, requests, tokens FROM quota_usage WHERE account_id = @accountId AND day = @day",
            new { accountId, day = Host.Get<Quotas>().Today });
        return rows.ToDictionary(r => r.Shard, r => (r.Requests, r.Tokens));
    }

    private static async Task<List<long>> WorkersAsync(ApiClient client, int count, string model)
    {
        var workers = new List<long>();
        for (var i = 0; i < count; i++) workers.Add((await client.NewWorkerAsync($"w{i}", model)).WorkerId);
        return workers;
    }

    [Fact]
    public async Task ManyConcurrentClaimsStartsAndResults_MoveEveryJobExactlyOnce_WithUsageCreditsAndCounters()
    {
        const int jobCount = 240;
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var submitted = await Task.WhenAll(Enumerable.Range(0, jobCount).Select(i => client.SubmitAsync(new { model, prompt = $"job {i}" })));
        var workers = await WorkersAsync(client, 16, model);
        var capabilities = new Capabilities([model], [], false);
        var claims = new ConcurrentBag<(long Worker, long Job)>();

        await Task.WhenAll(workers.Select(worker => Task.Run(async () =>
        {
            while (await Jobs.ClaimAsync(worker, capabilities) is { } job)
            {
                claims.Add((worker, job.Id));
                Assert.Equal(TransitionOutcome.Done, (await Jobs.StartAsync(worker, job.Id)).Outcome);
                var result = new JobResult($"out {job.Id}", 2, (int)(job.Id % 5) + 1, 7, null);
                Assert.Equal(TransitionOutcome.Done, (await Jobs.CompleteAsync(worker, job.Id, result)).Outcome);
            }
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

        // Counters, over all their shard rows: every claimed job's request and its result's tokens, once.
        var counters = (await CountersAsync(await AccountOfAsync(ids[0]))).Values;
        Assert.Equal((jobCount, claims.Sum(c => 2L + c.Job % 5 + 1)), (counters.Sum(c => c.Requests), counters.Sum(c => c.Tokens)));
    }

    [Fact]
    public async Task ABatchOfClaims_HandsTheBestJobsOutInPollOrder_EachOnce()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var family = ApiClient.Unique("fam");
        var model = family + ":7b";
        var oldest = await client.SubmitAsync(new { model, prompt = "p0", priority = 0 });
        // A family job is found by the model probe and by the family probe: it must still go out once.
        var best = await client.SubmitAsync(new { model, model_match = "family", prompt = "p5", priority = 5 });
        var middle = await client.SubmitAsync(new { model, prompt = "p3", priority = 3 });
        var workers = await WorkersAsync(client, 4, model);

        var claimed = await Jobs.ClaimBatchAsync(workers, new Capabilities([model], [family], false));

        Assert.Equal([best, middle, oldest], claimed.Take(3).Select(j => j!.Id));
        Assert.Null(claimed[3]);
        Assert.All(claimed.Take(3), j => Assert.Equal(1, j!.Attempts));
        await using var connection = await OpenAsync();
        var holders = (await connection.QueryAsync<(long Id, long WorkerId)>(
            "SELECT id, worker_id FROM jobs WHERE id = ANY(@ids) AND status = 'claimed'", new { ids = new[] { best, middle, oldest } }))
            .ToDictionary(r => r.Id, r => r.WorkerId);
        Assert.Equal(workers[0], holders[best]);
        Assert.Equal(workers[1], holders[middle]);
        Assert.Equal(workers[2], holders[oldest]);
        Assert.Equal(3, (await CountersAsync(await AccountOfAsync(best))).Values.Sum(c => c.Requests));
    }

    [Fact]
    public async Task ABatchOfClaimsReachingTheRequestLimit_CountsOnce_AndHoldsTheRest()
    {
        var client = await Host.NewAccountOnPlanAsync(3, null);
        var model = ApiClient.Unique();
        var ids = new List<long>();
        for (var i = 0; i < 6; i++) ids.Add(await client.SubmitAsync(new { model, prompt = $"p{i}" }));
        var workers = await WorkersAsync(client, 3, model);

        var claimed = await Jobs.ClaimBatchAsync(workers, new Capabilities([model], [], false));

        Assert.Equal(ids.Take(3), claimed.Select(j => j!.Id));
        Assert.All(claimed, j => Assert.True(j!.QuotaReached));
        var counters = await CountersAsync(await AccountOfAsync(ids[0]));
        Assert.Single(counters); // one statement, one counter row
        Assert.Equal(3, counters.Values.Sum(c => c.Requests));
        foreach (var id in ids.Skip(3)) Assert.True((await client.GetJobAsync(id)).GetProperty("held").GetBoolean());
        Assert.All(await Jobs.ClaimBatchAsync(workers, new Capabilities([model], [], false)), Assert.Null);
    }

    [Fact]
    public async Task AMixedBatch_AppliesOnlyWhatTheWorkerMayDo_AndEachOtherItemGetsItsOwnAnswer()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        for (var i = 0; i < 4; i++) await client.SubmitAsync(new { model, prompt = $"p{i}" });
        var workers = await WorkersAsync(client, 2, model);
        var (a, b) = (workers[0], workers[1]);
        var capabilities = new Capabilities([model], [], false);
        var j1 = (await Jobs.ClaimAsync(a, capabilities))!.Id;
        var j2 = (await Jobs.ClaimAsync(a, capabilities))!.Id;
        var j3 = (await Jobs.ClaimAsync(b, capabilities))!.Id;

        // Starts: A's own claimed job (twice in the batch), B on A's job, B's own job.
        var started = await Jobs.StartBatchAsync([(a, j1), (b, j2), (a, j1), (b, j3)]);
        Assert.True(started[0] ^ started[2], "a job starts once, whichever duplicate wins");
        Assert.False(started[1]);
        Assert.True(started[3]);

        // Results: valid, a foreign worker's job, a job still only claimed, the same result twice, a job that does not exist.
        var first = new JobResult("first", 1, 10, 5, "m-used");
        var second = new JobResult("second", 1, 20, 5, null);
        var done = await Jobs.CompleteBatchAsync([(a, j1, first), (a, j3, first), (a, j2, first), (a, j1, second), (a, long.MaxValue, first)]);
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
        Assert.Equal(1 + winner.OutputTokens, (await CountersAsync(await AccountOfAsync(j1))).Values.Sum(c => c.Tokens));
    }

    [Fact]
    public async Task ABatchOfResultsReachingTheTokenLimit_HoldsTheAccountsOtherJobs()
    {
        var client = await Host.NewAccountOnPlanAsync(null, 100);
        var model = ApiClient.Unique();
        for (var i = 0; i < 4; i++) await client.SubmitAsync(new { model, prompt = $"p{i}" });
        var workers = await WorkersAsync(client, 3, model);
        var claimed = await Jobs.ClaimBatchAsync(workers, new Capabilities([model], [], false));
        var items = workers.Zip(claimed, (w, j) => (w, j!.Id)).ToList();
        Assert.All(await Jobs.StartBatchAsync(items), Assert.True);

        // 3 × 40 tokens over three counter rows: no single row reaches 100, the account does.
        var done = await Jobs.CompleteBatchAsync(items.Select(i => (i.w, i.Id, new JobResult("o", 0, 40, 5, null))).ToList());

        Assert.All(done, Assert.True);
        await using var connection = await OpenAsync();
        var accountId = await AccountOfAsync(items[0].Id);
        Assert.Equal(120, (await CountersAsync(accountId)).Values.Sum(c => c.Tokens));
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

        var a = await client.GetJobAsync(outcomes[0].Value.Id);
        Assert.Equal((4, "t"), (a.GetProperty("priority").GetInt32(), a.GetProperty("tag").GetString()));
        Assert.ThrowsAny<Exception>(() => outcomes[1].Value);
        var b = outcomes[2].Value;
        Assert.Equal(("pending", 0, false), (b.Status, b.Priority, b.Held)); // the plan's default priority
        Assert.True(b.Id > outcomes[0].Value.Id);

        // Many concurrent submissions through the public call: every one inserted once, each caller with its own row.
        var rows = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => Task.Run(() => Jobs.SubmitAsync(accountId, Job($"c{i}")))));
        Assert.Equal(100, rows.Select(r => r.Id).Distinct().Count());
        await using var connection = await OpenAsync();
        var prompts = (await connection.QueryAsync<(long Id, string Prompt)>("SELECT id, prompt FROM jobs WHERE id = ANY(@ids)",
            new { ids = rows.Select(r => r.Id).ToArray() })).ToDictionary(r => r.Id, r => r.Prompt);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"c{i}"), rows.Select(r => prompts[r.Id]));
    }

    [Fact]
    public async Task ClaimBatchersOfWorkerChosenCapabilities_DoNotPileUp()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model, prompt = "p" });
        var worker = (await WorkersAsync(client, 1, model))[0];

        // Any worker can poll with made-up model lists; each set gets a batcher only while its claims run.
        await Task.WhenAll(Enumerable.Range(0, 50).Select(i => Task.Run(() => Jobs.ClaimAsync(worker, new Capabilities([ApiClient.Unique(), model], [], false)))));

        Assert.Equal(0, Jobs.ClaimBatchers);
        Assert.Equal("claimed", (await client.GetJobAsync(id)).GetProperty("status").GetString());
    }

    private static (TransitionOutcome, string?) Outcome(Transition<string> transition) => (transition.Outcome, transition.CurrentStatus);
}
