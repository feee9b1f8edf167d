namespace Coordinator.Grains.Jobs;

/// <summary>
/// A client's <c>Idempotency-Key</c> for one submission, with the hash of the request it came with. Within
/// <see cref="JobStore.IdempotencyKeyLifetime"/> the same key of the same account answers the job it first made.
/// </summary>
/// <param name="Key">The header's value, already checked (1 to <see cref="MaxLength"/> printable ASCII characters).</param>
/// <param name="RequestHash">SHA-256 of the canonical request: a retry must hash the same.</param>
[GenerateSerializer, Immutable]
public sealed record IdempotencyKey([property: Id(0)] string Key, [property: Id(1)] byte[] RequestHash)
{
    /// <summary>Longest key accepted, as Stripe's.</summary>
    public const int MaxLength = 255;
}

/// <summary>A submission reused a live idempotency key with a different request: no job was created.</summary>
public sealed class IdempotencyKeyReusedException : Exception
{
    public IdempotencyKeyReusedException()
        : base("Idempotency-Key was already used with a different request: keys for idempotent requests can only be used with the same parameters they were first used with (send a new key for a new job)")
    {
    }

    public IdempotencyKeyReusedException(string message) : base(message) { }

    public IdempotencyKeyReusedException(string message, Exception innerException) : base(message, innerException) { }
}
