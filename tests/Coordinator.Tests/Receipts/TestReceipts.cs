using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Coordinator.Grains.Receipts;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Receipts;

/// <summary>A receipt issued for a job: its row's strings and its body as stored.</summary>
public sealed record IssuedReceipt(string ReceiptId, long JobId, long ClientAccountId, long WorkerId, string Client, string Provider, string Body);

/// <summary>
/// Receipts for the read tests, for jobs that really ran: a client account submits through the Grid API and a worker
/// of another account claims, starts and completes the job, and the completion issues the receipt.
/// <see cref="IssueAsync"/> adds a further receipt for a job, signed by the node's own signer, for the history a job
/// completed once cannot have.
/// </summary>
public static class TestReceipts
{
    /// <summary>Price per GPU second, the AITBC default.</summary>
    private const decimal UnitPrice = 0.02m;

    /// <summary>
    /// Submits a job as <paramref name="client"/>, runs it on a new worker of <paramref name="providerAccount"/> and
    /// answers its receipt. With <paramref name="minerId"/> the worker is known to AITBC by that name, which becomes the
    /// receipt's provider.
    /// </summary>
    public static async Task<IssuedReceipt> CompleteWithReceiptAsync(GridHost host, ApiClient client, ApiClient providerAccount, string? minerId = null)
    {
        var model = ApiClient.Unique("receipts");
        var jobId = await client.SubmitAsync(new { model, model_match = "exact", prompt = "Count to three." });
        var (worker, workerId) = await providerAccount.NewWorkerAsync("w-" + model, model);
        if (minerId is not null) await ExecuteAsync(host, "UPDATE workers SET miner_id = @minerId WHERE id = @workerId", ("minerId", minerId), ("workerId", workerId));
        var assignment = await worker.PollAsync($"models[]={model}");
        Assert.Equal(jobId, assignment!.Value.GetProperty("job_id").GetInt64());
        await ApiClient.ExpectAsync(await worker.PatchAsync($"worker/jobs/{jobId}/start"), HttpStatusCode.OK);
        await ApiClient.ExpectAsync(await worker.PostAsync($"worker/jobs/{jobId}/result", new
        {
            output = "one, two, three", input_tokens = 4, output_tokens = 5, duration_ms = 1500, model_used = model,
        }), HttpStatusCode.OK);
        return await IssuedAsync(host, jobId);
    }

    /// <summary>The receipt the job's completion issued.</summary>
    public static async Task<IssuedReceipt> IssuedAsync(GridHost host, long jobId)
    {
        await using var connection = await host.OpenConnectionAsync();
        await using var read = new Npgsql.NpgsqlCommand(
            "SELECT receipt_id, account_id, worker_id, client, provider, body FROM receipts WHERE job_id = @jobId ORDER BY seq DESC LIMIT 1", connection);
        read.Parameters.AddWithValue("jobId", jobId);
        await using var row = await read.ExecuteReaderAsync();
        Assert.True(await row.ReadAsync(), $"job {jobId} has no receipt");
        return new IssuedReceipt(row.GetString(0), jobId, row.GetInt64(1), row.GetInt64(2), row.GetString(3), row.GetString(4), row.GetString(5));
    }

