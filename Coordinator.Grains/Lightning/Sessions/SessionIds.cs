using System.Security.Cryptography;

namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>
/// Session and request ids: a prefix and 128 random bits in hex. A session id is all a client needs to read a session,
/// and bearer macaroons are bound to it, so it must not be guessable.
/// </summary>
public static class SessionIds
{
    private const string SessionPrefix = "ses_";
    private const string RequestPrefix = "req_";

    public static string NewSessionId() => SessionPrefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    public static string NewRequestId() => RequestPrefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    /// <summary>Whether <paramref name="id"/> has the shape of a session id, so that anything else is a 404 without a database read.</summary>
    public static bool IsSessionId(string? id) =>
        id is { Length: 36 } && id.StartsWith(SessionPrefix, StringComparison.Ordinal) && !id.AsSpan(SessionPrefix.Length).ContainsAnyExcept(LowerHex);

    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");
}
