using System.ComponentModel.DataAnnotations;

namespace Coordinator.Grains;

/// <summary>Dispatch and worker-liveness settings, bound from the <c>Dispatch</c> configuration section.</summary>
public sealed class DispatchOptions : IValidatableObject
{
    public const string Section = "Dispatch";

    /// <summary>How long <c>GET /worker/jobs/next</c> parks before answering 204. Default: 30 s (the spec's window). At most 4 minutes.</summary>
    public TimeSpan LongPollTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The longest poll window: a poll is a grain call, and its response timeout (five minutes) must outlast it.</summary>
    public static readonly TimeSpan MaxLongPollTimeout = TimeSpan.FromMinutes(4);

    /// <summary>A worker silent this long goes offline and its jobs are requeued. Default: 90 s (the spec's window).</summary>
    public TimeSpan OfflineAfter { get; set; } = TimeSpan.FromSeconds(90);

    /// <summary>A job abandoned by a worker on its last attempt fails instead of going back to pending. Default: 3.</summary>
    [Range(1, 100)]
    public int MaxAttempts { get; set; } = 3;

    /// <summary>How often each node runs the time-driven duties (timeouts, offline sweep). Default: 5 s.</summary>
    public TimeSpan DutyInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Whether this node runs the duty loop at all. Default: true. Tests switch it off and run duties by hand.</summary>
    public bool RunDuties { get; set; } = true;

    /// <summary>
    /// A worker's grain writes its last-seen time (what the offline sweep reads) at most this often; polls, heartbeats and
    /// claims between writes are signs of life in memory only. Default: 10 s.
    /// </summary>
    public TimeSpan HeartbeatWriteInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How many of the best dispatchable jobs of one model (or family) a dispatcher holds in memory; the rest stay in the
    /// table and are read along the dispatch index as the head runs low. Default: 1,000.
    /// </summary>
    [Range(16, 1_000_000)]
    public int QueueHead { get; set; } = 1000;

    /// <summary>
    /// How often a dispatcher with polls waiting on an empty queue reads the table for jobs it was not told of (a
    /// notice lost with a failed call). Default: 30 s.
    /// </summary>
    public TimeSpan RescanInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A claimed job that its worker has not started this long after the claim goes back to pending, not counted as an
    /// attempt: the poll it was claimed for may never have been answered (its node died, the connection broke), and a
    /// worker that is alive and polling elsewhere would not stay silent long enough for the offline sweep to free it.
    /// Default: 15 s.
    /// </summary>
    public TimeSpan ClaimLease { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How far back a dispatcher's count of the jobs it handed out reaches: the recent throughput that a pending job's
    /// <c>eta_seconds</c> and <c>GET /models</c> report. Default: 5 minutes. From 30 s to a day.
    /// </summary>
    public TimeSpan ThroughputWindow { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Settings that are wrong together; checked at start-up with the annotations.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // A parked poll is the worker's only sign of life for the whole window.
        if (OfflineAfter <= LongPollTimeout)
        {
            yield return new ValidationResult(
                $"Dispatch:OfflineAfter ({OfflineAfter}) must be longer than Dispatch:LongPollTimeout ({LongPollTimeout}): a worker waiting in a long poll " +
                "says nothing until the poll ends, so it would be taken offline, and its jobs requeued, while it waits. Raise Dispatch:OfflineAfter or lower Dispatch:LongPollTimeout.",
                [nameof(OfflineAfter), nameof(LongPollTimeout)]);
        }
        if (LongPollTimeout <= TimeSpan.Zero || LongPollTimeout > MaxLongPollTimeout)
        {
            yield return new ValidationResult(
                $"Dispatch:LongPollTimeout ({LongPollTimeout}) must be positive and at most {MaxLongPollTimeout}.", [nameof(LongPollTimeout)]);
        }
        if (RescanInterval <= TimeSpan.Zero || HeartbeatWriteInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult("Dispatch:RescanInterval and Dispatch:HeartbeatWriteInterval must be positive.",
                [nameof(RescanInterval), nameof(HeartbeatWriteInterval)]);
        }
        if (ClaimLease <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"Dispatch:ClaimLease ({ClaimLease}) must be positive.", [nameof(ClaimLease)]);
        }
        if (ThroughputWindow < TimeSpan.FromSeconds(30) || ThroughputWindow > TimeSpan.FromDays(1))
        {
            yield return new ValidationResult($"Dispatch:ThroughputWindow ({ThroughputWindow}) must be from 30 seconds to a day.", [nameof(ThroughputWindow)]);
        }
    }
}

