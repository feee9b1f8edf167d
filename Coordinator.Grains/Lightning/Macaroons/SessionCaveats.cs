using System.Globalization;

namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// The first-party caveats of a session macaroon and their predicates. <c>session_id = &lt;id&gt;</c> binds the token to
/// one session; <c>expires = &lt;time&gt;</c> bounds its life, as Unix seconds or ISO-8601 UTC
/// (<c>2030-01-02T03:04:05Z</c>). A holder may append more of these to narrow a token (an earlier expiry): every caveat
/// must hold, and a caveat of any other kind fails the check.
/// </summary>
internal static class SessionCaveats
{
    private const string SessionIdName = "session_id";
    private const string ExpiresName = "expires";
    private const string Separator = " = ";

    private static readonly long MaxUnixSeconds = DateTimeOffset.MaxValue.ToUnixTimeSeconds();

    public static string SessionId(string sessionId) => SessionIdName + Separator + sessionId;

    public static string Expires(DateTimeOffset expiresAt) =>
        ExpiresName + Separator + expiresAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>Whether <paramref name="caveats"/> all hold for <paramref name="sessionId"/> at <paramref name="now"/>, and include both kinds; if not, the first reason.</summary>
    public static MacaroonCheck Check(IReadOnlyList<string> caveats, string sessionId, DateTimeOffset now)
    {
        bool boundToSession = false, bounded = false;
        foreach (var caveat in caveats)
        {
            var separator = caveat.IndexOf(Separator, StringComparison.Ordinal);
            if (separator <= 0) return MacaroonCheck.UnknownCaveat;
            var value = caveat[(separator + Separator.Length)..];
            switch (caveat[..separator])
            {
                case SessionIdName:
                    if (!string.Equals(value, sessionId, StringComparison.Ordinal)) return MacaroonCheck.WrongSession;
                    boundToSession = true;
                    break;
                case ExpiresName:
                    if (ParseTime(value) is not { } expiresAt) return MacaroonCheck.UnknownCaveat;
                    if (expiresAt <= now) return MacaroonCheck.Expired;
                    bounded = true;
                    break;
                default:
                    return MacaroonCheck.UnknownCaveat;
            }
        }
        return boundToSession && bounded ? MacaroonCheck.Valid : MacaroonCheck.MissingCaveat;
    }

    /// <summary>Unix seconds (digits only), or ISO-8601 in UTC with a <c>Z</c>; null for anything else.</summary>
    private static DateTimeOffset? ParseTime(string value)
    {
        if (value.Length > 0 && value.All(char.IsAsciiDigit))
        {
            return long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds <= MaxUnixSeconds
                ? DateTimeOffset.FromUnixTimeSeconds(seconds)
                : null;
        }
        return DateTimeOffset.TryParseExact(value, "yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var parsed) ? parsed : null;
    }
}
