using System.Net;
using Coordinator.Tests.Infrastructure;
using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;

namespace GridWorker.Tests;

public class ReconnectTests
{
    [Fact]
    public async Task CoordinatorDownAtStart_RegistrationIsRetriedUntilItAnswers()
    {
        await using var host = await GridHost.StartAsync();
        var model = ApiClient.Unique("st") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var account = await host.NewAccountOnPlanAsync(null, null);
        // A port that refuses connections until the test puts the node behind it.
        var closed = new TcpProxy(new IPEndPoint(IPAddress.Loopback, host.BaseAddress.Port));
        closed.Start();
        closed.Cut();
        var settings = AgentRun.SettingsFor(new Uri($"http://127.0.0.1:{closed.Port}"), await account.NewKeyAsync(), ollama.Info());
        await using var run = AgentRun.Start(settings);
        await Eventually.TrueAsync(() => run.Output.Lines.Count(l => l.Contains("register: ", StringComparison.Ordinal)) >= 2,
            "registration was retried");
        Assert.Equal(0, run.Agent.WorkerId);

        await using var open = new TcpProxy(new IPEndPoint(IPAddress.Loopback, host.BaseAddress.Port), closed.Port);
        open.Start();
        await Eventually.TrueAsync(() => run.Agent.WorkerId != 0, "the worker registered");
        var id = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal("completed", (await account.WaitForJobAsync(id, "completed", "failed")).GetProperty("status").GetString());
        await closed.DisposeAsync();
    }

    [Fact]
    public async Task CoordinatorRestart_WorkerBacksOffAndServesTheNextNode()
    {
        var database = await TestDatabase.CreateAsync();
        var first = await GridHost.StartAsync(database);
        var proxy = new TcpProxy(new IPEndPoint(IPAddress.Loopback, first.BaseAddress.Port));
        proxy.Start();
        var model = ApiClient.Unique("rc") + ":8b";
        await using var ollama = await FakeOllama.StartAsync(model);
        var account = await first.NewAccountOnPlanAsync(null, null);
        var settings = AgentRun.SettingsFor(new Uri($"http://127.0.0.1:{proxy.Port}"), await account.NewKeyAsync(), ollama.Info());
        await using var run = await AgentRun.StartRegisteredAsync(settings);

        var before = await account.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        await account.WaitForJobAsync(before, "completed");
        // Cut only once the agent has its answer; a result in flight would be retried instead of a poll.
        await Eventually.TrueAsync(() => run.Output.Lines.Any(l => l.Contains($"job {before} done", StringComparison.Ordinal)), "the result was acknowledged");

        // The node goes away: connections drop, then are refused.
        proxy.Cut();
        await first.DisposeAsync();
        await Eventually.TrueAsync(() => run.Output.Lines.Count(l => l.Contains("retrying in", StringComparison.Ordinal)) >= 2, "the worker backed off");

        // A new node on the same database, at the same address.
        await using var second = await GridHost.StartAsync(database);
        await using var restored = new TcpProxy(new IPEndPoint(IPAddress.Loopback, second.BaseAddress.Port), proxy.Port);
        restored.Start();
        var client = second.WithKey(account.Key);
        var after = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        Assert.Equal("completed", (await client.WaitForJobAsync(after, "completed", "failed")).GetProperty("status").GetString());
        Assert.True(run.Output.Lines.Any(l => l.Contains("the coordinator answers again", StringComparison.Ordinal)), run.Output.ToString());
        await proxy.DisposeAsync();
    }
}
