using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Grains.Billing;

public enum SignatureCheck
{
    Valid,
    Malformed,
    Mismatch,
    Stale,
}

/// <summary>
/// Verifies Stripe's <c>Stripe-Signature</c> header: <c>t=&lt;unix time&gt;,v1=&lt;hex HMAC-SHA256 of "t.payload"&gt;[,v1=…]</c>,
/// keyed with the endpoint secret. Any one matching <c>v1</c> is enough (Stripe sends several while secrets roll);
/// <c>v0</c> and other schemes are ignored.
/// </summary>
public static class StripeSignature
{
    public static SignatureCheck Verify(string? header, string payload, string secret, DateTimeOffset now, TimeSpan tolerance)
    {
        if (string.IsNullOrEmpty(header)) return SignatureCheck.Malformed;
        long? timestamp = null;
        var signatures = new List<byte[]>();
        foreach (var part in header.Split(','))
        {
            var equals = part.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0) continue;
            var (key, value) = (part[..equals].Trim(), part[(equals + 1)..].Trim());
            if (key == "t" && long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var t)) timestamp = t;
            else if (key == "v1" && value.Length == 64)
            {
                try
                {
                    signatures.Add(Convert.FromHexString(value));
                }
                catch (FormatException)
                {
                }
            }
        }
        if (timestamp is null || signatures.Count == 0) return SignatureCheck.Malformed;

        var expected = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{timestamp}.{payload}"));
        if (!signatures.Any(s => CryptographicOperations.FixedTimeEquals(s, expected))) return SignatureCheck.Mismatch;
        var age = now - DateTimeOffset.FromUnixTimeSeconds(timestamp.Value);
        return age.Duration() > tolerance ? SignatureCheck.Stale : SignatureCheck.Valid;
    }

    /// <summary>A header as Stripe would send it, for tests and tools.</summary>
    public static string Sign(string payload, string secret, DateTimeOffset at)
    {
        var timestamp = at.ToUnixTimeSeconds();
        var signature = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{timestamp}.{payload}"));
        return $"t={timestamp},v1={Convert.ToHexStringLower(signature)}";
    }
}
