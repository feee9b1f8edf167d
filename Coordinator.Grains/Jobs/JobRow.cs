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
[GenerateSerializer, Immutable]
public sealed class JobRow
{
    [Id(0)] public long Id { get; init; }
    [Id(1)] public long AccountId { get; init; }
    [Id(2)] public string Status { get; init; } = "";
    [Id(3)] public string? Model { get; init; }
    [Id(4)] public string? Family { get; init; }
    [Id(5)] public string ModelMatch { get; init; } = "";
    [Id(6)] public string Prompt { get; init; } = "";
    [Id(7)] public int Priority { get; init; }
    [Id(8)] public int TimeoutSeconds { get; init; }
    [Id(9)] public string? Tag { get; init; }
    [Id(10)] public string? WebhookUrl { get; init; }
    [Id(11)] public string? Output { get; init; }
    [Id(12)] public int? InputTokens { get; init; }
    [Id(13)] public int? OutputTokens { get; init; }
    [Id(14)] public int? DurationMs { get; init; }
    [Id(15)] public string? ModelUsed { get; init; }
    [Id(16)] public string? Error { get; init; }
    [Id(17)] public long? WorkerId { get; init; }
    [Id(18)] public int Attempts { get; init; }
    /// <summary>Pending but not dispatchable: the account is over its daily quota.</summary>
    [Id(19)] public bool Held { get; init; }
    [Id(20)] public string? BoostStatus { get; init; }
    [Id(21)] public string? BoostError { get; init; }
    /// <summary>Generation parameters as JSON text, or null.</summary>
    [Id(22)] public string? Params { get; init; }
    [Id(23)] public DateTime CreatedAt { get; init; }
    [Id(24)] public DateTime? ClaimedAt { get; init; }
    [Id(25)] public DateTime? StartedAt { get; init; }
    [Id(26)] public DateTime? CompletedAt { get; init; }
    /// <summary>Someone follows the job's stream: its state changes are told to its grain.</summary>
    [Id(27)] public bool Watched { get; init; }
    /// <summary>The id of the job's latest signed receipt; read only by <see cref="JobStore.GetAsync"/> and <see cref="JobStore.ListAsync"/>, null elsewhere.</summary>
    [Id(28)] public string? ReceiptId { get; init; }
}

/// <summary>A validated job to insert.</summary>
[GenerateSerializer, Immutable]
public sealed record NewJob(
    [property: Id(0)] string? Model,
    [property: Id(1)] string ModelMatch,
    [property: Id(2)] string Prompt,
    [property: Id(3)] int? Priority,
    [property: Id(4)] int TimeoutSeconds,
    [property: Id(5)] string? Tag,
    [property: Id(6)] string? WebhookUrl)
{
    /// <summary>The outcome of a paid priority boost, when one was asked for.</summary>
    [Id(7)]
    public Boost? Boost { get; init; }

    /// <summary>Generation parameters as validated JSON (max_tokens, temperature, top_p, stop, seed), or null.</summary>
    [Id(8)]
    public string? ParamsJson { get; init; }

    /// <summary>The submitting key, and its Data Protection copy when the job has a webhook to sign.</summary>
    [Id(9)]
    public long? SubmittedByKeyId { get; init; }

    [Id(10)]
    public string? ProtectedKey { get; init; }

    /// <summary>Confirmed blobs of the same account to attach, in order (the caller has checked them).</summary>
    [Id(11)]
    public IReadOnlyList<long> BlobIds { get; init; } = [];

    /// <summary>The client's idempotency key, if it sent one: a live key of the account answers its first job instead.</summary>
    [Id(12)]
    public IdempotencyKey? Idempotency { get; init; }

    /// <summary>Its client follows its stream from the start (an OpenAI-compatible request): inserted watched.</summary>
    [Id(13)]
    public bool Watched { get; init; }

    /// <summary>The model family whose dispatcher queues this job; catch-all jobs have a dispatcher of their own.</summary>
    public string DispatcherKey => Dispatch.DispatchKeys.Of(ModelMatch, Model is null ? null : ModelNames.FamilyOf(Model));
}

