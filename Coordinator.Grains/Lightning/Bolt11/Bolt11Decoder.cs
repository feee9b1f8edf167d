using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using System.Text.Unicode;
using NBitcoin;
using NBitcoin.Crypto;

namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// Reads a BOLT11 invoice (lightning/bolts <c>11-payment-encoding.md</c>) and checks its checksum and signature, so
/// that a refund is only ever paid to an invoice its payee signed. It never throws on bad input: text from a client
/// comes back as a <see cref="Bolt11Error"/>.
/// </summary>
/// <remarks>
/// As the specification asks of a reader: fields of unknown type, and <c>p</c>, <c>h</c>, <c>s</c> or <c>n</c> fields
/// whose length is not 52, 52, 52 or 53 words, are skipped; the first field of a type that is not skipped is the one
/// used; unknown odd feature bits are ignored and unknown even (required) ones refuse the invoice; with an <c>n</c>
/// field the signature is verified against it, without one the payee is the key the signature recovers. Fallback
/// addresses (<c>f</c>), route hints (<c>r</c>), metadata (<c>m</c>) and TLVs (<c>t</c>) are skipped: paying a refund
/// through LNbits needs none of them here.
/// </remarks>
public static class Bolt11Decoder
{
    /// <summary>
    /// The longest text accepted (after white space and a <c>lightning:</c> prefix are removed): 7089 characters, the
    /// most a QR code holds, so that a huge string is refused before any work is spent on it.
    /// </summary>
    public const int MaxLength = 7089;

    /// <summary>The URI scheme a wallet may put before an invoice (BOLT11: <c>lightning:</c>, not <c>lightning://</c>).</summary>
    public const string UriScheme = "lightning:";

    /// <summary>The expiry when the invoice has no <c>x</c> field.</summary>
    public static readonly TimeSpan DefaultExpiry = TimeSpan.FromSeconds(3600);

    /// <summary>The <c>min_final_cltv_expiry</c> when the invoice has no <c>c</c> field.</summary>
    public const long DefaultMinFinalCltvExpiry = 18;

    internal const int TimestampWords = 7;
    internal const int SignatureWords = 104;
    internal const int HashWords = 52;
    internal const int NodeKeyWords = 53;

    // Expiries beyond the calendar's end are read as that end, where DateTimeOffset stops.
    private static readonly long MaxExpirySeconds = (long)(DateTimeOffset.MaxValue - DateTimeOffset.UnixEpoch).TotalSeconds;

    // The even (required) feature bits BOLT 9 assigns to invoices: var_onion_optin, payment_secret, basic_mpp,
    // option_route_blinding, option_payment_metadata. Any other even bit means a feature this reader cannot honour.
    private static readonly int[] KnownRequiredFeatureBits = [8, 14, 16, 24, 48];

    /// <summary>Decodes an invoice and checks its checksum and signature.</summary>
    /// <param name="text">The invoice as the client sent it; surrounding white space and a <c>lightning:</c> prefix (any case) are allowed.</param>
    /// <param name="invoice">The invoice, when it is valid.</param>
    /// <param name="error"><see cref="Bolt11Error.None"/>, or why the text is not a valid invoice.</param>
    public static bool TryDecode(string? text, [NotNullWhen(true)] out Bolt11Invoice? invoice, out Bolt11Error error)
    {
        error = Decode(text, out invoice);
        return error == Bolt11Error.None;
    }

    private static Bolt11Error Decode(string? text, out Bolt11Invoice? invoice)
    {
        invoice = null;
        var span = text.AsSpan().Trim();
        if (span.StartsWith(UriScheme, StringComparison.OrdinalIgnoreCase)) span = span[UriScheme.Length..];
        if (span.IsEmpty) return Bolt11Error.Empty;
        if (span.Length > MaxLength) return Bolt11Error.TooLong;

        var error = Bolt11Bech32.Decode(span.ToString(), out var hrp, out var words);
        if (error != Bolt11Error.None) return error;

        error = ParseHumanReadablePart(hrp, out var network, out var amountMsat);
        if (error != Bolt11Error.None) return error;
        if (words.Length < TimestampWords + SignatureWords) return Bolt11Error.Malformed;

        Bolt11Words.TryToInteger(words.AsSpan(0, TimestampWords), out var timestamp);
        var fields = words.AsSpan(TimestampWords, words.Length - TimestampWords - SignatureWords);
        error = ParseFields(fields, out var parsed);
        if (error != Bolt11Error.None) return error;
        if (parsed.PaymentHash is null) return Bolt11Error.MissingPaymentHash;

        var signed = Encoding.ASCII.GetBytes(hrp).Concat(Bolt11Words.ToBytesPadded(words.AsSpan(0, words.Length - SignatureWords)));
        var hash = new uint256(SHA256.HashData([.. signed]));
        var signature = Bolt11Words.ToBytesTruncated(words.AsSpan(words.Length - SignatureWords));
        if (!TryFindPayee(hash, signature, parsed.PayeeNodeKey, out var payee)) return Bolt11Error.BadSignature;

        var timestampAt = DateTimeOffset.FromUnixTimeSeconds(timestamp);
        invoice = new Bolt11Invoice
        {
            Network = network,
            AmountMsat = amountMsat,
            Timestamp = timestampAt,
            Expiry = parsed.ExpirySeconds is { } seconds ? TimeSpan.FromSeconds(Math.Min(seconds, MaxExpirySeconds)) : DefaultExpiry,
            PaymentHash = Convert.ToHexStringLower(parsed.PaymentHash),
            PaymentSecret = parsed.PaymentSecret is null ? null : Convert.ToHexStringLower(parsed.PaymentSecret),
            Description = parsed.Description,
            DescriptionHash = parsed.DescriptionHash is null ? null : Convert.ToHexStringLower(parsed.DescriptionHash),
            PayeeNodeKey = payee.Compress().ToHex(),
            MinFinalCltvExpiry = parsed.MinFinalCltvExpiry ?? DefaultMinFinalCltvExpiry,
        };
        return Bolt11Error.None;
    }

