using System.Security.Cryptography;
using System.Text;
using Coordinator.Grains.Lightning.Macaroons;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Lightning.Macaroons;

/// <summary>
/// Session macaroons against real PostgreSQL: one root key for the grid, protected at rest; a macaroon minted on one silo
/// checked on another; and everything that is not a genuine, current macaroon of this session refused.
/// </summary>
public sealed class SessionMacaroonsTests
{
    private static readonly DateTimeOffset Start = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public async Task SilosRacingForTheFirstKey_AllGetTheOneThatWon_StoredOnlyProtected()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var protection = database.NewProtection();
        var silos = Enumerable.Range(0, 8).Select(_ => database.NewSilo(TimeProvider.System, protection).Keys).ToList();

        var keys = await Task.WhenAll(silos.Select(keys => keys.ActiveAsync().AsTask()));

        Assert.Single(keys.Select(key => key.KeyId).Distinct());
        Assert.Single(keys.Select(key => Convert.ToHexString(key.Key)).Distinct());
        Assert.Equal(32, keys[0].Key.Length);
        await using var connection = await database.DataSource.OpenConnectionAsync();
        var stored = (await connection.QueryAsync<string>("SELECT root_key FROM lightning_macaroon_keys")).Single();
        var storedBytes = Convert.FromBase64String(stored);
        Assert.False(storedBytes.AsSpan().IndexOf(keys[0].Key) >= 0, "the root key is stored in clear");
        Assert.Equal(keys[0].Key, protection.CreateProtector(MacaroonRootKeys.ProtectorPurpose).Unprotect(storedBytes));
    }

    [Fact]
    public async Task Minted_IsValidOnAnotherSilo_ForItsSessionOnly()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var time = new ManualTimeProvider(Start);
        var (first, _) = database.NewSilo(time);
        var (second, _) = database.NewSilo(time);

        var token = await first.MintAsync("session-1", Start.AddHours(24));

        Assert.Equal(MacaroonCheck.Valid, await second.VerifyAsync(token, "session-1"));
        Assert.Equal(MacaroonCheck.Valid, await first.VerifyAsync(token, "session-1"));
        Assert.Equal(MacaroonCheck.WrongSession, await second.VerifyAsync(token, "session-2"));
        Assert.NotEqual(token, await first.MintAsync("session-1", Start.AddHours(24)));
    }

    [Fact]
    public async Task Expires_AtItsExpiryCaveat()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var time = new ManualTimeProvider(Start);
        var (macaroons, _) = database.NewSilo(time);
        var token = await macaroons.MintAsync("s", Start.AddHours(1));

        time.Advance(TimeSpan.FromMinutes(59) + TimeSpan.FromSeconds(59));
        Assert.Equal(MacaroonCheck.Valid, await macaroons.VerifyAsync(token, "s"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(MacaroonCheck.Expired, await macaroons.VerifyAsync(token, "s"));
    }

    [Fact]
    public async Task Forgeries_AreRefused()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var time = new ManualTimeProvider(Start);
        var (macaroons, keys) = database.NewSilo(time);
        var token = await macaroons.MintAsync("s1", Start.AddHours(24));
        Assert.True(MacaroonFormat.TryDeserialize(token, out var genuine));
        var identifier = genuine.Identifier.ToArray();
        var signature = genuine.Signature.ToArray();
        string Forge(IReadOnlyList<string> caveats, byte[]? withSignature = null) =>
            MacaroonFormat.Serialize(new Macaroon(genuine.Location, identifier, caveats, withSignature ?? signature));

        // The caveats changed, removed or added, with the signature as it was.
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(Forge(["session_id = s2", genuine.Caveats[1]]), "s2"));
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(Forge(["session_id = s1", "expires = 2099-01-01T00:00:00Z"]), "s1"));
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(Forge([genuine.Caveats[0]]), "s1"));
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(Forge([]), "s1"));
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(Forge([.. genuine.Caveats, "session_id = s2"]), "s2"));
        // One bit of the signature flipped.
        var flipped = (byte[])signature.Clone();
        flipped[7] ^= 0x10;
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(Forge(genuine.Caveats, flipped), "s1"));
        // Minted with another root key under the grid key's id.
        var otherKey = Macaroon.Mint(RandomNumberGenerator.GetBytes(32), SessionMacaroons.Location, identifier)
            .AddFirstPartyCaveat("session_id = s1").AddFirstPartyCaveat("expires = 2099-01-01T00:00:00Z");
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(MacaroonFormat.Serialize(otherKey), "s1"));
        // A key id of the right form that the grid never had.
        var unknownKeyId = Macaroon.Mint((await keys.ActiveAsync()).Key, SessionMacaroons.Location, "0123456789abcdef:00"u8)
            .AddFirstPartyCaveat("session_id = s1").AddFirstPartyCaveat("expires = 2099-01-01T00:00:00Z");
        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(MacaroonFormat.Serialize(unknownKeyId), "s1"));

        // The genuine one still passes: the refusals above are the forgeries'.
        Assert.Equal(MacaroonCheck.Valid, await macaroons.VerifyAsync(token, "s1"));
    }

    [Fact]
    public async Task CaveatsAHolderAppends_NarrowTheToken_AndOnlyKnownOnesPass()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var time = new ManualTimeProvider(Start);
        var (macaroons, _) = database.NewSilo(time);
        Assert.True(MacaroonFormat.TryDeserialize(await macaroons.MintAsync("s1", Start.AddHours(24)), out var genuine));
        string Append(string caveat) => MacaroonFormat.Serialize(genuine.AddFirstPartyCaveat(caveat));

        // Appending is what a holder may do without the key; the signature holds, and every caveat must still be met.
        var earlier = Append($"expires = {Start.AddMinutes(30).ToUnixTimeSeconds()}");
        Assert.Equal(MacaroonCheck.Valid, await macaroons.VerifyAsync(earlier, "s1"));
        Assert.Equal(MacaroonCheck.WrongSession, await macaroons.VerifyAsync(Append("session_id = s2"), "s1"));
        Assert.Equal(MacaroonCheck.UnknownCaveat, await macaroons.VerifyAsync(Append("admin = true"), "s1"));
        Assert.Equal(MacaroonCheck.UnknownCaveat, await macaroons.VerifyAsync(Append("expires = tomorrow"), "s1"));
        Assert.Equal(MacaroonCheck.UnknownCaveat, await macaroons.VerifyAsync(Append("expires = 2030-01-02T04:04:05"), "s1")); // no Z: not UTC
        Assert.Equal(MacaroonCheck.UnknownCaveat, await macaroons.VerifyAsync(Append("expires = 99999999999999999999"), "s1"));
        Assert.Equal(MacaroonCheck.UnknownCaveat, await macaroons.VerifyAsync(Append("session_id=s1"), "s1"));

        time.Advance(TimeSpan.FromMinutes(30));
        Assert.Equal(MacaroonCheck.Expired, await macaroons.VerifyAsync(earlier, "s1"));
        Assert.Equal(MacaroonCheck.Valid, await macaroons.VerifyAsync(MacaroonFormat.Serialize(genuine), "s1"));
    }

    [Fact]
    public async Task AMacaroonWithoutBothCaveats_IsRefused()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var time = new ManualTimeProvider(Start);
        var (macaroons, keys) = database.NewSilo(time);
        var key = await keys.ActiveAsync();
        var identifier = Encoding.ASCII.GetBytes(key.KeyId + ":nonce");
        var bare = Macaroon.Mint(key.Key, SessionMacaroons.Location, identifier);

        Assert.Equal(MacaroonCheck.MissingCaveat, await macaroons.VerifyAsync(MacaroonFormat.Serialize(bare), "s1"));
        Assert.Equal(MacaroonCheck.MissingCaveat, await macaroons.VerifyAsync(MacaroonFormat.Serialize(bare.AddFirstPartyCaveat("session_id = s1")), "s1"));
        Assert.Equal(MacaroonCheck.MissingCaveat, await macaroons.VerifyAsync(MacaroonFormat.Serialize(bare.AddFirstPartyCaveat("expires = 2099-01-01T00:00:00Z")), "s1"));
        Assert.Equal(MacaroonCheck.Valid, await macaroons.VerifyAsync(
            MacaroonFormat.Serialize(bare.AddFirstPartyCaveat("session_id = s1").AddFirstPartyCaveat("expires = 2099-01-01T00:00:00Z")), "s1"));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Bearer x")]
    [InlineData("not base64 at all!")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    public async Task Garbage_IsMalformed(string? token)
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var (macaroons, _) = database.NewSilo(new ManualTimeProvider(Start));
        Assert.Equal(MacaroonCheck.Malformed, await macaroons.VerifyAsync(token, "s1"));
    }

    [Fact]
    public async Task HugeTokensAndForeignIdentifiers_AreMalformed()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var (macaroons, keys) = database.NewSilo(new ManualTimeProvider(Start));
        var token = await macaroons.MintAsync("s1", Start.AddHours(1));
        Assert.True(MacaroonFormat.TryDeserialize(token, out var genuine));

        var padded = genuine;
        while (MacaroonFormat.Serialize(padded).Length <= MacaroonFormat.MaxTokenLength) padded = padded.AddFirstPartyCaveat("session_id = s1");
        Assert.Equal(MacaroonCheck.Malformed, await macaroons.VerifyAsync(MacaroonFormat.Serialize(padded), "s1"));
        Assert.Equal(MacaroonCheck.Malformed, await macaroons.VerifyAsync(new string('A', 100_000), "s1"));

        // Signed with the grid's key, but with an identifier the coordinator never makes.
        var foreign = Macaroon.Mint((await keys.ActiveAsync()).Key, SessionMacaroons.Location, "we used our secret key"u8)
            .AddFirstPartyCaveat("session_id = s1").AddFirstPartyCaveat("expires = 2099-01-01T00:00:00Z");
        Assert.Equal(MacaroonCheck.Malformed, await macaroons.VerifyAsync(MacaroonFormat.Serialize(foreign), "s1"));
    }
}