/// <summary>Size and range limits on jobs, bound from the <c>Jobs</c> configuration section.</summary>
public sealed class JobLimitsOptions
{
    public const string Section = "Jobs";

    /// <summary>Largest prompt accepted, in UTF-8 bytes. Default: 1 MiB.</summary>
    [Range(1, 64 * 1024 * 1024)]
    public int MaxPromptBytes { get; set; } = 1024 * 1024;

    /// <summary>Largest result output accepted from a worker, in UTF-8 bytes. Default: 4 MiB.</summary>
    [Range(1, 64 * 1024 * 1024)]
    public int MaxOutputBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>Largest <c>timeout_seconds</c> a job may ask for. Default: 86,400 (a day).</summary>
    [Range(1, int.MaxValue)]
    public int MaxTimeoutSeconds { get; set; } = 86_400;

    /// <summary><c>timeout_seconds</c> when the request omits it. Default: 600 (the spec's default).</summary>
    [Range(1, int.MaxValue)]
    public int DefaultTimeoutSeconds { get; set; } = 600;
}

/// <summary>Account and key settings, bound from the <c>Accounts</c> configuration section.</summary>
public sealed class AccountOptions
{
    public const string Section = "Accounts";

    /// <summary>Whether <c>POST /api/v1/accounts</c> is open to anyone. Default: true.</summary>
    public bool OpenSignup { get; set; } = true;

    /// <summary>How long a node trusts a key it has looked up; a revoked key stops working on every node within this. Default: 5 s.</summary>
    public TimeSpan KeyCacheDuration { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>Credits, payouts and quota settings, bound from the <c>Accounting</c> configuration section.</summary>
public sealed class AccountingOptions
{
    public const string Section = "Accounting";

    /// <summary>Credits a worker earns per 1,000 output tokens. Default: 1.0 (the spec's rate).</summary>
    [Range(0, 1_000_000)]
    public decimal CreditsPerThousandOutputTokens { get; set; } = 1.0m;

    /// <summary>USD value of one credit, reported by <c>GET /worker/credits</c>. Default: 0.01.</summary>
    [Range(0, 1_000_000)]
    public decimal CreditValueUsd { get; set; } = 0.01m;

    /// <summary>A payout needs an unpaid balance above this many credits. Default: 0 (anything above zero).</summary>
    [Range(0, 1_000_000_000)]
    public decimal MinimumPayoutCredits { get; set; }

    /// <summary>
    /// How often an account's grain writes its quota counts to <c>quota_usage</c> (the dashboard reads them there; a new
    /// activation starts from them). Default: 1 s.
    /// </summary>
    public TimeSpan CounterWriteInterval { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>How the ledger seals receipts into blocks, bound from the <c>Ledger</c> configuration section.</summary>
public sealed class LedgerOptions : IValidatableObject
{
    public const string Section = "Ledger";

    /// <summary>How often the ledger grain seals the receipts committed since its last block. Default: 10 s.</summary>
    public TimeSpan SealInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The most receipts one block holds; once this many have been reported since the last block, the grain seals at once
    /// instead of waiting for the interval. Default: 500.
    /// </summary>
    [Range(1, 100_000)]
    public int MaxReceiptsPerBlock { get; set; } = 500;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (SealInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"Ledger:SealInterval ({SealInterval}) must be positive.", [nameof(SealInterval)]);
        }
    }
}
