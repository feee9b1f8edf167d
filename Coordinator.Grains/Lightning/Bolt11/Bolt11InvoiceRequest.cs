namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// What <see cref="Bolt11Encoder"/> writes into an invoice. Hashes and secrets are hex, as <see cref="Bolt11Invoice"/>
/// reads them back, so an invoice made from a request decodes to the same values.
/// </summary>
public sealed record Bolt11InvoiceRequest
{
    /// <summary>The chain the invoice is to be paid on.</summary>
    public required Bolt11Network Network { get; init; }

    /// <summary>The amount in millisatoshis (1 to 2.1 × 10¹⁸); null for an invoice that leaves it to the payer.</summary>
    public long? AmountMsat { get; init; }

    /// <summary>When the invoice is made; written in whole seconds (fractions are dropped), at most 2³⁵ − 1 s after 1970.</summary>
    public required DateTimeOffset Timestamp { get; init; }

    /// <summary>The payment hash: 32 bytes as 64 hex digits.</summary>
    public required string PaymentHash { get; init; }

    /// <summary>The description (at most 639 UTF-8 bytes). Written, empty if null, unless there is a <see cref="DescriptionHash"/>.</summary>
    public string? Description { get; init; }

    /// <summary>The SHA-256 of a description kept elsewhere, 64 hex digits; written instead of <see cref="Description"/>.</summary>
    public string? DescriptionHash { get; init; }

    /// <summary>The expiry, in whole seconds; null writes no <c>x</c> field (readers take 3600 s).</summary>
    public TimeSpan? Expiry { get; init; }

    /// <summary>The payment secret, 64 hex digits; when set, the invoice also requires the payment_secret feature.</summary>
    public string? PaymentSecret { get; init; }

    /// <summary>The <c>min_final_cltv_expiry</c> in blocks. Default: 18, the value readers assume without a <c>c</c> field.</summary>
    public long MinFinalCltvExpiry { get; init; } = Bolt11Decoder.DefaultMinFinalCltvExpiry;

    /// <summary>Whether to write the payee's key as an <c>n</c> field (readers then verify rather than recover). Default: false.</summary>
    public bool IncludePayeeNodeKey { get; init; }
}
