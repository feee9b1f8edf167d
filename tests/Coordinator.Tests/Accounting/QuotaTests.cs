using System.Net;
using Coordinator.Grains.Duties;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Accounting;

/// <summary>Daily quotas hold jobs and release them at the UTC day boundary, driven by a fake clock.</summary>
public class QuotaTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    /// <summary>One poll; if it parks (nothing dispatchable), the clock ends its window and the answer is null.</summary>
    private async Task<long?> PollOnceAsync(ApiClient worker, string model)
    {
        var poll = worker.PollAsync($"models[]={model}");
        await Eventually.TrueAsync(async () => poll.IsCompleted || (await Host.DispatcherAsync(model)).ParkedPolls > 0, "the poll answers or parks");
        if (!poll.IsCompleted)
        {
            fixture.Clock.Advance(TimeSpan.FromSeconds(31));
        }
        return (await poll)?.GetProperty("job_id").GetInt64();
    }

    private static async Task CompleteAsync(ApiClient worker, long id, int outputTokens = 1, int inputTokens = 0)
    {
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output = "o", input_tokens = inputTokens, output_tokens = outputTokens, duration_ms = 5 }), HttpStatusCode.OK);
    }

    [Fact]
    public async Task AFreeAccountWith150Jobs_Runs100Today_AndTheOther50AfterMidnight_InOrder()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var ids = new List<long>();
        for (var i = 0; i < 150; i++) ids.Add(await client.SubmitAsync(new { model, prompt = $"job {i}" }));
        var (worker, _) = await client.NewWorkerAsync("w", model);

        var ranToday = new List<long>();
        while (await PollOnceAsync(worker, model) is { } id)
        {
            ranToday.Add(id);
            await CompleteAsync(worker, id);
        }
        Assert.Equal(ids.Take(100), ranToday);
        var held = await client.GetJobAsync(ids[100]);
        Assert.Equal("pending", held.GetProperty("status").GetString());
        Assert.True(held.GetProperty("held").GetBoolean());

        // Accepted while over quota: 201, pending, held.
        var late = await client.GetJobAsync(await client.SubmitAsync(new { model, prompt = "late" }));
        Assert.True(late.GetProperty("held").GetBoolean());
        ids.Add(late.GetProperty("job_id").GetInt64());

        var now = fixture.Clock.GetUtcNow();
        fixture.Clock.Advance(now.UtcDateTime.Date.AddDays(1) - now.UtcDateTime + TimeSpan.FromSeconds(1));
        var report = await Host.Get<GridDuties>().RunOnceAsync();
        Assert.True(report.Released >= 51, $"released {report.Released}"); // other tests of this class hold jobs too

        var ranTomorrow = new List<long>();
        while (ranTomorrow.Count < 51 && await PollOnceAsync(worker, model) is { } id)
        {
            ranTomorrow.Add(id);
            await CompleteAsync(worker, id);
        }
        Assert.Equal(ids.Skip(100), ranTomorrow);
    }

    [Fact]
    public async Task ReachingTheTokenLimit_HoldsTheAccountsOtherJobs()
    {
        var client = await Host.NewAccountOnPlanAsync(null, 1000);
        var model = ApiClient.Unique();
        var first = await client.SubmitAsync(new { model, prompt = "big" });
        var second = await client.SubmitAsync(new { model, prompt = "next" });
        var (worker, _) = await client.NewWorkerAsync("w", model);

        Assert.Equal(first, await PollOnceAsync(worker, model));
        Assert.False((await client.GetJobAsync(second)).GetProperty("held").GetBoolean());
        await CompleteAsync(worker, first, outputTokens: 900, inputTokens: 100);

        Assert.True((await client.GetJobAsync(second)).GetProperty("held").GetBoolean());
        Assert.Null(await PollOnceAsync(worker, model));
    }

    [Fact]
    public async Task AnotherAccountsQuota_DoesNotHoldMine()
    {
        var capped = await Host.NewAccountOnPlanAsync(1, null);
        var free = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var cappedFirst = await capped.SubmitAsync(new { model, prompt = "a" });
        var cappedSecond = await capped.SubmitAsync(new { model, prompt = "b" });
        var mine = await free.SubmitAsync(new { model, prompt = "c" });
        var (worker, _) = await free.NewWorkerAsync("w", model);

        Assert.Equal(cappedFirst, await PollOnceAsync(worker, model));
        Assert.Equal(mine, await PollOnceAsync(worker, model));
        Assert.True((await capped.GetJobAsync(cappedSecond)).GetProperty("held").GetBoolean());
    }
}
