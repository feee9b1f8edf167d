using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Grains.Accounts;

/// <summary>Generates API keys and computes the hash under which they are stored.</summary>
public static class ApiKeys
{
    public const string Prefix = "vk_live_";

    /// <summary>How many characters of a key are kept in clear so a person can tell keys apart.</summary>
    public const int VisiblePrefixLength = 12;

    /// <summary>A new key: <c>vk_live_</c> followed by 256 random bits in base64url (43 characters).</summary>
    public static string Generate()
    {
        Span<byte> secret = stackalloc byte[32];
        RandomNumberGenerator.Fill(secret);
        return Prefix + Convert.ToBase64String(secret).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    public static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));

    public static string VisiblePrefix(string key) => key[..Math.Min(VisiblePrefixLength, key.Length)];

    /// <summary>Cheap shape check before any lookup: right prefix and a sane length.</summary>
    public static bool LooksLikeKey(string? key) =>
        key is not null && key.StartsWith(Prefix, StringComparison.Ordinal) && key.Length is > 16 and <= 128;
}
