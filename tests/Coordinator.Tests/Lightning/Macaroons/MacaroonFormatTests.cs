using System.Text;
using Coordinator.Grains.Lightning.Macaroons;

namespace Coordinator.Tests.Lightning.Macaroons;

/// <summary>
/// The macaroon itself, without a database: the signature chain against libmacaroons' published example, the binary
/// formats byte for byte against what pymacaroons 0.13 writes, and a reader that refuses what is not a macaroon.
/// </summary>
public sealed class MacaroonFormatTests
{
    // libmacaroons' README example, whose signatures pymacaroons reproduces.
    private static readonly byte[] ReadmeKey = "this is our super secret key; only we should know it"u8.ToArray();
    private const string ReadmeLocation = "http://mybank/";
    private static readonly byte[] ReadmeIdentifier = "we used our secret key"u8.ToArray();

    // pymacaroons 0.13's Macaroon.serialize() of the README macaroon with its caveat: V1 (its default), then V2.
    private const string ReadmeV1 = "MDAxY2xvY2F0aW9uIGh0dHA6Ly9teWJhbmsvCjAwMjZpZGVudGlmaWVyIHdlIHVzZWQgb3VyIHNlY3JldCBrZXkKMDAxZGNpZCBhY2NvdW50ID0gMzczNTkyODU1OQowMDJmc2lnbmF0dXJlIB7-R2PykNvODB0IR3Nn4R9O7kVqZJM89mLXl3LbuCEoCg";
    private const string ReadmeV2 = "AgEOaHR0cDovL215YmFuay8CFndlIHVzZWQgb3VyIHNlY3JldCBrZXkAAhRhY2NvdW50ID0gMzczNTkyODU1OQAABiAe_kdj8pDbzgwdCEdzZ-EfTu5FamSTPPZi15dy27ghKA";

    private static Macaroon Readme() => Macaroon.Mint(ReadmeKey, ReadmeLocation, ReadmeIdentifier).AddFirstPartyCaveat("account = 3735928559");

    [Fact]
    public void Signatures_AreLibmacaroonsReadmeExample()
    {
        var bare = Macaroon.Mint(ReadmeKey, ReadmeLocation, ReadmeIdentifier);
        Assert.Equal("e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f", Convert.ToHexStringLower(bare.Signature));
        Assert.Equal("1efe4763f290dbce0c1d08477367e11f4eee456a64933cf662d79772dbb82128", Convert.ToHexStringLower(Readme().Signature));
    }

    [Fact]
    public void Serialize_WritesV2_ByteForByteAsPymacaroons()
    {
        Assert.Equal(ReadmeV2, MacaroonFormat.Serialize(Readme()));
    }

    [Theory]
    [InlineData(ReadmeV1)]
    [InlineData(ReadmeV2)]
    public void Deserialize_ReadsPymacaroonsV1AndV2(string token)
    {
        Assert.True(MacaroonFormat.TryDeserialize(token, out var macaroon));
        Assert.Equal(ReadmeLocation, macaroon.Location);
        Assert.Equal(ReadmeIdentifier, macaroon.Identifier.ToArray());
        Assert.Equal(["account = 3735928559"], macaroon.Caveats);
        Assert.True(macaroon.IsSignedWith(ReadmeKey));
        Assert.False(macaroon.IsSignedWith("another key"u8));
    }

    [Fact]
    public void Deserialize_AcceptsStandardBase64AndPadding()
    {
        var standard = Convert.ToBase64String(Convert.FromBase64String(ReadmeV2.Replace('-', '+').Replace('_', '/') + "=="));
        Assert.Contains("=", standard, StringComparison.Ordinal);
        Assert.True(MacaroonFormat.TryDeserialize(standard, out var macaroon));
        Assert.True(macaroon.IsSignedWith(ReadmeKey));
    }

