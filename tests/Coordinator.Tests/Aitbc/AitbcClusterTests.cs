using System.Net;
using Coordinator.Grains.Ledger;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Aitbc;

/// <summary>The AITBC API on two silos of one cluster: each step of a job's life may reach either silo.</summary>
public sealed class AitbcClusterTests : IAsyncLifetime
{
    private GridHost _a = null!;
    private GridHost _b = null!;

    public async Task InitializeAsync() => (_a, _b) = await TwoNodes.StartAsync();

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
    }

    [Fact]
    public async Task AJob_SubmittedClaimedAndCompletedAcrossSilos_HasOneVerifyingReceipt_SealedIntoTheOneChain()
    {
        var client = await _a.NewAccountAsync("cluster-client");
        var owner = await _a.NewAccountAsync("cluster-miner");
        var model = ApiClient.Unique() + ":1b";
        var minerKey = (await ApiClient.ExpectAsync(await owner.PostAsync("keys", new { name = "miner" }), HttpStatusCode.Created)).GetProperty("key").GetString()!;
        var minerId = ApiClient.Unique("cluster-");

        // Registered on B, offered and claimed on A, completed on B; submitted on A, read on B.
        await _b.AitbcWithKey(minerKey).RegisterMinerAsync(minerId, model);
        var id = (await _a.AitbcWithKey(client.Key).SubmitAsync(new { prompt = "across silos", model })).GetProperty("job_id").GetString();
        var offered = await _a.AitbcWithKey(minerKey).AvailableAsync(minerId);
        Assert.Equal(id, offered!.Value.GetProperty("job_id").GetString());
        await ApiClient.ExpectAsync(await _a.AitbcWithKey(minerKey).PostAsync($"v1/jobs/{id}/claim", new { miner_id = minerId }), HttpStatusCode.OK);
        Assert.Equal("running", (await ApiClient.ExpectAsync(await _b.AitbcWithKey(client.Key).GetAsync($"v1/jobs/{id}"), HttpStatusCode.OK)).GetProperty("status").GetString());
        var receipt = await ApiClient.ExpectAsync(await _b.AitbcWithKey(minerKey).PostAsync($"v1/jobs/{id}/complete", new { miner_id = minerId, result = "done" }), HttpStatusCode.OK);

        // Both silos sign with the grid's one key: the receipt verifies on either.
        Assert.Null(await _a.Get<Coordinator.Grains.Receipts.IReceiptVerifier>().VerifyAsync(receipt.GetRawText()));
        var read = await ApiClient.ExpectAsync(await _a.AitbcWithKey(client.Key).GetAsync($"v1/jobs/{id}/receipts"), HttpStatusCode.OK);
        Assert.Equal(receipt.GetProperty("receipt_id").GetString(), Assert.Single(read.EnumerateArray()).GetProperty("receipt_id").GetString());

        // Sealed from either silo, into one chain that verifies.
        await _a.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).SealNowAsync();
        await _b.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).SealNowAsync();
        var transactions = await ApiClient.ExpectAsync(await _b.Aitbc.GetAsync("explorer/transactions"), HttpStatusCode.OK);
        var sealedIn = transactions.EnumerateArray().Single(t => t.GetProperty("tx_id").GetString() == receipt.GetProperty("receipt_id").GetString());
        Assert.True(sealedIn.GetProperty("block_height").GetInt64() >= 1);
        using var output = new StringWriter();
        Assert.True(await Coordinator.Silo.Operator.LedgerCommands.RunAsync(_b.Services, ["verify"], output) == 0, output.ToString());
    }
}
