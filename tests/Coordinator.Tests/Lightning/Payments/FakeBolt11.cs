using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>
/// The two things a fake Lightning wallet reads from a BOLT11 invoice, its amount (the human-readable part) and its payment
/// hash (the <c>p</c> field), and BOLT11-shaped strings that carry them. What <see cref="Make"/> writes has no signature and
/// no valid checksum: it stands for an invoice in a fake's answers and is not one that a decoder would accept. Reading
/// works on real invoices too, without checking them (as a wallet would before it checks the signature).
/// </summary>
public static class FakeBolt11
{
    private const string Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

    /// <summary>A regtest-shaped invoice for <paramref name="amountSats"/> (in nano-bitcoin: 1 sat is 10n) with <paramref name="paymentHash"/>.</summary>
    public static string Make(long amountSats, string paymentHash)
    {
        var words = new List<int>();
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        for (var shift = 30; shift >= 0; shift -= 5) words.Add((int)((timestamp >> shift) & 31));
        words.AddRange([1, 52 / 32, 52 % 32]);
        words.AddRange(ToWords(Convert.FromHexString(paymentHash)));
        var data = new StringBuilder();
        foreach (var word in words) data.Append(Charset[word]);
        // Six characters where the checksum would be.
        foreach (var b in RandomNumberGenerator.GetBytes(6)) data.Append(Charset[b & 31]);
        return $"lnbcrt{(amountSats * 10).ToString(CultureInfo.InvariantCulture)}n1{data}";
    }

    /// <summary>The amount in millisatoshis, null for an invoice without one (or a string that is not an invoice).</summary>
    public static long? AmountMsat(string invoice)
    {
        var separator = invoice.LastIndexOf('1');
        if (separator < 0 || !invoice.StartsWith("ln", StringComparison.OrdinalIgnoreCase)) return null;
        var human = invoice[2..separator].ToLowerInvariant();
        var network = new[] { "bcrt", "tbs", "bc", "tb", "sb" }.FirstOrDefault(human.StartsWith);
        if (network is null || human.Length == network.Length) return null;
        var amount = human[network.Length..];
        var multiplier = char.IsLetter(amount[^1]) ? amount[^1] : (char?)null;
        if (!long.TryParse(multiplier is null ? amount : amount[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var value)) return null;
        return multiplier switch
        {
            null => value * 100_000_000_000,
            'm' => value * 100_000_000,
            'u' => value * 100_000,
            'n' => value * 100,
            'p' => value / 10,
            _ => null,
        };
    }

    /// <summary>The payment hash in lower-case hex, from the first <c>p</c> field; null when there is none.</summary>
    public static string? PaymentHash(string invoice)
    {
        var separator = invoice.LastIndexOf('1');
        if (separator < 0) return null;
        var words = new List<int>();
        foreach (var c in invoice[(separator + 1)..].ToLowerInvariant())
        {
            var word = Charset.IndexOf(c, StringComparison.Ordinal);
            if (word < 0) return null;
            words.Add(word);
        }
        // The timestamp is the first 7 words; tagged fields follow (type, 10-bit length, data), then the signature and checksum.
        for (var i = 7; i + 3 <= words.Count;)
        {
            var (type, length) = (words[i], words[i + 1] * 32 + words[i + 2]);
            if (i + 3 + length > words.Count) return null;
            if (type == 1 && length == 52) return Convert.ToHexStringLower(FromWords(words.GetRange(i + 3, 52))[..32]);
            i += 3 + length;
        }
        return null;
    }

    private static List<int> ToWords(byte[] bytes)
    {
        var words = new List<int>();
        int accumulator = 0, bits = 0;
        foreach (var b in bytes)
        {
            accumulator = ((accumulator << 8) | b) & 0xffff;
            bits += 8;
            while (bits >= 5)
            {
                bits -= 5;
                words.Add((accumulator >> bits) & 31);
            }
        }
        if (bits > 0) words.Add((accumulator << (5 - bits)) & 31);
        return words;
    }

    private static byte[] FromWords(List<int> words)
    {
        var bytes = new List<byte>();
        int accumulator = 0, bits = 0;
        foreach (var word in words)
        {
            accumulator = ((accumulator << 5) | word) & 0xfff;
            bits += 5;
            if (bits >= 8)
            {
                bits -= 8;
                bytes.Add((byte)((accumulator >> bits) & 0xff));
            }
        }
        return [.. bytes];
    }
}
