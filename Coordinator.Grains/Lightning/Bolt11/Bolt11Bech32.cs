using System.Buffers;
using System.Text;
using NBitcoin.DataEncoders;

namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// Bech32 as BOLT11 uses it: BIP-0173 without its 90-character limit, over NBitcoin's encoder. The checks NBitcoin
/// would only report as one <see cref="FormatException"/> are made here first, so that each gets its own
/// <see cref="Bolt11Error"/> and what NBitcoin still refuses is the checksum.
/// </summary>
internal static class Bolt11Bech32
{
    /// <summary>The 32 characters of bech32's data part, in word order.</summary>
    public const string Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

    private const int ChecksumLength = 6;

    private static readonly SearchValues<char> CharsetValues = SearchValues.Create(Charset);

    /// <summary>Splits a bech32 string into its human-readable part (lower case) and data words, checksum verified.</summary>
    public static Bolt11Error Decode(string text, out string humanReadablePart, out byte[] words)
    {
        humanReadablePart = "";
        words = [];
        var hasLower = false;
        var hasUpper = false;
        foreach (var c in text)
        {
            if (c < 33 || c > 126) return Bolt11Error.NotBolt11;
            hasLower |= char.IsAsciiLetterLower(c);
            hasUpper |= char.IsAsciiLetterUpper(c);
        }
        if (hasLower && hasUpper) return Bolt11Error.MixedCase;

        var lower = text.ToLowerInvariant();
        var separator = lower.LastIndexOf('1');
        if (separator < 1 || separator + 1 + ChecksumLength > lower.Length) return Bolt11Error.NotBolt11;
        var hrp = lower[..separator];
        if (!hrp.StartsWith("ln", StringComparison.Ordinal)) return Bolt11Error.NotBolt11;
        if (lower.AsSpan(separator + 1).IndexOfAnyExcept(CharsetValues) >= 0) return Bolt11Error.NotBolt11;

        try
        {
            words = Encoder(hrp).DecodeDataRaw(lower, out var encoding);
            // Bech32m (BIP-0350) has another checksum constant; BOLT11 is plain bech32.
            if (encoding != Bech32EncodingType.BECH32) return Bolt11Error.BadChecksum;
        }
        catch (FormatException)
        {
            return Bolt11Error.BadChecksum;
        }
        humanReadablePart = hrp;
        return Bolt11Error.None;
    }

    /// <summary>The bech32 string of a human-readable part (lower case) and data words, with its checksum.</summary>
    public static string Encode(string humanReadablePart, ReadOnlySpan<byte> words) =>
        Encoder(humanReadablePart).EncodeData(words, Bech32EncodingType.BECH32);

    private static Bech32Encoder Encoder(string humanReadablePart) =>
        new(Encoding.ASCII.GetBytes(humanReadablePart)) { StrictLength = false };
}