    /// <summary>
    /// Writes a further receipt for the completed job with the fields a completion gives it (client
    /// <c>account-&lt;id&gt;</c>, provider the worker's miner id or <c>worker-&lt;id&gt;</c>, <c>gpu_seconds</c> from the
    /// worker's reported duration, times in Unix seconds), signed by the node's signer.
    /// </summary>
    public static async Task<IssuedReceipt> IssueAsync(GridHost host, long jobId)
    {
        await using var connection = await host.OpenConnectionAsync();
        await using var read = new Npgsql.NpgsqlCommand("""
            SELECT j.account_id, j.worker_id, COALESCE(w.miner_id, 'worker-' || w.id), j.model_used, j.duration_ms,
                   floor(extract(epoch FROM j.started_at))::bigint, floor(extract(epoch FROM j.completed_at))::bigint
            FROM jobs j JOIN workers w ON w.id = j.worker_id
            WHERE j.id = @jobId AND j.status = 'completed'
            """, connection);
        read.Parameters.AddWithValue("jobId", jobId);
        await using var job = await read.ExecuteReaderAsync();
        Assert.True(await job.ReadAsync(), $"job {jobId} is not completed");
        var accountId = job.GetInt64(0);
        var workerId = job.GetInt64(1);
        var provider = job.GetString(2);
        var model = job.GetString(3);
        var units = job.GetInt32(4) / 1000m;
        var startedAt = job.GetInt64(5);
        var completedAt = job.GetInt64(6);
        await job.CloseAsync();

        var receiptId = "rcpt_" + Guid.NewGuid().ToString("N");
        var client = "account-" + accountId.ToString(CultureInfo.InvariantCulture);
        var price = units * UnitPrice;
        var receipt = new JsonObject
        {
            ["receipt_id"] = receiptId,
            ["job_id"] = jobId.ToString(CultureInfo.InvariantCulture),
            ["provider"] = provider,
            ["client"] = client,
            // As doubles, so they are written as Python writes floats (1.5, 0.03) rather than with a decimal's scale.
            ["units"] = (double)units,
            ["unit_type"] = "gpu_seconds",
            ["price"] = (double)price,
            ["model"] = model,
            ["started_at"] = startedAt,
            ["completed_at"] = completedAt,
        };
        var signed = await host.Get<IReceiptSigner>().SignAsync(receipt);
        var body = signed.Json;

        await InsertRowAsync(connection, null, new IssuedReceipt(receiptId, jobId, accountId, workerId, client, provider, body), price, signed.KeyId);
        return new IssuedReceipt(receiptId, jobId, accountId, workerId, client, provider, body);
    }

    /// <summary>
    /// Writes a signed receipt's row as the issuer does (the hash computed by PostgreSQL as SHA-256 of the body, and the
    /// receipt queued for the ledger), in <paramref name="transaction"/> when given.
    /// </summary>
    public static async Task InsertRowAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction? transaction, IssuedReceipt receipt, decimal price, string keyId)
    {
        await using var insert = new Npgsql.NpgsqlCommand("""
            WITH issued AS (
                INSERT INTO receipts (receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at)
                VALUES (@receiptId, @jobId, @accountId, @workerId, @client, @provider, @price, @keyId, @body, sha256(convert_to(@body, 'UTF8')), now())
                RETURNING seq, hash)
            INSERT INTO unsealed_receipts (seq, hash) SELECT seq, hash FROM issued;
            """, connection, transaction);
        insert.Parameters.AddWithValue("keyId", keyId);
        insert.Parameters.AddWithValue("receiptId", receipt.ReceiptId);
        insert.Parameters.AddWithValue("jobId", receipt.JobId);
        insert.Parameters.AddWithValue("accountId", receipt.ClientAccountId);
        insert.Parameters.AddWithValue("workerId", receipt.WorkerId);
        insert.Parameters.AddWithValue("client", receipt.Client);
        insert.Parameters.AddWithValue("provider", receipt.Provider);
        insert.Parameters.AddWithValue("price", price);
        insert.Parameters.AddWithValue("body", receipt.Body);
        await insert.ExecuteNonQueryAsync();
    }

    /// <summary>Changes a stored receipt's body in place, as someone with write access to the table could.</summary>
    public static Task TamperAsync(GridHost host, string receiptId, string from, string to) =>
        ExecuteAsync(host, "UPDATE receipts SET body = replace(body, @from, @to) WHERE receipt_id = @receiptId AND strpos(body, @from) > 0",
            ("receiptId", receiptId), ("from", from), ("to", to));

    private static async Task ExecuteAsync(GridHost host, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = await host.OpenConnectionAsync();
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value);
        Assert.Equal(1, await command.ExecuteNonQueryAsync());
    }
}
