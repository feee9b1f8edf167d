namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// What checking a session's macaroon found. Only <see cref="Valid"/> authorises a request; every other value is a bad
/// macaroon (401). The values say why, for logs and tests, and come in the order the checks run: a token whose signature
/// fails is <see cref="InvalidSignature"/> whatever its caveats say, since nothing it says can be believed.
/// </summary>
public enum MacaroonCheck
{
    /// <summary>Signed with the grid's key, for this session, not expired, and nothing else asked.</summary>
    Valid,

    /// <summary>Not a macaroon: missing, empty, too long, not base64, a malformed packet, a third-party caveat, or an identifier the coordinator never makes.</summary>
    Malformed,

    /// <summary>Not signed with the key its identifier names (forged or tampered with: a caveat changed, removed or appended without the key), or that key is unknown.</summary>
    InvalidSignature,

    /// <summary>A caveat the coordinator does not know, or one it knows with a value it cannot read: a caveat that cannot be checked is not met.</summary>
    UnknownCaveat,

    /// <summary>Genuine, but for another session.</summary>
    WrongSession,

    /// <summary>Genuine, but past its <c>expires</c> caveat.</summary>
    Expired,

    /// <summary>Genuine, but without a <c>session_id</c> or an <c>expires</c> caveat: every session macaroon has both.</summary>
    MissingCaveat,
}
