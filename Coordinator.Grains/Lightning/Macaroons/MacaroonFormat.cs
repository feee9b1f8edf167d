using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;

namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// A macaroon as text: libmacaroons' binary format, base64url without padding. Written in format V2 (what libmacaroons
/// and pymacaroons write when asked for V2; pymacaroons 0.13 reads it); read in V2 and in V1, which is what pymacaroons
/// 0.13 writes by default. Reading never throws: whatever is not a well-formed macaroon of bounded size is refused.
/// </summary>
public static class MacaroonFormat
{
    /// <summary>
    /// The longest token read, in characters. A session macaroon is about 200; the bound keeps a hostile header from
    /// costing more than a few microseconds of parsing and hashing.
    /// </summary>
    public const int MaxTokenLength = 4096;

    /// <summary>The macaroon in format V2, base64url without padding.</summary>
    public static string Serialize(Macaroon macaroon) => Base64Url.EncodeToString(MacaroonBinaryV2.Write(macaroon));

    /// <summary>
    /// Reads a macaroon in format V2 or V1, in base64url or standard base64, padded or not. False for anything else: empty,
    /// longer than <see cref="MaxTokenLength"/>, not base64, a malformed packet, a third-party caveat, a caveat that is
    /// not UTF-8, trailing bytes.
    /// </summary>
    public static bool TryDeserialize(string? token, [NotNullWhen(true)] out Macaroon? macaroon)
    {
        macaroon = null;
        if (string.IsNullOrEmpty(token) || token.Length > MaxTokenLength) return false;
        if (!TryDecodeBase64(token, out var bytes)) return false;
        macaroon = bytes switch
        {
            [MacaroonBinaryV2.Version, ..] => MacaroonBinaryV2.Read(bytes),
            [var first, ..] when char.IsAsciiHexDigit((char)first) => MacaroonBinaryV1.Read(bytes),
            _ => null,
        };
        return macaroon is not null;
    }

    /// <summary>Either alphabet (libmacaroons' V1 writers used the standard one), with or without padding; nothing else, not even whitespace.</summary>
    private static bool TryDecodeBase64(string token, out byte[] bytes)
    {
        bytes = [];
        var unpadded = token.AsSpan().TrimEnd('=');
        if (token.Length - unpadded.Length > 2 || unpadded.Length % 4 == 1) return false;
        Span<char> urlSafe = stackalloc char[unpadded.Length];
        for (var i = 0; i < unpadded.Length; i++)
        {
            var c = unpadded[i];
            urlSafe[i] = c switch
            {
                '+' => '-',
                '/' => '_',
                _ when char.IsAsciiLetterOrDigit(c) || c is '-' or '_' => c,
                _ => '\0',
            };
            if (urlSafe[i] == '\0') return false;
        }
        var decoded = new byte[Base64Url.GetMaxDecodedLength(urlSafe.Length)];
        try
        {
            if (!Base64Url.TryDecodeFromChars(urlSafe, decoded, out var written)) return false;
            bytes = decoded[..written];
            return true;
        }
        catch (FormatException)
        {
            // TryDecodeFromChars answers false only for a short destination; text it cannot decode (a last character
            // with bits set past the data, as in "not-a-macaroon") throws.
            return false;
        }
    }
}
