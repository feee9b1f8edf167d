using System.Security.Cryptography;
using System.Text;

namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// Mints and checks the macaroon an active Lightning session returns: a bearer token for
/// <c>Authorization: Bearer</c> whose caveats bind the session id and an expiry, signed with the grid's root key so that
/// any silo checks what any silo minted. The identifier is <c>&lt;key id&gt;:&lt;nonce&gt;</c>: the key id picks the
/// root key, the random nonce makes every token distinct. The session's own state (active, its 24 h of inactivity) is
/// the session's to check; this checks the token.
/// </summary>
public sealed class SessionMacaroons(MacaroonRootKeys keys, TimeProvider time)
{
    /// <summary>The macaroons' location: a hint only, covered by no signature.</summary>
    public const string Location = "coordinator/lightning/sessions";

    private const char IdentifierSeparator = ':';

    /// <summary>A macaroon for <paramref name="sessionId"/> that expires at <paramref name="expiresAt"/> (to the second, rounded down).</summary>
    public async ValueTask<string> MintAsync(string sessionId, DateTimeOffset expiresAt, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sessionId);
        var key = await keys.ActiveAsync(cancellationToken);
        var identifier = Encoding.ASCII.GetBytes(key.KeyId + IdentifierSeparator + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)));
        var macaroon = Macaroon.Mint(key.Key, Location, identifier)
            .AddFirstPartyCaveat(SessionCaveats.SessionId(sessionId))
            .AddFirstPartyCaveat(SessionCaveats.Expires(expiresAt));
        return MacaroonFormat.Serialize(macaroon);
    }

    /// <summary>
    /// Whether <paramref name="token"/> (the bearer token as sent, without <c>Bearer </c>) authorises a request on
    /// <paramref name="sessionId"/> now. Never throws for a bad token: the answer says what is wrong with it. Reads the
    /// database only the first time this silo meets a key id.
    /// </summary>
    public async ValueTask<MacaroonCheck> VerifyAsync(string? token, string sessionId, CancellationToken cancellationToken = default)
    {
        if (!MacaroonFormat.TryDeserialize(token, out var macaroon) || KeyIdOf(macaroon) is not { } keyId) return MacaroonCheck.Malformed;
        if (await keys.FindAsync(keyId, cancellationToken) is not { } key || !macaroon.IsSignedWith(key.Key)) return MacaroonCheck.InvalidSignature;
        return SessionCaveats.Check(macaroon.Caveats, sessionId, time.GetUtcNow());
    }

    private static string? KeyIdOf(Macaroon macaroon)
    {
        var identifier = macaroon.Identifier;
        var separator = identifier.IndexOf((byte)IdentifierSeparator);
        if (separator < 0) return null;
        var keyId = Encoding.ASCII.GetString(identifier[..separator]);
        return MacaroonRootKeys.IsKeyId(keyId) ? keyId : null;
    }
}
