namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// What a BOLT11 invoice says, once its checksum and signature have been checked: who is paid (the payee's node key),
/// how much, for what payment hash, and until when. <see cref="Bolt11Decoder"/> returns one only for an invoice whose
/// checksum and signature are valid.
/// </summary>
public sealed record Bolt11Invoice
{
    /// <summary>The chain the invoice is to be paid on.</summary>
    public required Bolt11Network Network { get; init; }

    /// <summary>The amount asked, in millisatoshis; null when the invoice leaves it to the payer.</summary>
    public required long? AmountMsat { get; init; }

    /// <summary>The amount in whole satoshis; null when there is none or it is not a whole number of satoshis.</summary>
    public long? AmountSats => AmountMsat is { } msat && msat % 1000 == 0 ? msat / 1000 : null;

    /// <summary>When the invoice was made (whole seconds, UTC).</summary>
    public required DateTimeOffset Timestamp { get; init; }

    /// <summary>How long after <see cref="Timestamp"/> it may be paid: the <c>x</c> field, 3600 s when absent.</summary>
    public required TimeSpan Expiry { get; init; }

    /// <summary>When it stops being payable; <see cref="DateTimeOffset.MaxValue"/> for an expiry beyond the calendar.</summary>
    public DateTimeOffset ExpiresAt =>
        Expiry >= DateTimeOffset.MaxValue - Timestamp ? DateTimeOffset.MaxValue : Timestamp + Expiry;

    /// <summary>The SHA-256 payment hash (the <c>p</c> field), 64 lowercase hex digits.</summary>
    public required string PaymentHash { get; init; }

    /// <summary>The payment secret (the <c>s</c> field), 64 lowercase hex digits; null when absent.</summary>
    public required string? PaymentSecret { get; init; }

    /// <summary>The description (the <c>d</c> field); null when absent.</summary>
    public required string? Description { get; init; }

    /// <summary>The SHA-256 of a description kept elsewhere (the <c>h</c> field), lowercase hex; null when absent.</summary>
    public required string? DescriptionHash { get; init; }

    /// <summary>The payee's node key, 66 lowercase hex digits (compressed): the <c>n</c> field when present, else the
    /// key the signature recovers.</summary>
    public required string PayeeNodeKey { get; init; }

    /// <summary>The <c>min_final_cltv_expiry</c> (the <c>c</c> field) in blocks, 18 when absent.</summary>
    public required long MinFinalCltvExpiry { get; init; }
}
