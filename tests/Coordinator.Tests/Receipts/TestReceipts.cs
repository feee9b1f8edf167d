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
    /// Writes a signed receipt's row as the issuer does (the hash computed by PostgreSQL as SHA-256 of the body, the
    /// receipt queued for the ledger and named by its job), in <paramref name="transaction"/> when given.
    /// </summary>
    public static async Task InsertRowAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction? transaction, IssuedReceipt receipt, decimal price, string keyId)
    {
        await using var insert = new Npgsql.NpgsqlCommand("""
            WITH issued AS (
                INSERT INTO receipts (receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at)
                VALUES (@receiptId, @jobId, @accountId, @workerId, @client, @provider, @price, @keyId, @body, sha256(convert_to(@body, 'UTF8')), now())
                RETURNING seq, hash, job_id),
            queued AS (INSERT INTO unsealed_receipts (seq, hash) SELECT seq, hash FROM issued)
            UPDATE jobs SET receipt_seq = issued.seq FROM issued WHERE jobs.id = issued.job_id;
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
