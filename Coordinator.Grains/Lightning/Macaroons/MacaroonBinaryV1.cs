using System.Globalization;

namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// libmacaroons' binary format V1, what pymacaroons 0.13 writes by default: packets of four lowercase hex digits giving
/// the packet's whole length, then <c>key value\n</c>. The packets are <c>location</c>, <c>identifier</c>, a <c>cid</c>
/// per caveat, and the raw 32-byte <c>signature</c>, in that order. Read only: the coordinator writes V2.
/// </summary>
internal static class MacaroonBinaryV1
{
    private const int LengthDigits = 4;

    /// <summary>The macaroon in <paramref name="data"/>, or null if it is not exactly one well-formed V1 macaroon with first-party caveats only.</summary>
    public static Macaroon? Read(ReadOnlySpan<byte> data)
    {
        if (!TryReadPacket(ref data, "location"u8, out var locationBytes) || Macaroon.DecodeCaveat(locationBytes) is not { } location) return null;
        if (!TryReadPacket(ref data, "identifier"u8, out var identifier)) return null;
        var caveats = new List<string>();
        while (TryReadPacket(ref data, "cid"u8, out var caveatBytes))
        {
            if (Macaroon.DecodeCaveat(caveatBytes) is not { } caveat) return null;
            caveats.Add(caveat);
        }
        // A vid or cl packet (a third-party caveat) stops the caveats short of the signature, and the read fails here.
        if (!TryReadPacket(ref data, "signature"u8, out var signature) || signature.Length != Macaroon.SignatureLength || !data.IsEmpty) return null;
        return new Macaroon(location, identifier, caveats, signature);
    }

    /// <summary>Reads the next packet if it is a <paramref name="key"/> packet; leaves <paramref name="data"/> as it was if it is not.</summary>
    private static bool TryReadPacket(ref ReadOnlySpan<byte> data, ReadOnlySpan<byte> key, out byte[] value)
    {
        value = [];
        if (data.Length < LengthDigits || !int.TryParse(data[..LengthDigits], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var length)) return false;
        // length covers the digits, the key, the space, the value and the newline.
        if (length < LengthDigits + key.Length + 2 || length > data.Length) return false;
        var packet = data[LengthDigits..length];
        if (!packet.StartsWith(key) || packet[key.Length] != (byte)' ' || packet[^1] != (byte)'\n') return false;
        value = packet[(key.Length + 1)..^1].ToArray();
        data = data[length..];
        return true;
    }
}