    /// <summary><c>ln</c>, the currency prefix (letters), then an optional amount (digits and a multiplier).</summary>
    private static Bolt11Error ParseHumanReadablePart(string hrp, out Bolt11Network network, out long? amountMsat)
    {
        amountMsat = null;
        var rest = hrp.AsSpan(2);
        var amountStart = rest.IndexOfAnyInRange('0', '9');
        if (amountStart < 0) amountStart = rest.Length;
        if (!Bolt11Networks.TryParse(rest[..amountStart], out network)) return Bolt11Error.UnknownNetwork;
        return Bolt11Amount.TryParse(rest[amountStart..], out amountMsat) ? Bolt11Error.None : Bolt11Error.BadAmount;
    }

    private static Bolt11Error ParseFields(ReadOnlySpan<byte> data, out ParsedFields parsed)
    {
        parsed = new ParsedFields();
        while (!data.IsEmpty)
        {
            if (data.Length < 3) return Bolt11Error.Malformed;
            var type = data[0];
            var length = data[1] * 32 + data[2];
            if (data.Length < 3 + length) return Bolt11Error.Malformed;
            var field = data.Slice(3, length);
            data = data[(3 + length)..];

            switch (type)
            {
                case 1 when length == HashWords:
                    parsed.PaymentHash ??= Bolt11Words.ToBytesTruncated(field);
                    break;
                case 16 when length == HashWords:
                    parsed.PaymentSecret ??= Bolt11Words.ToBytesTruncated(field);
                    break;
                case 23 when length == HashWords:
                    parsed.DescriptionHash ??= Bolt11Words.ToBytesTruncated(field);
                    break;
                case 19 when length == NodeKeyWords:
                    parsed.PayeeNodeKey ??= Bolt11Words.ToBytesTruncated(field);
                    break;
                case 13:
                    var description = Bolt11Words.ToBytesTruncated(field);
                    if (!Utf8.IsValid(description)) return Bolt11Error.Malformed;
                    parsed.Description ??= Encoding.UTF8.GetString(description);
                    break;
                case 6:
                    if (!Bolt11Words.TryToInteger(field, out var expiry)) return Bolt11Error.Malformed;
                    parsed.ExpirySeconds ??= expiry;
                    break;
                case 24:
                    if (!Bolt11Words.TryToInteger(field, out var cltv)) return Bolt11Error.Malformed;
                    parsed.MinFinalCltvExpiry ??= cltv;
                    break;
                case 5:
                    if (RequiresUnknownFeature(field)) return Bolt11Error.UnknownRequiredFeature;
                    break;
            }
        }
        return Bolt11Error.None;
    }

    /// <summary>Feature bits are big-endian: bit 0 is the lowest bit of the last word.</summary>
    private static bool RequiresUnknownFeature(ReadOnlySpan<byte> words)
    {
        for (var bit = 0; bit < words.Length * 5; bit += 2)
        {
            var set = (words[words.Length - 1 - bit / 5] >> (bit % 5) & 1) == 1;
            if (set && !KnownRequiredFeatureBits.Contains(bit)) return true;
        }
        return false;
    }

    /// <summary>
    /// The payee: the <c>n</c> field's key when the signature verifies against it, else the key the signature
    /// recovers. The signature is 64 bytes (r, s) and a recovery id (0–3).
    /// </summary>
    private static bool TryFindPayee(uint256 hash, byte[] signature, byte[]? payeeField, [NotNullWhen(true)] out PubKey? payee)
    {
        payee = null;
        var recoveryId = signature[64];
        var compact = signature[..64];
        if (recoveryId > 3) return false;
        if (payeeField is not null)
        {
            if (!PubKey.TryCreatePubKey(payeeField, out var key) || !ECDSASignature.TryParseFromCompact(compact, out var ecdsa)
                || !key.Verify(hash, ecdsa))
            {
                return false;
            }
            payee = key;
            return true;
        }
        payee = Recover(hash, new CompactSignature(recoveryId, compact));
        return payee is not null;
    }

    private static PubKey? Recover(uint256 hash, CompactSignature signature)
    {
        try
        {
            return PubKey.RecoverCompact(hash, signature);
        }
        catch (InvalidOperationException)
        {
            // NBitcoin's only way of saying that no key recovers (r is not the x of a point, or the result is infinity).
            return null;
        }
    }

    /// <summary>The fields the decoder keeps, as read; null where the invoice has none.</summary>
    private sealed class ParsedFields
    {
        public byte[]? PaymentHash { get; set; }
        public byte[]? PaymentSecret { get; set; }
        public byte[]? DescriptionHash { get; set; }
        public byte[]? PayeeNodeKey { get; set; }
        public string? Description { get; set; }
        public long? ExpirySeconds { get; set; }
        public long? MinFinalCltvExpiry { get; set; }
    }
}
