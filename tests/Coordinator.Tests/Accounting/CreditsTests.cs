using System.Net;
using Coordinator.Silo.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Accounting;

public class CreditsTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    internal static async Task<ApiClient> WorkerWithResultsAsync(ApiClient client, params int[] outputTokens)
    {
        var model = ApiClient.Unique();
        var (worker, _) = await client.NewWorkerAsync("earner-" + model, model);
        foreach (var tokens in outputTokens)
        {
            var id = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
            Assert.Equal(id, (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
            await worker.PatchAsync($"worker/jobs/{id}/start");
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "o", output_tokens = tokens, duration_ms = 7 }), HttpStatusCode.OK);
        }
        return worker;
    }

    [Fact]
    public async Task EachResult_EarnsOutputTokensOverAThousand_NewestFirst()
    {
        var client = await Host.NewAccountAsync();
        var worker = await WorkerWithResultsAsync(client, 1234, 1, 77777);

        var credits = await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Equal(79.012m, credits.GetProperty("balance").GetDecimal());
        Assert.Equal(79.012m, credits.GetProperty("total_earned").GetDecimal());
        Assert.Equal(0.01m, credits.GetProperty("credit_value_usd").GetDecimal());
        var history = credits.GetProperty("history").EnumerateArray().ToList();
        Assert.Equal([77.777m, 0.001m, 1.234m], history.Select(h => h.GetProperty("credits_earned").GetDecimal()));
        Assert.Equal([77777, 1, 1234], history.Select(h => h.GetProperty("output_tokens").GetInt32()));
        Assert.All(history, h => Assert.False(h.GetProperty("paid_out").GetBoolean()));
        Assert.All(history, h => Assert.Equal(7, h.GetProperty("duration_ms").GetInt32()));
    }

    [Fact]
    public async Task Payout_PaysTheWholeBalanceOnce()
    {
        var client = await Host.NewAccountAsync();
        var worker = await WorkerWithResultsAsync(client, 2500, 500);

        var batch = await ApiClient.ExpectAsync(await worker.PostAsync("worker/payout_request"), HttpStatusCode.Created);
        Assert.Equal(3.0m, batch.GetProperty("amount_credits").GetDecimal());
        Assert.Equal(0.03m, batch.GetProperty("amount_usd").GetDecimal());
        Assert.Equal("pending", batch.GetProperty("status").GetString());

        var after = await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Equal(0m, after.GetProperty("balance").GetDecimal());
        Assert.Equal(3.0m, after.GetProperty("total_earned").GetDecimal());
        Assert.All(after.GetProperty("history").EnumerateArray(), h => Assert.True(h.GetProperty("paid_out").GetBoolean()));

        var again = await ApiClient.ExpectAsync(await worker.PostAsync("worker/payout_request"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("insufficient_balance", again.GetProperty("error").GetString());

        using var output = new StringWriter();
        Assert.Equal(0, await PayoutCommands.RunAsync(Host.Services, ["list"], output));
        Assert.Contains($"{batch.GetProperty("batch_id").GetInt64(),8}", output.ToString());
        Assert.Equal(0, await PayoutCommands.RunAsync(Host.Services, ["mark-paid", batch.GetProperty("batch_id").GetInt64().ToString()], output));
        Assert.Equal(1, await PayoutCommands.RunAsync(Host.Services, ["mark-paid", batch.GetProperty("batch_id").GetInt64().ToString()], output));
        Assert.Equal(2, await PayoutCommands.RunAsync(Host.Services, ["refund"], output));
    }

    [Fact]
    public async Task ConcurrentPayoutRequests_NeverPayAnEntryTwice()
    {
        var client = await Host.NewAccountAsync();
        var worker = await WorkerWithResultsAsync(client, 1000, 2000, 3000, 4000);

        var responses = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => worker.PostAsync("worker/payout_request")));
        var created = responses.Where(r => r.StatusCode == HttpStatusCode.Created).ToList();
        Assert.Single(created);
        Assert.All(responses.Except(created), r => Assert.Equal(HttpStatusCode.UnprocessableEntity, r.StatusCode));
        var batch = await ApiClient.ExpectAsync(created[0], HttpStatusCode.Created);
        Assert.Equal(10.0m, batch.GetProperty("amount_credits").GetDecimal());
    }

    [Fact]
    public async Task CreditsNeedAWorkerKey()
    {
        var client = await Host.NewAccountAsync();
        await ApiClient.ExpectAsync(await client.GetAsync("worker/credits"), HttpStatusCode.Unauthorized);
        await ApiClient.ExpectAsync(await client.PostAsync("worker/payout_request"), HttpStatusCode.Unauthorized);
    }
}

public sealed class CreditRoundingTests : IAsyncLifetime
{
    private GridHost _host = null!;

    public async Task InitializeAsync() => _host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
    {
        ["Accounting:CreditsPerThousandOutputTokens"] = "0.33333",
        ["Accounting:CreditValueUsd"] = "0.05",
        ["Accounting:MinimumPayoutCredits"] = "1",
    });

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task CreditsUseTheConfiguredRate_RoundedTo4Places_AndPayoutsRespectTheMinimum()
    {
        var client = await _host.NewAccountAsync();
        var worker = await CreditsTests.WorkerWithResultsAsync(client, 1000, 2);
        var credits = await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK);
        Assert.Equal([0.0007m, 0.3333m], credits.GetProperty("history").EnumerateArray().Select(h => h.GetProperty("credits_earned").GetDecimal()));
        Assert.Equal(0.05m, credits.GetProperty("credit_value_usd").GetDecimal());

        // 0.334 credits is not above the configured minimum of 1.
        await ApiClient.ExpectAsync(await worker.PostAsync("worker/payout_request"), HttpStatusCode.UnprocessableEntity);
        Assert.Equal(0.334m, (await ApiClient.ExpectAsync(await worker.GetAsync("worker/credits"), HttpStatusCode.OK)).GetProperty("balance").GetDecimal());
    }
}