    [Fact]
    public void RoundTrip_KeepsEveryField()
    {
        var minted = Macaroon.Mint("k"u8, "somewhere", [0, 1, 2, 255]).AddFirstPartyCaveat("a = 1").AddFirstPartyCaveat("b = ünïcode");
        Assert.True(MacaroonFormat.TryDeserialize(MacaroonFormat.Serialize(minted), out var read));
        Assert.Equal("somewhere", read.Location);
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, read.Identifier.ToArray());
        Assert.Equal(["a = 1", "b = ünïcode"], read.Caveats);
        Assert.Equal(minted.Signature.ToArray(), read.Signature.ToArray());
        Assert.True(read.IsSignedWith("k"u8));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("garbage!")]
    [InlineData("bm90IGEgbWFjYXJvb24")] // "not a macaroon"
    [InlineData("A")] // no whole byte
    [InlineData("AgEO aHR0")] // whitespace
    [InlineData("Ag")] // the V2 version byte alone
    [InlineData("MDAwMA")] // "0000": a V1 packet too short for its key
    public void Deserialize_RefusesWhatIsNotAMacaroon(string? token)
    {
        Assert.False(MacaroonFormat.TryDeserialize(token, out var macaroon));
        Assert.Null(macaroon);
    }

    [Fact]
    public void Deserialize_RefusesEveryTruncationAndTrailingBytes()
    {
        var bytes = Base64UrlDecode(ReadmeV2);
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.False(MacaroonFormat.TryDeserialize(Base64UrlEncode(bytes[..length]), out _), $"{length} of {bytes.Length} bytes read");
        }
        Assert.False(MacaroonFormat.TryDeserialize(Base64UrlEncode([.. bytes, 0]), out _));
        var v1 = Base64UrlDecode(ReadmeV1);
        Assert.False(MacaroonFormat.TryDeserialize(Base64UrlEncode(v1[..^1]), out _));
        Assert.False(MacaroonFormat.TryDeserialize(Base64UrlEncode([.. v1, (byte)'0']), out _));
    }

    [Fact]
    public void Deserialize_RefusesTokensOverTheBound()
    {
        var minted = Macaroon.Mint("k"u8, "l", "id"u8);
        while (MacaroonFormat.Serialize(minted).Length <= MacaroonFormat.MaxTokenLength) minted = minted.AddFirstPartyCaveat(new string('x', 200));
        var huge = MacaroonFormat.Serialize(minted);
        Assert.False(MacaroonFormat.TryDeserialize(huge, out _));
        Assert.False(MacaroonFormat.TryDeserialize(new string('A', 1_000_000), out _));
    }

    [Fact]
    public void Deserialize_RefusesThirdPartyCaveats()
    {
        // A V2 caveat section with a location and a verification id, as pymacaroons writes a third-party caveat.
        var bytes = new List<byte> { 2, 1, 1, (byte)'l', 2, 2, (byte)'i', (byte)'d', 0, 1, 1, (byte)'x', 2, 1, (byte)'c', 4, 1, (byte)'v', 0, 0, 6, 32 };
        bytes.AddRange(new byte[32]);
        Assert.False(MacaroonFormat.TryDeserialize(Base64UrlEncode([.. bytes]), out _));
        // The same with the third-party caveat taken out reads, which shows it was the caveat that was refused.
        var firstPartyOnly = new List<byte> { 2, 1, 1, (byte)'l', 2, 2, (byte)'i', (byte)'d', 0, 0, 6, 32 };
        firstPartyOnly.AddRange(new byte[32]);
        Assert.True(MacaroonFormat.TryDeserialize(Base64UrlEncode([.. firstPartyOnly]), out _));
    }

    [Fact]
    public void Deserialize_RefusesACaveatThatIsNotUtf8()
    {
        var bytes = new List<byte> { 2, 2, 2, (byte)'i', (byte)'d', 0, 2, 2, 0xff, 0xfe, 0, 0, 6, 32 };
        bytes.AddRange(new byte[32]);
        Assert.False(MacaroonFormat.TryDeserialize(Base64UrlEncode([.. bytes]), out _));
        bytes[8] = (byte)'o';
        bytes[9] = (byte)'k';
        Assert.True(MacaroonFormat.TryDeserialize(Base64UrlEncode([.. bytes]), out var macaroon));
        Assert.Equal(["ok"], macaroon.Caveats);
        Assert.Equal("", macaroon.Location);
    }

    private static string Base64UrlEncode(byte[] bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);

    private static byte[] Base64UrlDecode(string text) => System.Buffers.Text.Base64Url.DecodeFromChars(text);

    [Fact]
    public void AddingACaveat_LeavesTheOriginalAsItWas()
    {
        var original = Macaroon.Mint("k"u8, "l", Encoding.ASCII.GetBytes("id"));
        var narrowed = original.AddFirstPartyCaveat("a = 1");
        Assert.Empty(original.Caveats);
        Assert.NotEqual(original.Signature.ToArray(), narrowed.Signature.ToArray());
        Assert.True(original.IsSignedWith("k"u8));
        Assert.True(narrowed.IsSignedWith("k"u8));
    }
}
