using System.Globalization;
using Stripe;

namespace Coordinator.Grains.Billing;

public enum SignatureCheck
{
    Valid,
    Malformed,
    Mismatch,
    Stale,
}

/// <summary>
/// Verifies Stripe's <c>Stripe-Signature</c> header (<c>t=&lt;unix time&gt;,v1=&lt;hex HMAC-SHA256 of "t.payload"&gt;[,v1=…]</c>,
/// keyed with the endpoint secret) with Stripe.net's <see cref="EventUtility.ValidateSignature(string, string, string, long, long)"/>:
/// any one matching <c>v1</c> is enough (Stripe sends several while secrets roll); <c>v0</c> and other schemes are ignored.
/// </summary>
public static class StripeSignature
{
    public static SignatureCheck Verify(string? header, string payload, string secret, DateTimeOffset now, TimeSpan tolerance)
    {
        // Stripe.net answers a missing or garbled header with the same exception as a wrong signature (or a
        // NullReferenceException); the shape is checked here so the caller can say which it was.
        if (!TryReadTimestamp(header, out var timestamp)) return SignatureCheck.Malformed;
        var toleranceSeconds = (long)tolerance.TotalSeconds;
        if (Passes(header!, payload, secret, toleranceSeconds, now.ToUnixTimeSeconds())) return SignatureCheck.Valid;
        // Stripe.net checks the signature before the age and names the failure only in prose: a signature that passes
        // as of its own timestamp was right but too old.
        return Passes(header!, payload, secret, toleranceSeconds, timestamp) ? SignatureCheck.Stale : SignatureCheck.Mismatch;
    }

    /// <summary>A header as Stripe would send it, for tests and tools.</summary>
    public static string Sign(string payload, string secret, DateTimeOffset at) =>
        EventUtility.GenerateSignatureHeader(payload, secret, at.ToUnixTimeSeconds());

    private static bool Passes(string header, string payload, string secret, long toleranceSeconds, long at)
    {
        try
        {
            EventUtility.ValidateSignature(payload, header, secret, toleranceSeconds, at);
            return true;
        }
        catch (StripeException)
        {
            return false;
        }
    }

    /// <summary>
    /// Whether Stripe.net can read the header, as it reads it: every item <c>key=value</c>, the first <c>t</c> a 32-bit
    /// unix time, and at least one <c>v1</c> that is a hex SHA-256.
    /// </summary>
    private static bool TryReadTimestamp(string? header, out long timestamp)
    {
        timestamp = 0;
        if (string.IsNullOrWhiteSpace(header)) return false;
        string? time = null;
        var anySignature = false;
        foreach (var item in header.Trim().Split(','))
        {
            var parts = item.Trim().Split('=', 2);
            if (parts.Length != 2) return false;
            if (parts[0] == "t") time ??= parts[1];
            else if (parts[0] == "v1" && parts[1].Length == 64 && parts[1].All(char.IsAsciiHexDigit)) anySignature = true;
        }
        if (!anySignature || !int.TryParse(time, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)) return false;
        timestamp = seconds;
        return true;
    }
}
