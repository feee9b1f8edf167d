using System.Diagnostics;
using Coordinator.Grains.Dispatch;
using Coordinator.Tests.Infrastructure;
using System.Diagnostics.Metrics;
using Orleans.Runtime;

namespace Coordinator.Tests.Dispatch;

/// <summary>Two silos on one database: wake-ups cross between them through the family dispatchers.</summary>
public sealed class MultiNodeTests : IAsyncLifetime
{
    private GridHost _nodeA = null!;
    private bool _nodeAStopped;
    private GridHost _nodeB = null!;

    public async Task InitializeAsync()
    {
        _nodeA = await GridHost.StartAsync();
        _nodeB = await GridHost.StartAsync(_nodeA.ConnectionString);
        await Eventually.TrueAsync(() => _nodeA.Get<ClusterWakes>().Active && _nodeB.Get<ClusterWakes>().Active, "both silos are active");
    }

    public async Task DisposeAsync()
    {
        if (!_nodeAStopped) await _nodeA.DisposeAsync();
        await _nodeB.DisposeAsync();
    }

    [Fact]
    public async Task AWorkerParkedOnNodeB_GetsAJobSubmittedOnNodeA_Within100Ms()
    {
        var clientOnA = await _nodeA.NewAccountAsync();
        var model = ApiClient.Unique();
        var (workerOnA, _) = await clientOnA.NewWorkerAsync("w", model);
        var workerOnB = _nodeB.WithKey(workerOnA.Key);
        var registryB = _nodeB.Get<WaiterRegistry>();

        var latencies = new List<double>();
        for (var round = 0; round < 5; round++)
        {
            var poll = workerOnB.PollAsync($"models[]={model}");
            await Eventually.TrueAsync(() => registryB.ParkedCount == 1, "the poll parks on node B");
            var id = await clientOnA.SubmitAsync(new { model, prompt = $"round {round}" });
            var submitted = Stopwatch.GetTimestamp();
            var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
            latencies.Add(Stopwatch.GetElapsedTime(submitted).TotalMilliseconds);
            Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        }
        latencies.Sort();
        Assert.True(latencies[2] < 100, $"median cross-node dispatch was {latencies[2]:0.0} ms ({string.Join(", ", latencies.Select(l => l.ToString("0.0")))})");
    }

    [Fact]
    public async Task AJobAPollHereCanTake_WakesNoOtherNode_ButTheNextJobReachesTheOtherNode()
    {
        var client = await _nodeA.NewAccountAsync();
        var model = ApiClient.Unique();
        var (workerA, _) = await client.NewWorkerAsync("a", model);
        var (workerB, _) = await client.NewWorkerAsync("b", model);
        var registryA = _nodeA.Get<WaiterRegistry>();
        var registryB = _nodeB.Get<WaiterRegistry>();

        var pollA = workerA.PollAsync($"models[]={model}");
        var pollB = _nodeB.WithKey(workerB.Key).PollAsync($"models[]={model}");
        await Eventually.TrueAsync(() => registryA.ParkedCount == 1 && registryB.ParkedCount == 1, "one poll parks on each node");
        using var forwarded = new CounterReader(_nodeA, "coordinator.dispatch.wakes_forwarded");

        // The first job wakes the poll on node A, where it was submitted, and node A tells no other node.
        var first = await client.SubmitAsync(new { model, prompt = "first" });
        Assert.Equal(first, (await pollA.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(0, forwarded.Total);
        Assert.False(pollB.IsCompleted);

        // The second finds no poll on node A, so node B hears of it.
        var second = await client.SubmitAsync(new { model, prompt = "second" });
        Assert.Equal(second, (await pollB.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(1, forwarded.Total);
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
            var registryB = _nodeB.Get<WaiterRegistry>();
            var siloB = _nodeB.Get<ClusterWakes>().SiloId;
            // A family whose dispatcher lives on C, not on B where the poll parks: a call from C activates it (placement
            // may prefer the calling silo, or not; the loop takes the first family that landed elsewhere than B).
            string model = "", dispatcherSilo = "";
            for (var attempt = 0; attempt < 20; attempt++)
            {
                model = ApiClient.Unique();
                var family = Coordinator.Grains.ModelNames.FamilyOf(model);
                await nodeC.Get<IGrainFactory>().GetGrain<IDispatcherGrain>(family).WorkAvailableAsync("test", [WakeKeys.ForModel(model)], 0);
                var activations = await management.GetDetailedGrainStatistics();
                var dispatcher = activations.Where(a => a.GrainId.Key.ToString() == family).ToList();
                Assert.True(dispatcher.Count == 1, $"looked for {family} among {string.Join(", ", activations.Select(a => $"{a.GrainType}/{a.GrainId}"))}");
                dispatcherSilo = dispatcher[0].SiloAddress.ToString();
                if (dispatcherSilo != siloB) break;
            }
            var (registered, _) = await clientOnA.NewWorkerAsync("w", model);
            var workerOnB = _nodeB.WithKey(registered.Key);
            var poll = workerOnB.PollAsync($"models[]={model}");
            await Eventually.TrueAsync(() => registryB.ParkedCount == 1, "the poll parks on node B");
            Assert.NotEqual(siloB, dispatcherSilo);

            var owner = dispatcherSilo == _nodeA.Get<ClusterWakes>().SiloId ? _nodeA : nodeC;
            var submitter = owner == _nodeA ? nodeC : _nodeA;
            if (owner == nodeC) nodeCStopped = true;
            else _nodeAStopped = true;
            await owner.DisposeAsync();

            // The dispatcher comes back elsewhere with no subscriptions; B hears of the death, subscribes again, and its
            // poll is served by a job submitted on the silo that is left.
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
        await Eventually.TrueAsync(() => node.Get<WaiterRegistry>().ParkedCount == 1, "the poll parks");
        var stopping = node.DisposeAsync().AsTask();
        var response = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(System.Net.HttpStatusCode.NoContent, response.StatusCode);
        await stopping;
    }

    /// <summary>Sums one counter of one host's meters (another host in this process has instruments of the same name).</summary>
    private sealed class CounterReader : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _total;

        public CounterReader(GridHost host, string name)
        {
            var scope = host.Get<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Name == name && ReferenceEquals(instrument.Meter.Scope, scope)) listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _total, value));
            _listener.Start();
        }

        public long Total => Interlocked.Read(ref _total);

        public void Dispose() => _listener.Dispose();
    }
}
