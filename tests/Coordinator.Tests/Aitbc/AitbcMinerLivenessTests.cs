using System.Net;
using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Aitbc;

/// <summary>
/// AITBC's miner protocol has no heartbeat: a miner that claimed a job is silent until it completes it. The offline sweep
/// leaves it and its running job alone (the job's timeout bounds it), and an idle silent miner goes offline as any worker.
/// </summary>
public sealed class AitbcMinerLivenessTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task AMinerRunningAJob_StaysOnlinePastTheOfflineWindow_AndItsJobRuns()
    {
        var client = await Host.NewAccountAsync("liveness-client");
        var owner = await Host.NewAccountAsync("liveness-miner");
        var model = ApiClient.Unique() + ":1b";
        var key = (await ApiClient.ExpectAsync(await owner.PostAsync("keys", new { name = "miner" }), HttpStatusCode.Created)).GetProperty("key").GetString()!;
        var miner = Host.AitbcWithKey(key);
        var minerId = ApiClient.Unique("slow-");
        var idleId = ApiClient.Unique("idle-");
        await miner.RegisterMinerAsync(minerId, model);
        var idleKey = (await ApiClient.ExpectAsync(await owner.PostAsync("keys", new { name = "idle" }), HttpStatusCode.Created)).GetProperty("key").GetString()!;
        await Host.AitbcWithKey(idleKey).RegisterMinerAsync(idleId, model);

        var slow = (await Host.AitbcWithKey(client.Key).SubmitAsync(new { prompt = "a long one", model })).GetProperty("job_id").GetString();
        await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{slow}/claim", new { miner_id = minerId }), HttpStatusCode.OK);

        // Two minutes of silence: past the 90 s offline window, within the job's 600 s timeout.
        fixture.Clock.Advance(TimeSpan.FromSeconds(120));
        await Host.Get<GridDuties>().RunOnceAsync();
        // The running miner is still online and its job still running; the idle miner, silent as long, went offline.
        await using var connection = await Host.OpenConnectionAsync();
        await using var online = new Npgsql.NpgsqlCommand("SELECT miner_id, online FROM workers WHERE miner_id IN (@a, @b)", connection);
        online.Parameters.AddWithValue("a", minerId);
        online.Parameters.AddWithValue("b", idleId);
        var states = new Dictionary<string, bool>();
        await using (var reader = await online.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync()) states[reader.GetString(0)] = reader.GetBoolean(1);
        }
        Assert.True(states[minerId]);
        Assert.False(states[idleId]);

        var receipt = await ApiClient.ExpectAsync(await miner.PostAsync($"v1/jobs/{slow}/complete", new { miner_id = minerId, result = "done at last" }), HttpStatusCode.OK);
        Assert.Equal(slow, receipt.GetProperty("job_id").GetString());
        // Its receipt counts the two minutes.
        Assert.True(receipt.GetProperty("units").GetDouble() >= 120, receipt.GetRawText());
    }
}