/// <summary>A priority boost charge: <c>charged</c> adds <see cref="Delta"/> to the priority; <c>failed</c> says why.</summary>
[GenerateSerializer, Immutable]
public sealed record Boost([property: Id(0)] string Status, [property: Id(1)] int Delta, [property: Id(2)] string? Error, [property: Id(3)] string? PaymentIntent);

/// <summary>Filters for listing an account's jobs, newest first.</summary>
public sealed record JobQuery(
    string? Status = null,
    string? Model = null,
    string? Tag = null,
    DateTimeOffset? From = null,
    DateTimeOffset? To = null,
    int Offset = 0,
    int Limit = 50);

/// <summary>A job handed to a worker: claimed for it, with what the worker needs to run it.</summary>
[GenerateSerializer, Immutable]
public sealed class ClaimedJob
{
    [Id(0)] public long Id { get; init; }
    [Id(1)] public string? Model { get; init; }
    [Id(2)] public string? Family { get; init; }
    [Id(3)] public string ModelMatch { get; init; } = "";
    [Id(4)] public string Prompt { get; init; } = "";
    [Id(5)] public int Priority { get; init; }
    [Id(6)] public int TimeoutSeconds { get; init; }
    [Id(7)] public int Attempts { get; init; }
    /// <summary>Generation parameters as JSON text, or null.</summary>
    [Id(8)] public string? Params { get; init; }
    [Id(9)] public long AccountId { get; init; }
    /// <summary>The job carries attachments, whose download URLs go into the assignment.</summary>
    [Id(10)] public bool HasBlobs { get; init; }
}

/// <summary>The result a worker reports.</summary>
[GenerateSerializer, Immutable]
public sealed record JobResult(
    [property: Id(0)] string Output, [property: Id(1)] int? InputTokens, [property: Id(2)] int OutputTokens,
    [property: Id(3)] int DurationMs, [property: Id(4)] string? ModelUsed);

/// <summary>What a worker declares it can serve in one poll.</summary>
[GenerateSerializer, Immutable]
public sealed record Capabilities(
    [property: Id(0)] IReadOnlyList<string> Models, [property: Id(1)] IReadOnlyList<string> Families, [property: Id(2)] bool CatchAll)
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

[GenerateSerializer, Immutable]
public readonly record struct Transition<T>([property: Id(0)] TransitionOutcome Outcome, [property: Id(1)] T? Value, [property: Id(2)] string? CurrentStatus)
{
    public static Transition<T> Done(T value) => new(TransitionOutcome.Done, value, null);
    public static Transition<T> NotFound() => new(TransitionOutcome.NotFound, default, null);
    public static Transition<T> WrongState(string status) => new(TransitionOutcome.WrongState, default, status);
}

/// <summary>What inserting a job did.</summary>
/// <param name="Row">The job as the client sees it; null when <paramref name="KeyReused"/>.</param>
/// <param name="Handed">The job, inserted already claimed for the worker it was to be handed to.</param>
/// <param name="KeyReused">The idempotency key was used before with another request: nothing was inserted.</param>
/// <param name="Inserted">A new job; false for a replay of an idempotency key, which answers the job the key made.</param>
public sealed record SubmitResult(JobRow? Row, ClaimedJob? Handed, bool KeyReused, bool Inserted)
{
    /// <summary>The new job as its dispatcher queues it, if it is dispatchable (pending, not held).</summary>
    public Dispatch.QueuedJob? Queued => Inserted && Row is { Status: JobStatus.Pending, Held: false } row ? Dispatch.QueuedJob.Of(row) : null;
}

/// <summary>The parked poll a new job is handed to as it is inserted: its worker, and the poll its claim is made for.</summary>
public sealed record HandTo(long WorkerId, Guid PollId);

/// <summary>What a statement that ended a job answers: its account, whether someone follows its stream, and its family (for metrics).</summary>
public readonly record struct Ended(long AccountId, bool Watched, string? Family = null);

/// <summary>What <see cref="JobStore.StreamByAsync"/> answers of a job a worker streams: its account, the attempt, when it was submitted and its family.</summary>
public sealed record StreamHolder(long AccountId, int Attempt, DateTime CreatedAt, string? Family);
