using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Receipts;

/// <summary>A job completed by the transaction in progress, with what its receipt says.</summary>
/// <param name="JobId">The job.</param>
/// <param name="AccountId">The job's account: the receipt's client.</param>
/// <param name="WorkerId">The worker that ran it: the receipt's provider.</param>
/// <param name="StartedAt">When the job started running (its claim if it never reported a start); UTC.</param>
/// <param name="Model">The model the worker reports it used, else the one the job asked for; null if neither.</param>
/// <param name="Provider">The worker as receipts name it: its AITBC miner_id, else <c>worker-&lt;id&gt;</c>.</param>
public sealed record CompletedJob(long JobId, long AccountId, long WorkerId, DateTime? StartedAt, string? Model, string Provider);

/// <summary>
/// Issues the signed receipts of jobs completed in a transaction, inside that transaction: one INSERT for the batch, so a
/// completion commits with its receipt or not at all. After the commit, <see cref="Announce"/> tells the
/// <see cref="IReceiptsIssuedListener"/>.
/// </summary>
public sealed partial class ReceiptIssuer(IReceiptSigner signer, IReceiptsIssuedListener listener, IOptions<ReceiptOptions> options, ILogger<ReceiptIssuer> logger)
{
    private const string ReceiptIdAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";

    /// <summary>Whether completions issue receipts (<see cref="ReceiptOptions.Enabled"/>).</summary>
    public bool Enabled => options.Value.Enabled;

    /// <summary>
    /// Signs a receipt for each job and inserts them all, in <paramref name="transaction"/>, as completed at
    /// <paramref name="completedAt"/>. Throws if signing or the insert fails: the caller's transaction must then roll back.
    /// </summary>
    public async Task<IReadOnlyList<IssuedReceipt>> IssueAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyList<CompletedJob> jobs,
        DateTimeOffset completedAt, CancellationToken cancellationToken = default)
    {
        if (jobs.Count == 0) return [];
        var settings = options.Value;
        var rows = new List<(string ReceiptId, CompletedJob Job, string Client, decimal Price, SignedReceipt Signed)>(jobs.Count);
        foreach (var job in jobs)
        {
            var receiptId = "rcpt_" + new string(RandomNumberGenerator.GetItems<char>(ReceiptIdAlphabet, 26));
            var startedAt = job.StartedAt is { } started ? new DateTimeOffset(DateTime.SpecifyKind(started, DateTimeKind.Utc)) : completedAt;
            var units = Math.Round(Math.Max(0, (decimal)(completedAt - startedAt).Ticks / TimeSpan.TicksPerSecond), 3, MidpointRounding.AwayFromZero);
            var price = Math.Round(units * settings.PricePerUnit, 6, MidpointRounding.AwayFromZero);
            var client = "account-" + job.AccountId.ToString(CultureInfo.InvariantCulture);
            var receipt = new JsonObject
            {
                ["receipt_id"] = receiptId,
                ["job_id"] = job.JobId.ToString(CultureInfo.InvariantCulture),
                ["provider"] = job.Provider,
                ["client"] = client,
                ["units"] = units,
                ["unit_type"] = settings.UnitType,
                ["price"] = price,
                ["started_at"] = startedAt.ToUnixTimeSeconds(),
                ["completed_at"] = completedAt.ToUnixTimeSeconds(),
            };
            if (job.Model is not null) receipt["model"] = job.Model;
            rows.Add((receiptId, job, client, price, await signer.SignAsync(receipt, cancellationToken)));
        }
        // The body is canonical JSON, ASCII only: its UTF-8 bytes are its characters.
        var inserted = await connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO receipts (receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body, hash, issued_at)
            SELECT r.receipt_id, r.job_id, r.account_id, r.worker_id, r.client, r.provider, r.price, r.key_id, r.body,
                   sha256(convert_to(r.body, 'UTF8')), @completedAt
            FROM unnest(@receiptIds::text[], @jobIds::bigint[], @accountIds::bigint[], @workerIds::bigint[], @clients::text[],
                        @providers::text[], @prices::numeric[], @keyIds::text[], @bodies::text[])
                 AS r(receipt_id, job_id, account_id, worker_id, client, provider, price, key_id, body)
            """,
            new
            {
                receiptIds = rows.Select(r => r.ReceiptId).ToArray(), jobIds = rows.Select(r => r.Job.JobId).ToArray(),
                accountIds = rows.Select(r => r.Job.AccountId).ToArray(), workerIds = rows.Select(r => r.Job.WorkerId).ToArray(),
                clients = rows.Select(r => r.Client).ToArray(), providers = rows.Select(r => r.Job.Provider).ToArray(),
                prices = rows.Select(r => r.Price).ToArray(), keyIds = rows.Select(r => r.Signed.KeyId).ToArray(),
                bodies = rows.Select(r => r.Signed.Json).ToArray(), completedAt,
            }, transaction, cancellationToken: cancellationToken));
        if (inserted != rows.Count) throw new InvalidOperationException($"{rows.Count} receipts to issue, {inserted} inserted");
        return rows.Select(r => new IssuedReceipt(r.ReceiptId, r.Job.JobId)).ToList();
    }

    /// <summary>Tells the listener of receipts whose transaction committed. Its failure is logged, never thrown: the completions stand.</summary>
    public void Announce(IReadOnlyList<IssuedReceipt> issued)
    {
        if (issued.Count == 0) return;
        try
        {
            listener.ReceiptsIssued(issued);
        }
        catch (Exception exception)
        {
            LogListenerFailed(exception, issued.Count);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The listener of issued receipts failed on {Count} receipt(s); they are issued and stay so")]
    private partial void LogListenerFailed(Exception exception, int count);
}
