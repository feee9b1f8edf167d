using System.Net;
using System.Text.Json;
using Coordinator.Grains.Ledger;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Ledger;

/// <summary>The explorer on the AITBC port: blocks, transactions, receipts and stats, their shapes, limits and errors.</summary>
public sealed class ExplorerApiTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private async Task<List<string>> InsertReceiptsAsync(int count)
    {
        await using var connection = await Host.OpenConnectionAsync();
        var ids = new List<string>();
        for (var i = 0; i < count; i++) ids.Add(await LedgerDatabase.InsertReceiptAsync(connection, null, price: 0.05m));
        return ids;
    }

    private Task<IReadOnlyList<LedgerBlock>> SealAsync() => Host.Grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).SealNowAsync();

    private async Task<JsonElement> GetJsonAsync(string path)
    {
        using var response = await Host.Aitbc.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<long> ScalarAsync(string sql)
    {
        await using var connection = await Host.OpenConnectionAsync();
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Blocks_AreNewestFirst_ChainedAndLimited()
    {
        // What other tests of the class left unsealed goes first, in a block of its own.
        await SealAsync();
        await InsertReceiptsAsync(2);
        await SealAsync();
        await InsertReceiptsAsync(3);
        var sealedNow = await SealAsync();
        var tip = Assert.Single(sealedNow);

        var blocks = await GetJsonAsync("explorer/blocks?limit=2");
        Assert.Equal(2, blocks.GetArrayLength());
        var (newest, before) = (blocks[0], blocks[1]);
        Assert.Equal(tip.Height, newest.GetProperty("height").GetInt64());
        Assert.Equal(tip.Height - 1, before.GetProperty("height").GetInt64());
        Assert.Equal(3, newest.GetProperty("transactions").GetInt32());
        Assert.Equal(2, before.GetProperty("transactions").GetInt32());
        Assert.Equal(Convert.ToHexStringLower(tip.Hash), newest.GetProperty("hash").GetString());
        Assert.Equal(before.GetProperty("hash").GetString(), newest.GetProperty("prev_hash").GetString());
        Assert.Equal(Convert.ToHexStringLower(tip.MerkleRoot), newest.GetProperty("merkle_root").GetString());
        Assert.Equal(tip.SealedAt, newest.GetProperty("timestamp").GetDateTimeOffset());

        var byDefault = await GetJsonAsync("explorer/blocks");
        Assert.Equal(Math.Min(10, tip.Height), byDefault.GetArrayLength());
    }

    [Fact]
    public async Task Transactions_AreReceiptsAsPayments_UnsealedOnesWithoutABlock()
    {
        var sealedIds = await InsertReceiptsAsync(2);
        var block = (await SealAsync())[^1];
        var unsealedId = (await InsertReceiptsAsync(1))[0];

        var transactions = await GetJsonAsync("explorer/transactions?limit=3");
        Assert.Equal([unsealedId, sealedIds[1], sealedIds[0]], transactions.EnumerateArray().Select(t => t.GetProperty("tx_id").GetString()));
        var unsealed = transactions[0];
        Assert.Equal(JsonValueKind.Null, unsealed.GetProperty("block_height").ValueKind);
        Assert.Equal(block.Height, transactions[1].GetProperty("block_height").GetInt64());
        Assert.StartsWith("acct-", unsealed.GetProperty("from").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("miner-", unsealed.GetProperty("to").GetString(), StringComparison.Ordinal);
        Assert.Equal(0.05m, unsealed.GetProperty("amount").GetDecimal());
        Assert.Equal("gpu_seconds", unsealed.GetProperty("unit_type").GetString());
        Assert.Equal(2.5m, unsealed.GetProperty("units").GetDecimal());
        Assert.Equal(64, unsealed.GetProperty("hash").GetString()!.Length);
        Assert.True(unsealed.GetProperty("timestamp").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-5));

        Assert.Equal(Math.Min(20, await ScalarAsync("SELECT count(*) FROM receipts")), (await GetJsonAsync("explorer/transactions")).GetArrayLength());
    }

    [Fact]
    public async Task Receipts_AreTheStoredBodiesVerbatim_NewestFirst()
    {
        var ids = await InsertReceiptsAsync(3);
        await using var connection = await Host.OpenConnectionAsync();
        var bodies = new List<string>();
        foreach (var id in ids.AsEnumerable().Reverse())
        {
            await using var command = new Npgsql.NpgsqlCommand("SELECT body FROM receipts WHERE receipt_id = @id", connection);
            command.Parameters.AddWithValue("id", id);
            bodies.Add((string)(await command.ExecuteScalarAsync())!);
        }

        using var response = await Host.Aitbc.GetAsync("explorer/receipts?limit=3");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("[" + string.Join(',', bodies) + "]", await response.Content.ReadAsStringAsync());
        Assert.DoesNotContain("prompt", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stats_CountJobsMinersReceiptsAndTheTip()
    {
        await InsertReceiptsAsync(2);
        await SealAsync();
        await InsertReceiptsAsync(1);
        await using (var connection = await Host.OpenConnectionAsync())
        await using (var online = new Npgsql.NpgsqlCommand("""
            INSERT INTO workers (account_id, name, last_seen_at, created_at, online) SELECT id, 'online miner', now(), now(), true FROM accounts LIMIT 1
            """, connection))
        {
            await online.ExecuteNonQueryAsync();
        }

        var stats = await GetJsonAsync("explorer/stats");
        Assert.Equal(await ScalarAsync("SELECT count(*) FROM jobs"), stats.GetProperty("total_jobs").GetInt64());
        Assert.Equal(await ScalarAsync("SELECT count(*) FROM workers WHERE online"), stats.GetProperty("active_miners").GetInt64());
        Assert.True(stats.GetProperty("active_miners").GetInt64() >= 1);
        Assert.Equal(await ScalarAsync("SELECT count(*) FROM receipts"), stats.GetProperty("total_receipts").GetInt64());
        Assert.Equal(await ScalarAsync("SELECT max(height) FROM ledger_blocks"), stats.GetProperty("block_height").GetInt64());
    }

    [Fact]
    public async Task Stats_OfAnEmptyLedger_AreZero()
    {
        await using var empty = await GridHost.StartAsync();
        using var response = await empty.Aitbc.GetAsync("explorer/stats");
        using var stats = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("""{"total_jobs":0,"active_miners":0,"total_receipts":0,"block_height":0}""", stats.RootElement.GetRawText());
        using var blocks = await empty.Aitbc.GetAsync("explorer/blocks");
        Assert.Equal("[]", await blocks.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("explorer/blocks?limit=0")]
    [InlineData("explorer/blocks?limit=101")]
    [InlineData("explorer/blocks?limit=-1")]
    [InlineData("explorer/blocks?limit=ten")]
    [InlineData("explorer/blocks?limit=")]
    [InlineData("explorer/transactions?limit=1.5")]
    [InlineData("explorer/transactions?limit=1&limit=2")]
    [InlineData("explorer/receipts?limit=99999999999")]
    public async Task ABadLimit_IsA400InTheAitbcShape(string path)
    {
        using var response = await Host.Aitbc.GetAsync(path);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("invalid_request", error.RootElement.GetProperty("error_code").GetString());
        Assert.Equal("limit must be one integer from 1 to 100", error.RootElement.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task TheExplorer_IsPublic_AndOnlyOnTheAitbcPort()
    {
        // Every request in this class goes without an X-Api-Key; the Grid API's port does not serve the explorer.
        using var onMain = await Host.Http.GetAsync(new Uri(Host.BaseAddress, "/explorer/stats"));
        Assert.Equal(HttpStatusCode.NotFound, onMain.StatusCode);
    }
}
