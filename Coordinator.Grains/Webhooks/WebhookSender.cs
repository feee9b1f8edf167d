using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Coordinator.Grains.Duties;
using Coordinator.Grains.Jobs;
using Dapper;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Webhooks;

/// <summary>Renders a job as the API shows it (<c>GET /jobs/{id}</c>); the webhook body is that same object.</summary>
public interface IJobRenderer
{
    string Render(JobRow job);
}

/// <summary>What one pass of the sender did.</summary>
public sealed record WebhookPass(int Delivered, int Retrying, int Failed);

/// <summary>
/// Sends due webhooks from the outbox. Any node can: due rows are claimed with <c>SKIP LOCKED</c> and leased by pushing
/// <c>next_attempt_at</c> forward, so a node that dies mid-send leaves them to be retried. Each request carries
/// <c>X-Vibe-Signature: sha256=&lt;hex HMAC-SHA256 of the raw body keyed with the submitting API key&gt;</c> and
/// <c>X-Vibe-Delivery</c> (the same id on every retry, for de-duplication).
/// </summary>
public sealed partial class WebhookSender(
    NpgsqlDataSource dataSource, JobStore jobs, IJobRenderer renderer, IHttpClientFactory httpClients,
    IDataProtectionProvider protection, TimeProvider time, IOptions<WebhookOptions> options, Telemetry.CoordinatorMetrics metrics, ILogger<WebhookSender> logger)
{
    public const string HttpClientName = "webhooks";
    public const string ProtectorPurpose = "Coordinator.Webhooks.SigningKey";
    private const int BatchSize = 20;

    private readonly IDataProtector _protector = protection.CreateProtector(ProtectorPurpose);

    /// <summary>Encrypts an API key for storage; only the sender ever decrypts it.</summary>
    public string ProtectKey(string apiKey) => _protector.Protect(apiKey);

    public static string Sign(string body, string apiKey) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(apiKey), Encoding.UTF8.GetBytes(body)));

    private sealed class Due
    {
        public long Id { get; init; }
        public long JobId { get; init; }
        public long AccountId { get; init; }
        public string Url { get; init; } = "";
        public string Event { get; init; } = "";
        public int Attempts { get; init; }
        public DateTime CreatedAt { get; init; }
        public string? KeyProtected { get; init; }
    }

    public async Task<WebhookPass> RunOnceAsync(CancellationToken cancellationToken = default)
    {
        var settings = options.Value;
        var now = time.GetUtcNow();
        List<Due> due;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            due = (await connection.QueryAsync<Due>(new CommandDefinition("""
                UPDATE webhook_deliveries d SET next_attempt_at = @leaseUntil
                FROM (
                    SELECT id FROM webhook_deliveries
                    WHERE status = 'pending' AND next_attempt_at <= @now
                    ORDER BY next_attempt_at
                    LIMIT @batch
                    FOR UPDATE SKIP LOCKED
                ) due
                WHERE d.id = due.id
                RETURNING d.id, d.job_id, d.account_id, d.url, d.event, d.attempts, d.created_at,
                    (SELECT k.key_protected FROM jobs j JOIN api_keys k ON k.id = j.submitted_by_key_id WHERE j.id = d.job_id) AS key_protected
                """, new { now, leaseUntil = now + settings.Timeout + TimeSpan.FromSeconds(30), batch = BatchSize },
                cancellationToken: cancellationToken))).AsList();
        }
        var outcomes = await Task.WhenAll(due.Select(d => SendAsync(d, cancellationToken)));
        return new WebhookPass(outcomes.Count(o => o == "delivered"), outcomes.Count(o => o == "pending"), outcomes.Count(o => o == "failed"));
    }

    private async Task<string> SendAsync(Due delivery, CancellationToken cancellationToken)
    {
        using var scope = logger.BeginScope(new Telemetry.JobLogScope(delivery.JobId));
        int? statusCode = null;
        string? error = null;
        try
        {
            var job = await jobs.GetAsync(delivery.AccountId, delivery.JobId, cancellationToken);
            if (job is null || delivery.KeyProtected is null) throw new InvalidOperationException("the job or its signing key is gone");
            var body = renderer.Render(job);
            using var request = new HttpRequestMessage(HttpMethod.Post, delivery.Url) { Content = new StringContent(body, Encoding.UTF8) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
            var signature = Sign(body, _protector.Unprotect(delivery.KeyProtected));
            request.Headers.Add("X-Vibe-Signature", signature);
            request.Headers.Add("X-LLMOnDemand-Signature", signature);
            request.Headers.Add("X-Vibe-Delivery", delivery.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            request.Headers.Add("X-Vibe-Event", "job." + delivery.Event);
            request.Headers.UserAgent.ParseAdd("Coordinator-Webhooks/1.0");

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(options.Value.Timeout);
            using var response = await httpClients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            statusCode = (int)response.StatusCode;
            if (response.IsSuccessStatusCode) return await RecordAsync(delivery, "delivered", statusCode, null, null);
            error = $"the target answered {statusCode}";
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            error = $"no answer within {options.Value.Timeout.TotalSeconds:0} s";
        }
        catch (Exception exception) when (exception is HttpRequestException or InvalidOperationException or CryptographicException or IOException)
        {
            error = exception.Message;
        }

        var now = time.GetUtcNow();
        if (now - delivery.CreatedAt >= options.Value.RetryFor) return await RecordAsync(delivery, "failed", statusCode, error, null);
        return await RecordAsync(delivery, "pending", statusCode, error, now + Backoff(delivery.Attempts + 1));
    }

    /// <summary>Exponential backoff with ±50 % jitter: 10 s, 20 s, 40 s … up to an hour.</summary>
    internal TimeSpan Backoff(int attempt)
    {
        var settings = options.Value;
        var exponential = settings.InitialBackoff.TotalSeconds * Math.Pow(2, Math.Min(attempt - 1, 30));
        var capped = Math.Min(exponential, settings.MaxBackoff.TotalSeconds);
        return TimeSpan.FromSeconds(capped * (0.5 + Random.Shared.NextDouble()));
    }

    private async Task<string> RecordAsync(Due delivery, string status, int? statusCode, string? error, DateTimeOffset? nextAttemptAt)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await connection.ExecuteAsync("""
            UPDATE webhook_deliveries SET status = @status, attempts = attempts + 1, last_status_code = @statusCode, last_error = @error,
                next_attempt_at = COALESCE(@nextAttemptAt, next_attempt_at),
                delivered_at = CASE WHEN @status = 'delivered' THEN @now END
            WHERE id = @id
            """, new { id = delivery.Id, status, statusCode, error, nextAttemptAt, now = time.GetUtcNow() });
        metrics.WebhookAttempts.Add(1, new KeyValuePair<string, object?>("outcome", status == "pending" ? "retry" : status));
        if (status == "failed") LogGaveUp(logger, delivery.Id, delivery.JobId, error ?? "");
        return status;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Webhook delivery {DeliveryId} for job {JobId} failed for good: {Reason}")]
    private static partial void LogGaveUp(ILogger logger, long deliveryId, long jobId, string reason);
}

/// <summary>Runs <see cref="WebhookSender"/> every <see cref="WebhookOptions.PollInterval"/> on every node.</summary>
public sealed class WebhookSenderService(WebhookSender sender, TimeProvider time, IOptions<WebhookOptions> options, ILogger<WebhookSenderService> logger)
    : PeriodicService(time, logger)
{
    protected override bool Enabled => options.Value.RunSender;

    protected override TimeSpan Interval => options.Value.PollInterval;

    protected override string Name => "Webhook";

    protected override async Task RunPassAsync(CancellationToken stoppingToken)
    {
        while ((await sender.RunOnceAsync(stoppingToken)) is { } pass && pass.Delivered + pass.Retrying + pass.Failed > 0)
        {
            // A full batch may mean more are due: keep going until a pass finds nothing.
        }
    }
}
