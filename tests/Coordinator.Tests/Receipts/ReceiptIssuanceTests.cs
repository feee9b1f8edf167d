using System.Buffers.Text;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Coordinator.Grains.Receipts;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.AspNetCore.DataProtection;
using NSec.Cryptography;

namespace Coordinator.Tests.Receipts;

/// <summary>Every completed job gets one signed receipt, in its completion's transaction; the signing key is kept safe and published.</summary>
public sealed class ReceiptIssuanceTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    private sealed record ReceiptRow(string ReceiptId, long JobId, long AccountId, long WorkerId, string Client, string Provider, decimal Price,
        string KeyId, string Body, byte[] Hash, DateTime IssuedAt);

    private sealed record JobTimes(long AccountId, long WorkerId, DateTime StartedAt, DateTime CompletedAt, string? ModelUsed, string Status);

    [Fact]
    public async Task ACompletedJob_HasExactlyOneReceipt_ThatVerifiesInPythonAndCSharp_WithTheRightFields()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, model) = await client.SubmitAndClaimAsync(start: true);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
            new { output = "hi", input_tokens = 3, output_tokens = 2, duration_ms = 1200, model_used = model }), HttpStatusCode.OK);

        await using var connection = await Host.OpenConnectionAsync();
        var row = Assert.Single(await connection.QueryAsync<ReceiptRow>(
            "SELECT receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at FROM receipts WHERE job_id = @id", new { id }));
        var job = await connection.QuerySingleAsync<JobTimes>("SELECT account_id, worker_id, started_at, completed_at, model_used, status FROM jobs WHERE id = @id", new { id });
        var activeKey = await connection.QuerySingleAsync<string>("SELECT key_id FROM receipt_signing_keys WHERE retired_at IS NULL");

        Assert.Null(await Host.Get<ReceiptVerifier>().VerifyAsync(row.Body));
        Assert.Equal(["ok"], await Python.VerifyAsync($"[{row.Body}]", activeKey));

        using var body = JsonDocument.Parse(row.Body);
        var receipt = body.RootElement;
        Assert.Equal(["client", "completed_at", "job_id", "model", "price", "provider", "receipt_id", "signature", "started_at", "unit_type", "units"],
            receipt.EnumerateObject().Select(m => m.Name));
        Assert.Equal(row.ReceiptId, receipt.GetProperty("receipt_id").GetString());
        Assert.Matches("^rcpt_[0-9a-z]{26}$", row.ReceiptId);
        Assert.Equal(id.ToString(System.Globalization.CultureInfo.InvariantCulture), receipt.GetProperty("job_id").GetString());
        Assert.Equal($"worker-{job.WorkerId}", receipt.GetProperty("provider").GetString());
        Assert.Equal($"account-{job.AccountId}", receipt.GetProperty("client").GetString());
        Assert.Equal("gpu_seconds", receipt.GetProperty("unit_type").GetString());
        Assert.Equal(model, receipt.GetProperty("model").GetString());
        var units = receipt.GetProperty("units").GetDecimal();
        Assert.InRange(units, (decimal)(job.CompletedAt - job.StartedAt).TotalSeconds - 0.001m, (decimal)(job.CompletedAt - job.StartedAt).TotalSeconds + 0.001m);
        Assert.Equal(Math.Round(units * 0.02m, 6, MidpointRounding.AwayFromZero), receipt.GetProperty("price").GetDecimal());
        Assert.Equal(new DateTimeOffset(job.StartedAt, TimeSpan.Zero).ToUnixTimeSeconds(), receipt.GetProperty("started_at").GetInt64());
        Assert.Equal(new DateTimeOffset(job.CompletedAt, TimeSpan.Zero).ToUnixTimeSeconds(), receipt.GetProperty("completed_at").GetInt64());
        Assert.Equal(JsonValueKind.Number, receipt.GetProperty("completed_at").ValueKind);

        Assert.Equal((job.AccountId, job.WorkerId, $"account-{job.AccountId}", $"worker-{job.WorkerId}"), (row.AccountId, row.WorkerId, row.Client, row.Provider));
        Assert.Equal(receipt.GetProperty("price").GetDecimal(), row.Price);
        Assert.Equal(activeKey, row.KeyId);
        Assert.Equal(activeKey, receipt.GetProperty("signature").GetProperty("key_id").GetString());
        Assert.Equal(SHA256.HashData(Encoding.UTF8.GetBytes(row.Body)), row.Hash);
        Assert.Equal(job.CompletedAt, row.IssuedAt);
        // Queued for the ledger with it, or already sealed: exactly one of the two.
        Assert.Equal(1, await connection.QuerySingleAsync<int>("""
            SELECT count(*) FROM (SELECT seq FROM unsealed_receipts UNION ALL SELECT unnest(seqs) FROM ledger_blocks) ledger
            WHERE seq = (SELECT seq FROM receipts WHERE receipt_id = @receiptId)
            """, new { receiptId = row.ReceiptId }));

        // A refused second result issues nothing more.
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result", new { output = "again", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.UnprocessableEntity);
        Assert.Equal(1, await connection.QuerySingleAsync<int>("SELECT count(*) FROM receipts WHERE job_id = @id", new { id }));
    }

    [Fact]
    public async Task AWorkersLaterReceipts_AreSignedFromWhatTheSiloRemembers_AndStillSayWhatTheRowSays()
    {
        var client = await Host.NewAccountAsync();
        var (worker, first, model) = await client.SubmitAndClaimAsync(start: true);
        // The first is read: the silo learns the worker's name on receipts from it.
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{first}/result", new { output = "1", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.OK);
        // Receipts this node signed from what it remembered, read from its own instrument (other nodes in the process have theirs).
        var instrument = Host.Get<Coordinator.Grains.Telemetry.CoordinatorMetrics>().ReceiptFactsTaken;
        long signedFromMemory = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (published, l) =>
            {
                if (ReferenceEquals(published, instrument)) l.EnableMeasurementEvents(published);
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref signedFromMemory, value));
        listener.Start();

        // handOff: the worker's poll is parked first and the job handed to it at submission; else the poll claims it.
        async Task<long> RunAsync(string? modelUsed, bool handOff, Func<Task>? beforeResult = null)
        {
            var poll = handOff ? worker.PollAsync($"models[]={model}") : null;
            if (handOff) await Host.ParkedAsync(model);
            var id = await client.SubmitAsync(new Dictionary<string, object?> { ["model"] = model, ["model_match"] = "exact", ["prompt"] = "p" });
            Assert.Equal(id, (await (poll ?? worker.PollAsync($"models[]={model}")))!.Value.GetProperty("job_id").GetInt64());
            await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{id}/start"), HttpStatusCode.OK);
            if (beforeResult is not null) await beforeResult();
            await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{id}/result",
                new { output = "x", output_tokens = 1, duration_ms = 1, model_used = modelUsed }), HttpStatusCode.OK);
            return id;
        }

        await using var connection = await Host.OpenConnectionAsync();
        async Task AssertReceiptSaysTheRowAsync(long id, string provider)
        {
            var body = await connection.QuerySingleAsync<string>("SELECT body FROM receipts WHERE job_id = @id", new { id });
            var job = await connection.QuerySingleAsync<JobTimes>("SELECT account_id, worker_id, started_at, completed_at, model_used, status FROM jobs WHERE id = @id", new { id });
            using var receipt = JsonDocument.Parse(body);
            var root = receipt.RootElement;
            Assert.Equal((id.ToString(System.Globalization.CultureInfo.InvariantCulture), $"account-{job.AccountId}", provider),
                (root.GetProperty("job_id").GetString(), root.GetProperty("client").GetString(), root.GetProperty("provider").GetString()));
            Assert.Equal(new DateTimeOffset(job.StartedAt, TimeSpan.Zero).ToUnixTimeSeconds(), root.GetProperty("started_at").GetInt64());
            Assert.Equal(job.ModelUsed ?? model, root.GetProperty("model").GetString());
            Assert.Null(await Host.Get<ReceiptVerifier>().VerifyAsync(body));
        }

        // Claimed and started on this silo by a worker it knows: signed from memory, with what the row says.
        var taken = Interlocked.Read(ref signedFromMemory);
        var second = await RunAsync("reported-model", handOff: false);
        Assert.Equal(taken + 1, Interlocked.Read(ref signedFromMemory));
        var workerId = await connection.QuerySingleAsync<long>("SELECT worker_id FROM jobs WHERE id = @second", new { second });
        await AssertReceiptSaysTheRowAsync(second, $"worker-{workerId}");
        var handedOff = await RunAsync(null, handOff: true);
        Assert.Equal(taken + 2, Interlocked.Read(ref signedFromMemory));
        await AssertReceiptSaysTheRowAsync(handedOff, $"worker-{workerId}");

        // The worker is renamed between the claim and the result: what the silo remembers is stale, so the completion
        // with it does not apply, and the job is read and signed again: its receipt names the worker as the row does now.
        var renamed = ApiClient.Unique("miner-");
        var third = await RunAsync(null, handOff: false, () => connection.ExecuteAsync("UPDATE workers SET miner_id = @renamed WHERE id = @workerId", new { renamed, workerId }));
        Assert.Equal(taken + 3, Interlocked.Read(ref signedFromMemory));
        await AssertReceiptSaysTheRowAsync(third, renamed);
        Assert.Equal(1, await connection.QuerySingleAsync<int>("SELECT count(*) FROM receipts WHERE job_id = @third", new { third }));
    }

    [Fact]
    public async Task ConcurrentCompletions_EachGetTheirOwnReceipt_AndFailedJobsNone()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var jobs = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => client.SubmitAndClaimAsync(start: true)));
        await Task.WhenAll(jobs.Select(async j => await ApiClient.ExpectAsync(await j.Worker.PostAsync($"worker/jobs/{j.JobId}/result",
            new { output = "x", output_tokens = 1, duration_ms = 1 }), HttpStatusCode.OK)));
        var (failingWorker, failedId, _) = await client.SubmitAndClaimAsync(start: true);
        await ApiClient.ExpectAsync(await failingWorker.PostAsync($"worker/jobs/{failedId}/fail", new { error = "boom" }), HttpStatusCode.OK);

        await using var connection = await Host.OpenConnectionAsync();
        var ids = jobs.Select(j => j.JobId).Append(failedId).ToArray();
        var bodies = (await connection.QueryAsync<(long JobId, string Body)>("SELECT job_id, body FROM receipts WHERE job_id = ANY(@ids) ORDER BY job_id", new { ids })).AsList();
        Assert.Equal(jobs.Select(j => j.JobId).Order(), bodies.Select(b => b.JobId));
        var verifier = Host.Get<ReceiptVerifier>();
        foreach (var (_, body) in bodies) Assert.Null(await verifier.VerifyAsync(body));
        Assert.All(await Python.VerifyAsync("[" + string.Join(',', bodies.Select(b => b.Body)) + "]"), v => Assert.Equal("ok", v));
    }

    [Fact]
    public async Task ThePrivateKey_IsStoredOnlyProtected()
    {
        await Host.Get<ReceiptSigningKeys>().GetOrCreateActiveAsync();
        await using var connection = await Host.OpenConnectionAsync();
        var (publicKey, stored) = await connection.QuerySingleAsync<(byte[], string)>("SELECT public_key, private_key FROM receipt_signing_keys WHERE retired_at IS NULL");

        var seed = Host.Get<IDataProtectionProvider>().CreateProtector(ReceiptSigningKeys.ProtectorPurpose).Unprotect(Convert.FromBase64String(stored));
        using (var key = Key.Import(SignatureAlgorithm.Ed25519, seed, KeyBlobFormat.RawPrivateKey))
        {
            // What is stored is that key pair's private key...
            Assert.Equal(publicKey, key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
        }
        // ...but in no clear form.
        Assert.DoesNotContain(Convert.ToBase64String(seed), stored, StringComparison.Ordinal);
        Assert.DoesNotContain(Base64Url.EncodeToString(seed), stored, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToHexString(seed), stored, StringComparison.OrdinalIgnoreCase);
        Assert.True(Convert.FromBase64String(stored).AsSpan().IndexOf(seed) < 0);
        Assert.True(Encoding.UTF8.GetBytes(stored).AsSpan().IndexOf(seed) < 0);
    }

    [Fact]
    public async Task SigningKeys_ArePublishedOnTheAitbcPort()
    {
        var (activeId, _) = await Host.Get<ReceiptSigningKeys>().GetOrCreateActiveAsync();
        using var response = await Host.Aitbc.GetAsync("v1/signing-keys");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var keys = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var active = Assert.Single(keys.RootElement.EnumerateArray(), k => k.GetProperty("active").GetBoolean());
        Assert.Equal(activeId, active.GetProperty("key_id").GetString());
        Assert.Equal("Ed25519", active.GetProperty("alg").GetString());
        Assert.Equal(activeId, active.GetProperty("public_key").GetString());
        Assert.Equal(JsonValueKind.Null, active.GetProperty("retired_at").ValueKind);
        Assert.True(active.GetProperty("created_at").GetDateTimeOffset() <= DateTimeOffset.UtcNow);

        // It is the AITBC API's: not on the main port.
        using var onMain = await Host.Http.GetAsync(new Uri(Host.BaseAddress, "/v1/signing-keys"));
        Assert.Equal(HttpStatusCode.NotFound, onMain.StatusCode);
    }
}
