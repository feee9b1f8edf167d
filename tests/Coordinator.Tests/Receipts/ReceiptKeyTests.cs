using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Coordinator.Grains.Receipts;
using Coordinator.Silo.Operator;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Tests.Receipts;

/// <summary>One key for the whole grid, rotation that keeps old receipts verifiable, and no completion without its receipt.</summary>
public sealed class ReceiptKeyTests
{
    private static JsonObject Receipt(string id) => new() { ["receipt_id"] = id, ["job_id"] = "1", ["units"] = 1.5m, ["price"] = 0.03m };

    [Fact]
    public async Task TwoNodesOnOneDatabase_RaceToMakeTheKey_AndSignWithTheSameOne()
    {
        await using var first = await GridHost.StartAsync();
        await using var second = await GridHost.StartAsync(first.ConnectionString);

        var signed = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            ((i % 2 == 0 ? first : second).Get<IReceiptSigner>().SignAsync(Receipt($"r{i}"))).AsTask()));

        Assert.Single(signed.Select(s => s.KeyId).Distinct());
        await using var connection = await first.OpenConnectionAsync();
        Assert.Equal(1, await connection.QuerySingleAsync<int>("SELECT count(*) FROM receipt_signing_keys"));
        // Each node verifies what the other signed.
        foreach (var receipt in signed)
        {
            Assert.Null(await first.Get<ReceiptVerifier>().VerifyAsync(receipt.Json));
            Assert.Null(await second.Get<ReceiptVerifier>().VerifyAsync(receipt.Json));
        }
    }

    [Fact]
    public async Task Rotation_KeepsOldReceiptsVerifiable_AndNewReceiptsUseTheNewKey()
    {
        var time = new ManualTimeProvider();
        await using var host = await GridHost.StartAsync(time: time);
        var signer = host.Get<IReceiptSigner>();
        var before = await signer.SignAsync(Receipt("before"));

        using var output = new StringWriter();
        Assert.Equal(0, await ReceiptKeyCommands.RunAsync(host.Services, ["rotate"], output));
        var newKey = (await host.Get<ReceiptSigningKeys>().ListAsync()).Single(k => k.Active).KeyId;
        Assert.NotEqual(before.KeyId, newKey);
        Assert.Contains(newKey, output.ToString(), StringComparison.Ordinal);

        // This node follows the rotation at its next check of the active key, at most 30 s later.
        var cached = await signer.SignAsync(Receipt("cached"));
        Assert.Equal(before.KeyId, cached.KeyId);
        time.Advance(ReceiptSigner.RefreshInterval);
        var after = await signer.SignAsync(Receipt("after"));
        Assert.Equal(newKey, after.KeyId);

        // A completed job's receipt uses the new key too.
        var client = await host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "x", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.OK);
        await using var connection = await host.OpenConnectionAsync();
        var job = await connection.QuerySingleAsync<(string KeyId, string Body)>("SELECT key_id, body FROM receipts WHERE job_id = @id", new { id });
        Assert.Equal(newKey, job.KeyId);

        string[] receipts = [before.Json, cached.Json, after.Json, job.Body];
        var verifier = host.Get<ReceiptVerifier>();
        foreach (var receipt in receipts) Assert.Null(await verifier.VerifyAsync(receipt));
        // Python trusts exactly the published keys, the retired one included.
        using var published = JsonDocument.Parse(await (await host.Aitbc.GetAsync("v1/signing-keys")).Content.ReadAsStringAsync());
        var keys = published.RootElement.EnumerateArray().ToList();
        Assert.Equal([false, true], keys.Select(k => k.GetProperty("active").GetBoolean()));
        Assert.Equal(JsonValueKind.String, keys[0].GetProperty("retired_at").ValueKind);
        Assert.Equal(Enumerable.Repeat("ok", 4), await Python.VerifyAsync("[" + string.Join(',', receipts) + "]", [.. keys.Select(k => k.GetProperty("key_id").GetString()!)]));

        using var list = new StringWriter();
        Assert.Equal(0, await ReceiptKeyCommands.RunAsync(host.Services, ["list"], list));
        Assert.Matches($"{before.KeyId} .* retired", list.ToString());
        Assert.Matches($"{newKey} .* active", list.ToString());
    }

    [Fact]
    public async Task ReceiptsDisabled_IssuesNone()
    {
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Receipts:Enabled"] = "false" });
        var client = await host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "x", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.OK);

        Assert.Equal("completed", (await client.GetJobAsync(id)).GetProperty("status").GetString());
        await using var connection = await host.OpenConnectionAsync();
        Assert.Equal(0, await connection.QuerySingleAsync<int>("SELECT count(*) FROM receipts"));
        Assert.Equal(0, await connection.QuerySingleAsync<int>("SELECT count(*) FROM receipt_signing_keys"));
    }

    [Fact]
    public async Task ACompletionWhoseReceiptFails_IsRolledBack()
    {
        var signer = new FailingSigner();
        await using var host = await GridHost.StartAsync(services: services => services.AddSingleton<IReceiptSigner>(signer));
        var client = await host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync(start: true);

        using var response = await worker.PostAsync($"worker/jobs/{id}/result", new { output = "lost", output_tokens = 5, duration_ms = 1 });
        Assert.True((int)response.StatusCode >= 500, $"answered {response.StatusCode}");
        Assert.True(signer.Calls > 0);

        var job = await client.GetJobAsync(id);
        Assert.Equal("running", job.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, job.GetProperty("output").ValueKind);
        await using var connection = await host.OpenConnectionAsync();
        Assert.Equal((0, 0), await connection.QuerySingleAsync<(int, int)>(
            "SELECT (SELECT count(*)::int FROM receipts), (SELECT count(*)::int FROM jobs WHERE id = @id AND (completed_at IS NOT NULL OR credits IS NOT NULL))", new { id }));
    }

    /// <summary>A signer that cannot sign (its key unreadable, say).</summary>
    private sealed class FailingSigner : IReceiptSigner
    {
        private int _calls;

        public int Calls => _calls;

        public ValueTask<SignedReceipt> SignAsync(JsonObject receipt, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _calls);
            throw new InvalidOperationException("the signing key cannot be read");
        }
    }
}
