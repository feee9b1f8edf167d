using Coordinator.Grains.Dispatch;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Dispatch;

/// <summary>The spec's matching rule and ordering. A fake clock ends a poll that must find nothing.</summary>
public class MatchingTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private GridHost Host => fixture.Host;

    /// <summary>Polls; if the poll parks, moves the clock past the window so it answers 204.</summary>
    private async Task<long?> PollOnceAsync(ApiClient worker, string query)
    {
        var poll = worker.PollAsync(query);
        var parked = Task.Run(async () =>
        {
            await Eventually.TrueAsync(async () => poll.IsCompleted || await ParkedEverywhereAsync(query), "the poll parks");
        });
        await Task.WhenAny(poll, parked);
        if (!poll.IsCompleted)
        {
            await parked;
            fixture.Clock.Advance(TimeSpan.FromSeconds(31));
        }
        return (await poll)?.GetProperty("job_id").GetInt64();
    }

    /// <summary>Whether a poll with this query is parked on every dispatcher it waits on (a model's family, a family, catch-all).</summary>
    private async Task<bool> ParkedEverywhereAsync(string query)
    {
        var dispatchers = query.Split('&').Select(part => part.Split('=')).Select(pair => pair[0] switch
        {
            "models[]" => Coordinator.Grains.ModelNames.FamilyOf(pair[1]),
            "families[]" => pair[1],
            "catch_all" when pair[1] == "true" => DispatchKeys.Any,
            _ => null,
        }).OfType<string>().Distinct().ToList();
        foreach (var key in dispatchers)
        {
            if ((await Host.Grains.GetGrain<IDispatcherGrain>(key).StatsAsync()).ParkedPolls == 0) return false;
        }
        return true;
    }

    [Fact]
    public async Task ExactJob_GoesOnlyToAWorkerWithThatModel()
    {
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique("f");
        var id = await client.SubmitAsync(new { model = $"{family}:8b", model_match = "exact", prompt = "p" });
        var (worker, _) = await client.NewWorkerAsync("w", $"{family}:8b");

        Assert.Null(await PollOnceAsync(worker, $"families[]={family}"));
        Assert.Null(await PollOnceAsync(worker, $"models[]={family}:70b"));
        Assert.Equal(id, await PollOnceAsync(worker, $"models[]={family}:8b"));
    }

    [Fact]
    public async Task FamilyJob_GoesToTheFamilyOrTheExactModel()
    {
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique("f");
        var big = await client.SubmitAsync(new { model = $"{family}:70b", model_match = "family", prompt = "p" });
        var (worker, _) = await client.NewWorkerAsync("w", $"{family}:8b");

        Assert.Null(await PollOnceAsync(worker, $"models[]={family}:8b"));
        Assert.Equal(big, await PollOnceAsync(worker, $"models[]={family}:8b&families[]={family}"));

        var small = await client.SubmitAsync(new { model = $"{family}:8b", model_match = "family", prompt = "p" });
        Assert.Equal(small, await PollOnceAsync(worker, $"models[]={family}:8b"));
    }

    [Fact]
    public async Task AnyJob_GoesOnlyToCatchAllWorkers()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var id = await client.SubmitAsync(new { model_match = "any", prompt = "p" });
        var (worker, _) = await client.NewWorkerAsync("w", model);

        Assert.Null(await PollOnceAsync(worker, $"models[]={model}"));
        Assert.Null(await PollOnceAsync(worker, $"models[]={model}&catch_all=false"));
        Assert.Equal(id, await PollOnceAsync(worker, $"models[]={model}&catch_all=true"));
    }

    [Fact]
    public async Task HighestPriorityFirst_ThenOldest()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var low = await client.SubmitAsync(new { model, prompt = "p", priority = 0 });
        var high = await client.SubmitAsync(new { model, prompt = "p", priority = 10 });
        var mid1 = await client.SubmitAsync(new { model, prompt = "p", priority = 5 });
        var mid2 = await client.SubmitAsync(new { model, prompt = "p", priority = 5 });
        var mid3 = await client.SubmitAsync(new { model, prompt = "p", priority = 5 });
        var (worker, _) = await client.NewWorkerAsync("w", model);

        var order = new List<long?>();
        for (var i = 0; i < 5; i++) order.Add(await PollOnceAsync(worker, $"models[]={model}"));
        Assert.Equal([high, mid1, mid2, mid3, low], order);
    }

    [Fact]
    public async Task PriorityAcrossModelsAndFamilies_IsOneOrder()
    {
        var client = await Host.NewAccountAsync();
        var (a, family) = (ApiClient.Unique(), ApiClient.Unique("f"));
        var first = await client.SubmitAsync(new { model = a, model_match = "exact", prompt = "p", priority = 1 });
        var second = await client.SubmitAsync(new { model = $"{family}:1b", model_match = "family", prompt = "p", priority = 3 });
        var third = await client.SubmitAsync(new { model_match = "any", prompt = "p", priority = 2 });
        var (worker, _) = await client.NewWorkerAsync("w", a);

        var query = $"models[]={a}&families[]={family}&catch_all=true";
        Assert.Equal(second, await PollOnceAsync(worker, query));
        Assert.Equal(third, await PollOnceAsync(worker, query));
        Assert.Equal(first, await PollOnceAsync(worker, query));
    }

    [Fact]
    public async Task RaisingPriority_MovesAJobAhead()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var older = await client.SubmitAsync(new { model, prompt = "p" });
        var newer = await client.SubmitAsync(new { model, prompt = "p" });
        await client.PatchAsync($"jobs/{newer}/priority", new { priority = 1 });
        var (worker, _) = await client.NewWorkerAsync("w", model);
        Assert.Equal(newer, await PollOnceAsync(worker, $"models[]={model}"));
        Assert.Equal(older, await PollOnceAsync(worker, $"models[]={model}"));
    }

    [Fact]
    public async Task EmptyPoll_Answers204WhenTheWindowEnds()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("w", model);
        // A poll that declares nothing waits for what the worker registered.
        var response = worker.GetAsync("worker/jobs/next");
        await Host.ParkedAsync(model);
        fixture.Clock.Advance(TimeSpan.FromSeconds(29));
        Assert.False(response.IsCompleted);
        fixture.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await response).StatusCode);
    }
}
