using System.Collections.Concurrent;
using Coordinator.Grains.Dispatch;
using Coordinator.Tests.Infrastructure;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

public class DispatchTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task ParkedPoll_ReceivesAJobSubmittedLater()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var registry = Host.Get<WaiterRegistry>();
        var parkedBefore = registry.ParkedCount;

        var poll = worker.PollAsync($"models[]={model}");
        await Eventually.TrueAsync(() => registry.ParkedCount > parkedBefore, "the poll parks");
        var id = await client.SubmitAsync(new { model, prompt = "p" });

        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task JobInsertedBetweenAnEmptyClaimAndWaiting_IsStillDelivered()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        var dispatcher = Host.Get<Dispatcher>();
        var inserted = new TaskCompletionSource<long>();
        dispatcher.AfterEmptyClaim = async () =>
        {
            dispatcher.AfterEmptyClaim = null;
            // Exactly the window of the missed-wake race: the claim saw nothing, the poll has not started waiting.
            inserted.SetResult(await client.SubmitAsync(new { model, prompt = "p" }));
        };
        try
        {
            // The window is 30 s; without the wake, the poll would still be waiting when this gives up.
            var assignment = await worker.PollAsync($"models[]={model}").WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(await inserted.Task, assignment!.Value.GetProperty("job_id").GetInt64());
        }
        finally
        {
            dispatcher.AfterEmptyClaim = null;
        }
    }

    [Fact]
    public async Task ABurstOfJobs_ReachesEveryParkedPoll_WithoutWaitingForAWindow()
    {
        // The poll window is on a clock that never moves: a job left pending next to a parked poll would wait forever.
        // (Woken polls that lose a race to SKIP LOCKED must claim again; once, this left a job for the window's end.)
        await using var host = await GridHost.StartAsync(time: new ManualTimeProvider());
        var client = await host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var registry = host.Get<WaiterRegistry>();
        const int polls = 300;
        var workers = await Task.WhenAll(Enumerable.Range(0, polls).Select(async i => (await client.NewWorkerAsync($"w{i}", model)).Worker));
        var assignments = workers.Select(w => w.PollAsync($"models[]={model}")).ToList();
        await Eventually.TrueAsync(() => registry.ParkedCount == polls, "every poll parks");

        var ids = await Task.WhenAll(Enumerable.Range(0, polls).Select(i => client.SubmitAsync(new { model, prompt = $"p{i}" })));

        var received = await Task.WhenAll(assignments).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(ids.Order(), received.Select(a => a!.Value.GetProperty("job_id").GetInt64()).Order());
    }

    [Fact]
    public async Task ClientDisconnect_EndsThePollWithoutClaiming()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (quitter, _) = await client.NewWorkerAsync("quitter", model);
        var (stayer, _) = await client.NewWorkerAsync("stayer", model);
        var registry = Host.Get<WaiterRegistry>();
        var parkedBefore = registry.ParkedCount;

        using var hangUp = new CancellationTokenSource();
        var abandoned = quitter.PollAsync($"models[]={model}", hangUp.Token);
        await Eventually.TrueAsync(() => registry.ParkedCount > parkedBefore, "the poll parks");
        await hangUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        await Eventually.TrueAsync(() => registry.ParkedCount == parkedBefore, "the server drops the abandoned poll");

        var id = await client.SubmitAsync(new { model, prompt = "p" });
        var assignment = await stayer.PollAsync($"models[]={model}").WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(1, (await client.GetJobAsync(id)).GetProperty("attempts").GetInt32());
    }

    [Fact]
    public async Task TwentyWorkersRacingFor500Jobs_ClaimEachExactlyOnce()
    {
        const int jobCount = 500;
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        for (var i = 0; i < jobCount / 2; i++) await client.SubmitAsync(new { model, prompt = $"job {i}" });

        var workers = new List<ApiClient>();
        for (var i = 0; i < 20; i++) workers.Add((await client.NewWorkerAsync($"w{i}", model)).Worker);
        var claimed = new ConcurrentBag<long>();
        using var done = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var racers = workers.Select(worker => Task.Run(async () =>
        {
            while (claimed.Count < jobCount && !done.IsCancellationRequested)
            {
                try
                {
                    var job = await worker.PollAsync($"models[]={model}", done.Token);
                    if (job is { } j) claimed.Add(j.GetProperty("job_id").GetInt64());
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        })).ToList();
        // The second half arrives while the workers race, so wake-ups are exercised too.
        await Task.WhenAll(Enumerable.Range(0, jobCount / 2).Select(i => client.SubmitAsync(new { model, prompt = $"late {i}" })));
        await Eventually.TrueAsync(() => claimed.Count >= jobCount, "every job is claimed", 60_000);
        await done.CancelAsync();
        await Task.WhenAll(racers);

        Assert.Equal(jobCount, claimed.Count);
        Assert.Equal(jobCount, claimed.Distinct().Count());
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM jobs WHERE model = @model AND status = 'claimed' AND attempts = 1", connection);
        command.Parameters.AddWithValue("model", model);
        Assert.Equal((long)jobCount, await command.ExecuteScalarAsync());
    }
}
