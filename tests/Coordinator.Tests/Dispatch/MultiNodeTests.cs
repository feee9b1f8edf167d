using System.Diagnostics;
using Coordinator.Grains.Dispatch;
using Coordinator.Tests.Infrastructure;
using Orleans.Runtime;

namespace Coordinator.Tests.Dispatch;

/// <summary>Two silos on one database: a job submitted on one reaches a poll waiting on the other through the family's dispatcher.</summary>
public sealed class MultiNodeTests : IAsyncLifetime
{
    private GridHost _nodeA = null!;
    private bool _nodeAStopped;
    private GridHost _nodeB = null!;

    public async Task InitializeAsync()
    {
        (_nodeA, _nodeB) = await TwoNodes.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (!_nodeAStopped) await _nodeA.DisposeAsync();
        await _nodeB.DisposeAsync();
    }

    [Fact]
    public async Task AWorkerParkedOnNodeB_GetsEachJobSubmittedOnNodeA()
    {
        // How fast is measured in bench/ (dispatch between silos), not asserted here.
        var clientOnA = await _nodeA.NewAccountAsync();
        var model = ApiClient.Unique();
        var (workerOnA, _) = await clientOnA.NewWorkerAsync("w", model);
        var workerOnB = _nodeB.WithKey(workerOnA.Key);

        for (var round = 0; round < 5; round++)
        {
            var poll = workerOnB.PollAsync($"models[]={model}");
            await Eventually.TrueAsync(() => _nodeB.PollsWaiting == 1, "the poll waits on node B");
            await _nodeA.ParkedAsync(model);
            var id = await clientOnA.SubmitAsync(new { model, prompt = $"round {round}" });
            var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        }
    }

    [Fact]
    public async Task PollsOnBothSilos_AreServedInTheOrderTheyParked_WhereverTheJobsAreSubmitted()
    {
        var client = await _nodeA.NewAccountAsync();
        var model = ApiClient.Unique();
        var (workerA, _) = await client.NewWorkerAsync("a", model);
        var (workerB, _) = await client.NewWorkerAsync("b", model);

        var pollB = _nodeB.WithKey(workerB.Key).PollAsync($"models[]={model}");
        await _nodeA.ParkedAsync(model);
        var pollA = workerA.PollAsync($"models[]={model}");
        await _nodeA.ParkedAsync(model, 2);

        // The first job goes to the poll that parked first, on the other silo; the second to the one here.
        var first = await client.SubmitAsync(new { model, prompt = "first" });
        Assert.Equal(first, (await pollB.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        Assert.False(pollA.IsCompleted);
        var second = await _nodeB.WithKey(client.Key).SubmitAsync(new { model, prompt = "second" });
        Assert.Equal(second, (await pollA.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
    }

    [Fact]
    public async Task APollParkedOnB_IsServed_AfterTheSiloOfItsDispatcherStops()
    {
#pragma warning disable CA2000 // disposed in the finally below, unless the test has stopped it itself
        var nodeC = await GridHost.StartAsync(_nodeA.ConnectionString);
#pragma warning restore CA2000
        var nodeCStopped = false;
        try
        {
            var clientOnA = await _nodeA.NewAccountAsync();
            var management = _nodeA.Get<IGrainFactory>().GetGrain<IManagementGrain>(0);
            var siloB = _nodeB.Silo;
            // A family whose dispatcher lives on C, not on B where the poll parks: a call from C activates it (placement
            // may prefer the calling silo, or not; the loop takes the first family that landed elsewhere than B).
            string model = "", dispatcherSilo = "";
            for (var attempt = 0; attempt < 20; attempt++)
            {
                model = ApiClient.Unique();
                var family = Coordinator.Grains.ModelNames.FamilyOf(model);
                await nodeC.Get<IGrainFactory>().GetGrain<IDispatcherGrain>(family).StatsAsync();
                var activations = await management.GetDetailedGrainStatistics();
                var dispatcher = activations.Where(a => a.GrainId.Key.ToString() == family).ToList();
                Assert.True(dispatcher.Count == 1, $"looked for {family} among {string.Join(", ", activations.Select(a => $"{a.GrainType}/{a.GrainId}"))}");
                dispatcherSilo = dispatcher[0].SiloAddress.ToString();
                if (dispatcherSilo != siloB) break;
            }
            // Registered on B, so that its worker grain lives there with the poll.
            var (registered, _) = await _nodeB.WithKey(clientOnA.Key).NewWorkerAsync("w", model);
            var workerOnB = _nodeB.WithKey(registered.Key);
            var poll = workerOnB.PollAsync($"models[]={model}");
            await Eventually.TrueAsync(() => _nodeB.PollsWaiting == 1, "the poll waits on node B");
            await _nodeB.ParkedAsync(model);
            Assert.NotEqual(siloB, dispatcherSilo);

            var owner = dispatcherSilo == _nodeA.Silo ? _nodeA : nodeC;
            var submitter = owner == _nodeA ? nodeC : _nodeA;
            if (owner == nodeC) nodeCStopped = true;
            else _nodeAStopped = true;
            await owner.DisposeAsync();

            // The dispatcher comes back elsewhere, reading the table again; the poll on B parks on it again and is served
            // by a job submitted on the silo that is left.
            var id = await submitter.WithKey(clientOnA.Key).SubmitAsync(new { model, prompt = "after the dispatcher's silo stopped" });
            var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        }
        finally
        {
            if (!nodeCStopped) await nodeC.DisposeAsync();
        }
    }

    [Fact]
    public async Task AKeyRevokedOnNodeA_StopsWorkingOnNodeB_WithinTheKeyCacheDuration()
    {
        var clientOnA = await _nodeA.NewAccountAsync();
        var created = await ApiClient.ExpectAsync(await clientOnA.PostAsync("keys", new { name = "short-lived" }), System.Net.HttpStatusCode.Created);
        var onB = _nodeB.WithKey(created.GetProperty("key").GetString()!);
        await ApiClient.ExpectAsync(await onB.GetAsync("jobs"), System.Net.HttpStatusCode.OK); // cached on node B now

        await ApiClient.ExpectAsync(await clientOnA.DeleteAsync($"keys/{created.GetProperty("id").GetInt64()}"), System.Net.HttpStatusCode.OK);
        var revokedAt = Stopwatch.GetTimestamp();
        var refused = false;
        while (!refused)
        {
            refused = (await onB.GetAsync("jobs")).StatusCode == System.Net.HttpStatusCode.Unauthorized;
            Assert.True(refused || Stopwatch.GetElapsedTime(revokedAt) < TimeSpan.FromSeconds(8), "node B still accepts the revoked key");
            if (!refused) await Task.Delay(50);
        }
    }

    [Fact]
    public async Task ANodeShuttingDown_AnswersItsParkedPollsAtOnce()
    {
        await using var node = await GridHost.StartAsync(_nodeA.ConnectionString);
        var client = await node.NewAccountAsync();
        var (registered, _) = await client.NewWorkerAsync("w", ApiClient.Unique());
        // Its own HttpClient: disposing the host disposes the host's client, which would cancel the poll from our side.
        using var http = new HttpClient { BaseAddress = node.BaseAddress };
        var worker = new ApiClient(http, registered.Key);
        var poll = worker.GetAsync("worker/jobs/next");
        await Eventually.TrueAsync(() => node.PollsWaiting == 1, "the poll waits");
        var stopping = node.DisposeAsync().AsTask();
        var response = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(System.Net.HttpStatusCode.NoContent, response.StatusCode);
        await stopping;
    }
}
