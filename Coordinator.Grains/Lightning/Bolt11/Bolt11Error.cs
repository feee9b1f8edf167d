namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// Why an invoice was refused. <see cref="Bolt11Decoder"/> answers the decoding errors; <see cref="Bolt11RefundCheck"/>
/// adds the ones that depend on what the refund expects (<see cref="NoAmount"/>, <see cref="WrongAmount"/>,
/// <see cref="Expired"/>, <see cref="WrongNetwork"/>). Every one is the payer's fault, so an endpoint answers 400.
/// </summary>
public enum Bolt11Error
{
    /// <summary>No error: the invoice is acceptable.</summary>
    None,

    /// <summary>Nothing was sent, or only white space.</summary>
    Empty,

    /// <summary>Longer than <see cref="Bolt11Decoder.MaxLength"/> characters, the most a QR code holds.</summary>
    TooLong,

    /// <summary>Not a bech32 string starting with <c>ln</c>: no separator, characters bech32 does not use, or non-ASCII.</summary>
    NotBolt11,

    /// <summary>Upper- and lower-case letters together, which BIP-0173 forbids.</summary>
    MixedCase,

    /// <summary>The bech32 checksum does not match: a character was changed or mistyped.</summary>
    BadChecksum,

    /// <summary>A currency prefix that is not one of <see cref="Bolt11Network"/>.</summary>
    UnknownNetwork,

    /// <summary>An amount that is not a positive integer without leading zeros, an unknown multiplier, or a <c>p</c>
    /// amount that is not a whole number of millisatoshis.</summary>
    BadAmount,

    /// <summary>The data part is too short for a timestamp and a signature, or a field runs past its end.</summary>
    Malformed,

    /// <summary>No payment hash field of the right length.</summary>
    MissingPaymentHash,

    /// <summary>The signature does not recover a key, or does not verify against the payee field.</summary>
    BadSignature,

    /// <summary>The invoice requires (sets an even bit for) a feature this decoder does not know.</summary>
    UnknownRequiredFeature,

    /// <summary>The invoice is for another network than the one the node pays on.</summary>
    WrongNetwork,

    /// <summary>The invoice leaves the amount to the payer; a refund invoice must name it.</summary>
    NoAmount,

    /// <summary>The invoice's amount is not exactly the refund owed.</summary>
    WrongAmount,

    /// <summary>The invoice's expiry has passed.</summary>
    Expired,
}

/// <summary>The English text of each <see cref="Bolt11Error"/>, fit for an API's <c>{"error": "..."}</c>.</summary>
public static class Bolt11ErrorMessages
{
    /// <summary>What went wrong and what to do about it, without the details of a particular invoice.</summary>
    public static string Message(this Bolt11Error error) => error switch
    {
        Bolt11Error.None => "the invoice is acceptable",
        Bolt11Error.Empty => "invoice is required: send a BOLT11 Lightning invoice (lnbc…)",
        Bolt11Error.TooLong => $"the invoice is longer than {Bolt11Decoder.MaxLength} characters, more than any BOLT11 invoice can be",
        Bolt11Error.NotBolt11 => "the invoice is not a BOLT11 Lightning invoice: expected ln, the network and amount, '1', then bech32 data",
        Bolt11Error.MixedCase => "the invoice mixes upper- and lower-case letters, which bech32 forbids: send it as your wallet shows it",
        Bolt11Error.BadChecksum => "the invoice's bech32 checksum is wrong: it was cut, altered or mistyped; copy it again from your wallet",
        Bolt11Error.UnknownNetwork => "the invoice is for an unknown network: expected lnbc, lntb, lntbs, lnbcrt or lnsb",
        Bolt11Error.BadAmount => "the invoice's amount is malformed: digits without leading zeros, then m, u, n or p (p only for whole millisatoshis)",
        Bolt11Error.Malformed => "the invoice's data is truncated or malformed",
        Bolt11Error.MissingPaymentHash => "the invoice has no payment hash",
        Bolt11Error.BadSignature => "the invoice's signature is invalid",
        Bolt11Error.UnknownRequiredFeature => "the invoice requires a Lightning feature this node does not support",
        Bolt11Error.WrongNetwork => "the invoice is for another network than the one this node pays on",
        Bolt11Error.NoAmount => "the invoice has no amount: make one for exactly the refund owed",
        Bolt11Error.WrongAmount => "the invoice's amount is not the refund owed: make one for exactly that amount",
        Bolt11Error.Expired => "the invoice has expired: make a new one",
        _ => throw new ArgumentOutOfRangeException(nameof(error), error, "not a BOLT11 error"),
    };
}
