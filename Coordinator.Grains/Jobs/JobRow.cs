namespace Coordinator.Grains.Jobs;

/// <summary>Job states, as the spec spells them.</summary>
public static class JobStatus
{
    public const string Pending = "pending";
    public const string Claimed = "claimed";
    public const string Running = "running";
    public const string Completed = "completed";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    public static readonly IReadOnlyList<string> All = [Pending, Claimed, Running, Completed, Failed, Cancelled];
}

/// <summary>How a job's model is matched against a worker's capabilities.</summary>
public static class ModelMatch
{
    public const string Exact = "exact";
    public const string Family = "family";
    public const string Any = "any";

    public static readonly IReadOnlyList<string> All = [Exact, Family, Any];
}

/// <summary>One row of <c>jobs</c>, as clients see it.</summary>
public sealed class JobRow
{
    public long Id { get; init; }
    public long AccountId { get; init; }
    public string Status { get; init; } = "";
    public string? Model { get; init; }
    public string? Family { get; init; }
    public string ModelMatch { get; init; } = "";
    public string Prompt { get; init; } = "";
    public int Priority { get; init; }
    public int TimeoutSeconds { get; init; }
    public string? Tag { get; init; }
    public string? WebhookUrl { get; init; }
    public string? Output { get; init; }
    public int? InputTokens { get; init; }
    public int? OutputTokens { get; init; }
    public int? DurationMs { get; init; }
    public string? ModelUsed { get; init; }
    public string? Error { get; init; }
    public long? WorkerId { get; init; }
    public int Attempts { get; init; }
    /// <summary>Pending but not dispatchable: the account is over its daily quota.</summary>
    public bool Held { get; init; }
    public string? BoostStatus { get; init; }
    public string? BoostError { get; init; }
    /// <summary>Generation parameters as JSON text, or null.</summary>
    public string? Params { get; init; }
    public DateTime CreatedAt { get; init; }
    public DateTime? ClaimedAt { get; init; }
    public DateTime? StartedAt { get; init; }
    public DateTime? CompletedAt { get; init; }
}

/// <summary>A validated job to insert.</summary>
public sealed record NewJob(
    string? Model,
    string ModelMatch,
    string Prompt,
    int? Priority,
    int TimeoutSeconds,
    string? Tag,
    string? WebhookUrl)
{
    /// <summary>The outcome of a paid priority boost, when one was asked for.</summary>
    public Boost? Boost { get; init; }

    /// <summary>Generation parameters as validated JSON (max_tokens, temperature, top_p, stop, seed), or null.</summary>
    public string? ParamsJson { get; init; }

    /// <summary>The submitting key, and its Data Protection copy when the job has a webhook to sign.</summary>
    public long? SubmittedByKeyId { get; init; }

    public string? ProtectedKey { get; init; }

    /// <summary>Confirmed blobs of the same account to attach, in order (the caller has checked them).</summary>
    public IReadOnlyList<long> BlobIds { get; init; } = [];

    /// <summary>The client's idempotency key, if it sent one: a live key of the account answers its first job instead.</summary>
    public IdempotencyKey? Idempotency { get; init; }
}

/// <summary>A priority boost charge: <c>charged</c> adds <see cref="Delta"/> to the priority; <c>failed</c> says why.</summary>
public sealed record Boost(string Status, int Delta, string? Error, string? PaymentIntent);

/// <summary>Filters for listing an account's jobs, newest first.</summary>
public sealed record JobQuery(
    string? Status = null,
    string? Model = null,
    string? Tag = null,
    DateTimeOffset? From = null,
    DateTimeOffset? To = null,
    int Offset = 0,
    int Limit = 50);

/// <summary>A job handed to a worker by a claim.</summary>
public sealed class ClaimedJob
{
    public long Id { get; init; }
    public string? Model { get; init; }
    public string? Family { get; init; }
    public string ModelMatch { get; init; } = "";
    public string Prompt { get; init; } = "";
    public int Priority { get; init; }
    public int TimeoutSeconds { get; init; }
    public int Attempts { get; init; }
    /// <summary>Generation parameters as JSON text, or null.</summary>
    public string? Params { get; init; }
    public long AccountId { get; init; }
    /// <summary>This claim brought the account to its daily request limit: its pending jobs must be held now.</summary>
    public bool QuotaReached { get; init; }
    /// <summary>The job carries attachments, whose download URLs go into the assignment.</summary>
    public bool HasBlobs { get; init; }
    /// <summary>Claimed and started in one transition (a lease): it is <c>running</c> already.</summary>
    public bool Started { get; init; }
}

/// <summary>The result a worker reports.</summary>
public sealed record JobResult(string Output, int? InputTokens, int OutputTokens, int DurationMs, string? ModelUsed);

/// <summary>What a worker declares it can serve in one poll.</summary>
public sealed record Capabilities(IReadOnlyList<string> Models, IReadOnlyList<string> Families, bool CatchAll)
{
    public bool IsEmpty => Models.Count == 0 && Families.Count == 0 && !CatchAll;
}

/// <summary>Outcome of a state transition requested by a client or a worker.</summary>
public enum TransitionOutcome
{
    Done,
    /// <summary>No such job for this caller (another account's, or not held by this worker).</summary>
    NotFound,
    /// <summary>The job exists for this caller but is not in the state the transition needs.</summary>
    WrongState,
}

public readonly record struct Transition<T>(TransitionOutcome Outcome, T? Value, string? CurrentStatus)
{
    public static Transition<T> Done(T value) => new(TransitionOutcome.Done, value, null);
    public static Transition<T> NotFound() => new(TransitionOutcome.NotFound, default, null);
    public static Transition<T> WrongState(string status) => new(TransitionOutcome.WrongState, default, status);
}
