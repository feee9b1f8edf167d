using System.Collections.Concurrent;
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

        var poll = worker.PollAsync($"models[]={model}");
        await Host.ParkedAsync(model);
        var id = await client.SubmitAsync(new { model, prompt = "p" });

        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task APollAndAJobArrivingTogether_AlwaysMeet()
    {
        // The poll window is on a clock that never moves: a job left pending beside a waiting poll would wait forever.
        await using var host = await GridHost.StartAsync(time: new ManualTimeProvider());
        var client = await host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        for (var round = 0; round < 40; round++)
        {
            // Whichever reaches the dispatcher first, the other finds it: no window where a job and a poll miss each other.
            var poll = worker.PollAsync($"models[]={model}");
            var id = await client.SubmitAsync(new { model, prompt = $"round {round}" });
            var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
            await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), System.Net.HttpStatusCode.OK);
        }
    }

    [Fact]
    public async Task ABurstOfJobs_ReachesEveryParkedPoll_WithoutWaitingForAWindow()
    {
        // The poll window is on a clock that never moves: a job left pending next to a parked poll would wait forever.
        await using var host = await GridHost.StartAsync(time: new ManualTimeProvider());
        var client = await host.NewAccountOnPlanAsync(null, null);
        var model = ApiClient.Unique();
        const int polls = 300;
        // The workers register one after another: the burst under test is the jobs', not 300 sign-ups at once racing the
        // host's connection pool on a busy machine.
        var workers = new List<ApiClient>();
        for (var i = 0; i < polls; i++) workers.Add((await client.NewWorkerAsync($"w{i}", model)).Worker);
        var assignments = workers.Select(w => w.PollAsync($"models[]={model}")).ToList();
        await host.ParkedAsync(model, polls);

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

        using var hangUp = new CancellationTokenSource();
        var abandoned = quitter.PollAsync($"models[]={model}", hangUp.Token);
        await Host.ParkedAsync(model);
        await hangUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        await Eventually.TrueAsync(async () => (await Host.DispatcherAsync(model)).ParkedPolls == 0, "the server drops the abandoned poll");

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
