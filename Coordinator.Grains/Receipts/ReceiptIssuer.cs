using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

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
/// Signs the receipts of jobs about to complete; the completion statement writes them with the completions (one statement,
/// so a completion commits with its receipt or not at all). After the commit, <see cref="Announce"/> tells the
/// <see cref="IReceiptsIssuedListener"/>.
/// </summary>
public sealed partial class ReceiptIssuer(IReceiptSigner signer, IReceiptsIssuedListener listener, IOptions<ReceiptOptions> options, ILogger<ReceiptIssuer> logger)
{
    private const string ReceiptIdAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";

    /// <summary>Whether completions issue receipts (<see cref="ReceiptOptions.Enabled"/>).</summary>
    public bool Enabled => options.Value.Enabled;

    /// <summary>
    /// Signs a receipt for each job as completed at <paramref name="completedAt"/>, in their order; the caller writes them
    /// in the same statement as the completions (<see cref="ReceiptRows"/>), so that a completion commits with its receipt
    /// or not at all.
    /// </summary>
    public async Task<ReceiptRows> SignAsync(IReadOnlyList<CompletedJob> jobs, DateTimeOffset completedAt, CancellationToken cancellationToken = default)
    {
        var settings = options.Value;
        var rows = new ReceiptRows(jobs.Count);
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
            rows.Add(receiptId, client, price, await signer.SignAsync(receipt, cancellationToken));
        }
        return rows;
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

/// <summary>
/// Signed receipts as columns, in the order of the jobs they were signed for: what the completion statement writes into
/// <c>receipts</c> besides what the job row says (its job, account and worker).
/// </summary>
public sealed class ReceiptRows(int capacity)
{
    private readonly List<string> _receiptIds = new(capacity);
    private readonly List<string> _clients = new(capacity);
    private readonly List<decimal> _prices = new(capacity);
    private readonly List<string> _keyIds = new(capacity);
    private readonly List<string> _bodies = new(capacity);

    public int Count => _receiptIds.Count;

    public string[] ReceiptIds => [.. _receiptIds];
    public string[] Clients => [.. _clients];
    public decimal[] Prices => [.. _prices];
    public string[] KeyIds => [.. _keyIds];

    /// <summary>The signed receipts' canonical JSON, ASCII only: its UTF-8 bytes are its characters, and its SHA-256 is the ledger's leaf.</summary>
    public string[] Bodies => [.. _bodies];

    internal void Add(string receiptId, string client, decimal price, SignedReceipt signed)
    {
        _receiptIds.Add(receiptId);
        _clients.Add(client);
        _prices.Add(price);
        _keyIds.Add(signed.KeyId);
        _bodies.Add(signed.Json);
    }
}
