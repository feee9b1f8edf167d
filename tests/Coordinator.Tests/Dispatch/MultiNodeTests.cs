using System.Diagnostics;
using Coordinator.Grains.Dispatch;
using Coordinator.Tests.Infrastructure;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>Two nodes on one database: wake-ups cross over real LISTEN/NOTIFY.</summary>
public sealed class MultiNodeTests : IAsyncLifetime
{
    private GridHost _nodeA = null!;
    private GridHost _nodeB = null!;

    public async Task InitializeAsync()
    {
        _nodeA = await GridHost.StartAsync();
        _nodeB = await GridHost.StartAsync(_nodeA.ConnectionString);
        await Eventually.TrueAsync(() => _nodeA.Get<NodeNotifications>().Listening && _nodeB.Get<NodeNotifications>().Listening, "both nodes listen");
    }

    public async Task DisposeAsync()
    {
        await _nodeA.DisposeAsync();
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
        var notifications = _nodeA.Get<NodeNotifications>();
        var sentBefore = notifications.NotificationsSent;

        // The first job wakes the poll on node A, where it was submitted, and node A tells no other node.
        var first = await client.SubmitAsync(new { model, prompt = "first" });
        Assert.Equal(first, (await pollA.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(sentBefore, notifications.NotificationsSent);
        Assert.False(pollB.IsCompleted);

        // The second finds no poll on node A, so node B hears of it.
        var second = await client.SubmitAsync(new { model, prompt = "second" });
        Assert.Equal(second, (await pollB.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(sentBefore + 1, notifications.NotificationsSent);
    }

    [Fact]
    public async Task AfterTheListenerLosesItsConnection_ItReconnectsAndWakesEveryPoll()
    {
        var clientOnA = await _nodeA.NewAccountAsync();
        var model = ApiClient.Unique();
        var (workerOnA, _) = await clientOnA.NewWorkerAsync("w", model);
        var workerOnB = _nodeB.WithKey(workerOnA.Key);
        var registryB = _nodeB.Get<WaiterRegistry>();
        var notificationsB = _nodeB.Get<NodeNotifications>();

        var poll = workerOnB.PollAsync($"models[]={model}");
        await Eventually.TrueAsync(() => registryB.ParkedCount == 1, "the poll parks on node B");

        // Kill node B's listening connection, as a database restart would, and submit while it is away.
        await using (var admin = new NpgsqlConnection(_nodeA.ConnectionString))
        {
            await admin.OpenAsync();
            await using var kill = new NpgsqlCommand(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'", admin);
            Assert.True((long)(await kill.ExecuteScalarAsync())! >= 2);
        }
        await Eventually.TrueAsync(() => !notificationsB.Listening, "node B notices");
        var id = await clientOnA.SubmitAsync(new { model, prompt = "sent while B was deaf" });

        var assignment = await poll.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(id, assignment!.Value.GetProperty("job_id").GetInt64());
        await Eventually.TrueAsync(() => notificationsB.Listening, "node B listens again");

        // And cross-node wake-ups work again afterwards.
        var next = workerOnB.PollAsync($"models[]={model}");
        await Eventually.TrueAsync(() => registryB.ParkedCount == 1, "the poll parks on node B");
        var id2 = await clientOnA.SubmitAsync(new { model, prompt = "after" });
        Assert.Equal(id2, (await next.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
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
        var node = await GridHost.StartAsync(_nodeA.ConnectionString);
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
}
