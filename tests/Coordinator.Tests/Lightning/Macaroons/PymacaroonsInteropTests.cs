using System.Security.Cryptography;
using Coordinator.Grains.Lightning.Macaroons;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Macaroons;

/// <summary>The session macaroons agree with Debian's python3-pymacaroons 0.13, in both directions.</summary>
public sealed class PymacaroonsInteropTests
{
    private static readonly DateTimeOffset Start = new(2030, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public async Task MintedHere_VerifiesInPymacaroons_ForItsSessionAndTimeOnly()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var (macaroons, keys) = database.NewSilo(new ManualTimeProvider(Start));
        var token = await macaroons.MintAsync("session-42", Start.AddHours(24));
        var key = await keys.ActiveAsync();

        var verdict = await Pymacaroons.VerifyAsync(token, key.Key, "session-42", Start);
        Assert.Matches($"^ok {key.KeyId}:[0-9a-f]{{32}} session_id = session-42\\|expires = 2030-01-03T03:04:05Z$", verdict);
        Assert.StartsWith("bad:", await Pymacaroons.VerifyAsync(token, key.Key, "session-43", Start), StringComparison.Ordinal);
        Assert.StartsWith("bad:", await Pymacaroons.VerifyAsync(token, key.Key, "session-42", Start.AddHours(24)), StringComparison.Ordinal);
        Assert.StartsWith("bad:", await Pymacaroons.VerifyAsync(token, RandomNumberGenerator.GetBytes(32), "session-42", Start), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MintedByPymacaroons_WithTheGridKey_VerifiesHere(bool v2)
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var time = new ManualTimeProvider(Start);
        var (macaroons, keys) = database.NewSilo(time);
        var key = await keys.ActiveAsync();

        var token = await Pymacaroons.MintAsync(key.Key, key.KeyId + ":from-python", v2,
            "session_id = py-session", $"expires = {Start.AddHours(1).ToUnixTimeSeconds()}");

        Assert.Equal(v2 ? 'A' : 'M', token[0]); // V2 starts with byte 2 ("Ag…"), V1 with hex digits ("MDAx…")
        Assert.Equal(MacaroonCheck.Valid, await macaroons.VerifyAsync(token, "py-session"));
        Assert.Equal(MacaroonCheck.WrongSession, await macaroons.VerifyAsync(token, "other-session"));
        time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(MacaroonCheck.Expired, await macaroons.VerifyAsync(token, "py-session"));
    }

    [Fact]
    public async Task MintedByPymacaroons_WithAnotherKey_IsRefused()
    {
        await using var database = await MacaroonDatabase.CreateAsync();
        var (macaroons, keys) = database.NewSilo(new ManualTimeProvider(Start));
        var key = await keys.ActiveAsync();

        var token = await Pymacaroons.MintAsync(RandomNumberGenerator.GetBytes(32), key.KeyId + ":from-python", v2: false,
            "session_id = py-session", "expires = 2099-01-01T00:00:00Z");

        Assert.Equal(MacaroonCheck.InvalidSignature, await macaroons.VerifyAsync(token, "py-session"));
    }
}
