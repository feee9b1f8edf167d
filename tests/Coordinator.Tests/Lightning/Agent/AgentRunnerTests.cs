using Coordinator.Grains.Jobs;
using Coordinator.Grains.Lightning.Agent;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>The grid runner: one grid job per idempotency key, under the agent's account, waited for without polling, and given up when no worker takes it.</summary>
public sealed class AgentRunnerTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    private IAgentRunner Runner => Host.Get<IAgentRunner>();

    [Fact]
    public async Task Submit_WithTheSameKey_AnswersTheSameGridJob_UnderTheAgentsAccountWithoutLimits()
    {
        var model = ApiClient.Unique("run") + ":1b";
        var key = "test:" + Guid.NewGuid().ToString("N");

        var ids = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Runner.SubmitAsync(model, "the prompt", key)));
        var other = await Runner.SubmitAsync(model, "the prompt", key + ":other");

        Assert.Single(ids.Distinct());
        Assert.NotEqual(ids[0], other);
        await using var connection = await Host.OpenConnectionAsync();
        var row = await connection.QuerySingleAsync<(long AccountId, string Plan, string Status, string Tag, string ModelMatch, int TimeoutSeconds)>("""
            SELECT j.account_id, a.plan, j.status, j.tag, j.model_match, j.timeout_seconds
            FROM jobs j JOIN accounts a ON a.id = j.account_id WHERE j.id = @id
            """, new { id = ids[0] });
        Assert.Equal(await Host.Get<AgentAccount>().IdAsync(), row.AccountId);
        Assert.Equal("lightning-agent", row.Plan);
        Assert.Equal((JobStatus.Pending, AgentRunner.Tag, ModelMatch.Exact, new AgentOptions().JobTimeoutSeconds), (row.Status, row.Tag, row.ModelMatch, row.TimeoutSeconds));
        Assert.Null(await connection.QuerySingleAsync<int?>("SELECT daily_requests FROM plans WHERE id = 'lightning-agent'"));
        Assert.Equal(2, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM jobs WHERE model = @model", new { model }));
    }

    [Fact]
    public async Task Submit_TheSameKeyWithAnotherPrompt_IsRefused()
    {
        var model = ApiClient.Unique("run") + ":1b";
        var key = "test:" + Guid.NewGuid().ToString("N");
        await Runner.SubmitAsync(model, "first", key);

        await Assert.ThrowsAsync<IdempotencyKeyReusedException>(() => Runner.SubmitAsync(model, "second", key));
    }

    [Fact]
    public async Task Wait_AnswersTheJob_OnceAWorkerCompletesIt()
    {
        var model = ApiClient.Unique("run") + ":1b";
        var worker = await AgentWorkers.NewAsync(Host, model);
        var id = await Runner.SubmitAsync(model, "say hi", "test:" + Guid.NewGuid().ToString("N"));
        var waiting = Runner.WaitAsync(id);

        var taken = await AgentWorkers.TakeAsync(worker, model);
        Assert.Equal((id, "say hi"), (taken.Id, taken.Prompt));
        Assert.False(waiting.IsCompleted);
        await AgentWorkers.CompleteAsync(worker, id, "hi", inputTokens: 7, outputTokens: 2);

        var ended = await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((JobStatus.Completed, "hi", 7, 2), (ended.Status, ended.Output, ended.InputTokens, ended.OutputTokens));
        Assert.Equal(JobStatus.Completed, (await Runner.GetAsync(id)).Status);
    }

    [Fact]
    public async Task Wait_AnswersAFailedJob_WithTheWorkersError()
    {
        var model = ApiClient.Unique("run") + ":1b";
        var worker = await AgentWorkers.NewAsync(Host, model);
        var id = await Runner.SubmitAsync(model, "p", "test:" + Guid.NewGuid().ToString("N"));
        var waiting = Runner.WaitAsync(id);

        await AgentWorkers.TakeAsync(worker, model);
        await AgentWorkers.FailAsync(worker, id, "out of memory");

        var ended = await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((JobStatus.Failed, "out of memory"), (ended.Status, ended.Error));
    }

    [Fact]
    public async Task Wait_CancelsAJobNoWorkerTakes_AtTheTimeout()
    {
        var model = ApiClient.Unique("run") + ":1b";
        var id = await Runner.SubmitAsync(model, "p", "test:" + Guid.NewGuid().ToString("N"));
        var waiting = Runner.WaitAsync(id);

        fixture.Clock.Advance(TimeSpan.FromSeconds(new AgentOptions().JobTimeoutSeconds - 1));
        Assert.False(waiting.IsCompleted);
        Assert.Equal(JobStatus.Pending, (await Runner.GetAsync(id)).Status);
        fixture.Clock.Advance(TimeSpan.FromSeconds(1));

        var ended = await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(JobStatus.Cancelled, ended.Status);
    }

    [Fact]
    public async Task Get_CancelsAJobNoWorkerTook_OncePastTheTimeout_AndLeavesATakenOneRunning()
    {
        var model = ApiClient.Unique("run") + ":1b";
        var worker = await AgentWorkers.NewAsync(Host, model);
        var untaken = await Runner.SubmitAsync(ApiClient.Unique("run") + ":1b", "p", "test:" + Guid.NewGuid().ToString("N"));
        var taken = await Runner.SubmitAsync(model, "p", "test:" + Guid.NewGuid().ToString("N"));
        await AgentWorkers.TakeAsync(worker, model);

        fixture.Clock.Advance(TimeSpan.FromSeconds(new AgentOptions().JobTimeoutSeconds));

        Assert.Equal(JobStatus.Cancelled, (await Runner.GetAsync(untaken)).Status);
        Assert.Equal(JobStatus.Running, (await Runner.GetAsync(taken)).Status);
        await AgentWorkers.CompleteAsync(worker, taken, "done");
    }
}
