using System.Net;
using Coordinator.Silo.Operator;
using Coordinator.Tests.Accounting;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

/// <summary>Payout settlement over HTTP: the CLI's semantics (one statement per batch, a paid batch is never paid again).</summary>
public class PayoutsOverHttpTests(OperatorHostFixture fixture) : IClassFixture<OperatorHostFixture>
{
    private async Task<long> PendingBatchAsync(params int[] outputTokens)
    {
        var client = await fixture.Host.NewAccountAsync();
        var worker = await CreditsTests.WorkerWithResultsAsync(client, outputTokens);
        var batch = await ApiClient.ExpectAsync(await worker.PostAsync("worker/payout_request"), HttpStatusCode.Created);
        return batch.GetProperty("batch_id").GetInt64();
    }

    [Fact]
    public async Task ListsPending_SettlesOne_AndASecondSettleChangesNothing()
    {
        var id = await PendingBatchAsync(2500);
        using var list = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, "payouts", fixture.OperatorKey);
        var pending = await ApiClient.ExpectAsync(list, HttpStatusCode.OK);
        var listed = pending.GetProperty("pending").EnumerateArray().Single(b => b.GetProperty("id").GetInt64() == id);
        Assert.Equal(2.5m, listed.GetProperty("amount_credits").GetDecimal());
        Assert.Equal("pending", listed.GetProperty("status").GetString());

        using var settle = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, $"payouts/{id}/settle", fixture.OperatorKey);
        var settled = await ApiClient.ExpectAsync(settle, HttpStatusCode.OK);
        Assert.Equal("paid", settled.GetProperty("status").GetString());
        Assert.True(settled.TryGetProperty("paid_at", out var paidAt) && paidAt.ValueKind == System.Text.Json.JsonValueKind.String);

        using var again = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, $"payouts/{id}/settle", fixture.OperatorKey);
        var refused = await ApiClient.ExpectAsync(again, HttpStatusCode.NotFound);
        Assert.Contains("not pending (it is paid)", refused.GetProperty("message").GetString(), StringComparison.Ordinal);

        // The CLI sees the same row: it is no longer pending.
        using var output = new StringWriter();
        Assert.Equal(1, await PayoutCommands.RunAsync(fixture.Host.Services, ["mark-paid", id.ToString(System.Globalization.CultureInfo.InvariantCulture)], output));

        using var unknown = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, "payouts/999999999/settle", fixture.OperatorKey);
        Assert.Contains("there is no payout batch", (await ApiClient.ExpectAsync(unknown, HttpStatusCode.NotFound)).GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SettleAll_PaysEveryPendingBatchOnce_EvenWhenCalledTwiceAtOnce()
    {
        var first = await PendingBatchAsync(1000);
        var second = await PendingBatchAsync(3000);

        var responses = await Task.WhenAll(
            OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, "payouts/settle_all", fixture.OperatorKey),
            OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, "payouts/settle_all", fixture.OperatorKey));
        var settledIds = new List<long>();
        foreach (var response in responses)
        {
            var body = await ApiClient.ExpectAsync(response, HttpStatusCode.OK);
            settledIds.AddRange(body.GetProperty("settled").EnumerateArray().Select(b => b.GetProperty("id").GetInt64()));
            Assert.Equal(body.GetProperty("settled").GetArrayLength(), body.GetProperty("count").GetInt32());
            response.Dispose();
        }
        Assert.Equal(1, settledIds.Count(i => i == first));
        Assert.Equal(1, settledIds.Count(i => i == second));
        Assert.Equal(settledIds.Count, settledIds.Distinct().Count());

        using var list = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, "payouts", fixture.OperatorKey);
        Assert.Equal(0, (await ApiClient.ExpectAsync(list, HttpStatusCode.OK)).GetProperty("pending").GetArrayLength());
    }

    [Fact]
    public async Task TheCli_MarksAllPaid_Too()
    {
        var id = await PendingBatchAsync(4000);
        using var output = new StringWriter();
        Assert.Equal(0, await PayoutCommands.RunAsync(fixture.Host.Services, ["mark-paid", "--all"], output));
        Assert.Contains($"Batch {id} marked paid.", output.ToString(), StringComparison.Ordinal);
        using var again = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Post, $"payouts/{id}/settle", fixture.OperatorKey);
        await ApiClient.ExpectAsync(again, HttpStatusCode.NotFound);
    }
}
