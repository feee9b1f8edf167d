using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// A macaroon with first-party caveats, computed exactly as libmacaroons and pymacaroons compute theirs, so that a token
/// made here verifies there and the other way round. It is a bearer token whose signature is an HMAC-SHA256 chain:
/// <c>sig0 = HMAC(derive(rootKey), identifier)</c> and <c>sig_i = HMAC(sig_{i-1}, caveat_i)</c>, with
/// <c>derive(k) = HMAC("macaroons-key-generator", k)</c>. Anyone holding one can add a caveat (narrow it) without the
/// key, but nobody can remove or change one: that needs an earlier signature in the chain, which only the root key gives.
/// Third-party caveats are not supported: the coordinator never makes them, and a token with one does not parse.
/// </summary>
public sealed class Macaroon
{
    /// <summary>Bytes in a signature (HMAC-SHA256).</summary>
    public const int SignatureLength = 32;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly byte[] _identifier;
    private readonly byte[] _signature;

    internal Macaroon(string location, byte[] identifier, IReadOnlyList<string> caveats, byte[] signature)
    {
        Location = location;
        _identifier = identifier;
        Caveats = caveats;
        _signature = signature;
    }

    /// <summary>A hint of where the macaroon is used; not covered by the signature (as in libmacaroons).</summary>
    public string Location { get; }

    /// <summary>The identifier the first signature is computed over: it tells the verifier which root key to use.</summary>
    public ReadOnlySpan<byte> Identifier => _identifier;

    /// <summary>The first-party caveats (predicates such as <c>session_id = s1</c>), in the order they were added.</summary>
    public IReadOnlyList<string> Caveats { get; }

    /// <summary>The last signature of the chain.</summary>
    public ReadOnlySpan<byte> Signature => _signature;

    /// <summary>A new macaroon without caveats, signed with <paramref name="rootKey"/>.</summary>
    public static Macaroon Mint(ReadOnlySpan<byte> rootKey, string location, ReadOnlySpan<byte> identifier) =>
        new(location, identifier.ToArray(), [], InitialSignature(rootKey, identifier));

    /// <summary>This macaroon narrowed by one more first-party caveat; the signature is chained from this one's, no key is needed.</summary>
    public Macaroon AddFirstPartyCaveat(string predicate) =>
        new(Location, _identifier, [.. Caveats, predicate], Chain(_signature, StrictUtf8.GetBytes(predicate)));

    /// <summary>
    /// Whether this macaroon's signature is the one <paramref name="rootKey"/> gives for its identifier and caveats.
    /// Compared in constant time, so a forger learns nothing from how long a wrong guess takes.
    /// </summary>
    public bool IsSignedWith(ReadOnlySpan<byte> rootKey)
    {
        var expected = InitialSignature(rootKey, _identifier);
        foreach (var caveat in Caveats) expected = Chain(expected, StrictUtf8.GetBytes(caveat));
        return CryptographicOperations.FixedTimeEquals(expected, _signature);
    }

    /// <summary>Decodes a caveat's bytes, which must be UTF-8 (pymacaroons requires it of first-party caveats); null if they are not.</summary>
    internal static string? DecodeCaveat(ReadOnlySpan<byte> caveat)
    {
        try
        {
            return StrictUtf8.GetString(caveat);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    internal static byte[] EncodeCaveat(string caveat) => StrictUtf8.GetBytes(caveat);

    private static byte[] InitialSignature(ReadOnlySpan<byte> rootKey, ReadOnlySpan<byte> identifier)
    {
        Span<byte> derivedKey = stackalloc byte[SignatureLength];
        HMACSHA256.HashData("macaroons-key-generator"u8, rootKey, derivedKey);
        var signature = HMACSHA256.HashData(derivedKey, identifier);
        CryptographicOperations.ZeroMemory(derivedKey);
        return signature;
    }

    private static byte[] Chain(ReadOnlySpan<byte> signature, ReadOnlySpan<byte> caveat) => HMACSHA256.HashData(signature, caveat);
}
