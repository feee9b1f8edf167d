using System.Globalization;

namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>What <see cref="Bolt11RefundCheck.Check"/> found.</summary>
/// <param name="Error"><see cref="Bolt11Error.None"/> when the invoice may be paid.</param>
/// <param name="Message">English text for the client, naming the amounts or networks involved.</param>
/// <param name="Invoice">The decoded invoice, when it decoded (also when it is refused for its amount, network or expiry).</param>
public sealed record Bolt11RefundCheckResult(Bolt11Error Error, string Message, Bolt11Invoice? Invoice)
{
    /// <summary>Whether the invoice may be paid as the refund.</summary>
    public bool IsOk => Error == Bolt11Error.None;
}

/// <summary>
/// Whether a client's invoice may receive a refund: a valid BOLT11 invoice, on the network the node pays on, for
/// exactly the refund owed, not expired. An invoice without an amount is refused, because paying one lets the payee
/// name the amount. Every refusal is a 400 with the result's message.
/// </summary>
public static class Bolt11RefundCheck
{
    /// <summary>Checks an invoice sent to claim a refund.</summary>
    /// <param name="text">The invoice as the client sent it; anything at all.</param>
    /// <param name="expectedSats">The refund owed, in satoshis; positive (no refund owed is the caller's 409).</param>
    /// <param name="expectedNetwork">The network the node pays on.</param>
    /// <param name="now">The time to judge expiry by.</param>
    public static Bolt11RefundCheckResult Check(string? text, long expectedSats, Bolt11Network expectedNetwork, DateTimeOffset now)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(expectedSats);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(expectedSats, Bolt11Amount.MaxMsat / 1000);
        if (!Bolt11Decoder.TryDecode(text, out var invoice, out var error)) return new(error, error.Message(), null);

        if (invoice.Network != expectedNetwork)
        {
            return Refuse(Bolt11Error.WrongNetwork, invoice,
                $"the invoice is for {Describe(invoice.Network)}; this node pays on {Describe(expectedNetwork)}: make the invoice on that network");
        }
        if (invoice.AmountMsat is not { } amountMsat)
        {
            return Refuse(Bolt11Error.NoAmount, invoice,
                $"the invoice has no amount: make one for exactly {Sats(expectedSats)}, the refund owed");
        }
        if (amountMsat != expectedSats * 1000)
        {
            return Refuse(Bolt11Error.WrongAmount, invoice,
                $"the invoice is for {Amount(amountMsat)}; the refund owed is exactly {Sats(expectedSats)}: make an invoice for that amount");
        }
        if (now >= invoice.ExpiresAt)
        {
            return Refuse(Bolt11Error.Expired, invoice,
                $"the invoice expired at {invoice.ExpiresAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)}: make a new one");
        }
        return new(Bolt11Error.None, Bolt11Error.None.Message(), invoice);
    }

    private static Bolt11RefundCheckResult Refuse(Bolt11Error error, Bolt11Invoice invoice, string message) => new(error, message, invoice);

    private static string Describe(Bolt11Network network) =>
        $"{network.ToString().ToLowerInvariant()} (ln{network.Prefix()})";

    private static string Sats(long sats) => sats.ToString("N0", CultureInfo.InvariantCulture) + (sats == 1 ? " sat" : " sats");

    private static string Amount(long msat) =>
        msat % 1000 == 0 ? Sats(msat / 1000) : msat.ToString("N0", CultureInfo.InvariantCulture) + " millisatoshis";
}
