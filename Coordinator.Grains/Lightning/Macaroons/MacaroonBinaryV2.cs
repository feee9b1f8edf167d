namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>
/// libmacaroons' binary format V2 (its doc/format.txt): a version byte 2; a header section (optional location, then the
/// identifier); one section per caveat (its identifier); an empty section; the signature. A section is fields, each a
/// varint type, a varint length and the bytes, in increasing type order, ended by a zero byte (end of section).
/// </summary>
internal static class MacaroonBinaryV2
{
    public const byte Version = 2;

    private const int EndOfSection = 0;
    private const int LocationField = 1;
    private const int IdentifierField = 2;
    private const int SignatureField = 6;

    public static byte[] Write(Macaroon macaroon)
    {
        var output = new List<byte>(256) { Version };
        if (macaroon.Location.Length > 0) WriteField(output, LocationField, Macaroon.EncodeCaveat(macaroon.Location));
        WriteField(output, IdentifierField, macaroon.Identifier);
        output.Add(EndOfSection);
        foreach (var caveat in macaroon.Caveats)
        {
            WriteField(output, IdentifierField, Macaroon.EncodeCaveat(caveat));
            output.Add(EndOfSection);
        }
        output.Add(EndOfSection);
        WriteField(output, SignatureField, macaroon.Signature);
        return [.. output];
    }

    /// <summary>The macaroon in <paramref name="data"/>, or null if it is not exactly one well-formed V2 macaroon with first-party caveats only.</summary>
    public static Macaroon? Read(ReadOnlySpan<byte> data)
    {
        var reader = new FieldReader(data[1..]);
        if (!reader.TryReadSection(out var header) || header.Identifier is not { } identifier) return null;
        var location = header.Location is { } locationBytes ? Macaroon.DecodeCaveat(locationBytes) : "";
        if (location is null) return null;

        var caveats = new List<string>();
        while (true)
        {
            if (!reader.TryReadSection(out var section)) return null;
            if (section.IsEmpty) break;
            // A caveat with a location is a third-party caveat (pymacaroons refuses a location on a first-party one).
            if (section.Location is not null || section.Identifier is not { } caveatBytes) return null;
            if (Macaroon.DecodeCaveat(caveatBytes) is not { } caveat) return null;
            caveats.Add(caveat);
        }

        if (!reader.TryReadField(out var type, out var signature) || type != SignatureField || signature.Length != Macaroon.SignatureLength) return null;
        return reader.AtEnd ? new Macaroon(location, identifier, caveats, signature) : null;
    }

    private static void WriteField(List<byte> output, int type, ReadOnlySpan<byte> value)
    {
        WriteVarint(output, type);
        WriteVarint(output, value.Length);
        output.AddRange(value);
    }

    private static void WriteVarint(List<byte> output, int value)
    {
        var remaining = (uint)value;
        while (remaining >= 0x80)
        {
            output.Add((byte)(remaining | 0x80));
            remaining >>= 7;
        }
        output.Add((byte)remaining);
    }

    /// <summary>A section's fields: a header's, or a caveat's. Any other field (a third-party caveat's verification id) makes the section unreadable.</summary>
    private readonly record struct Section(byte[]? Location, byte[]? Identifier)
    {
        public bool IsEmpty => Location is null && Identifier is null;
    }

    private ref struct FieldReader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _rest = data;

        public readonly bool AtEnd => _rest.IsEmpty;

        public bool TryReadSection(out Section section)
        {
            section = default;
            var previousType = EndOfSection;
            while (true)
            {
                if (!TryReadField(out var type, out var value)) return false;
                if (type == EndOfSection) return true;
                if (type <= previousType) return false;
                previousType = type;
                switch (type)
                {
                    case LocationField: section = section with { Location = value }; break;
                    case IdentifierField: section = section with { Identifier = value }; break;
                    default: return false;
                }
            }
        }

        /// <summary>One field; an end of section is type 0 with no value.</summary>
        public bool TryReadField(out int type, out byte[] value)
        {
            value = [];
            if (!TryReadVarint(out type)) return false;
            if (type == EndOfSection) return true;
            if (!TryReadVarint(out var length) || length > _rest.Length) return false;
            value = _rest[..length].ToArray();
            _rest = _rest[length..];
            return true;
        }

        /// <summary>An unsigned LEB128 of at most four bytes: no field of a token of bounded size is longer than 2^28.</summary>
        private bool TryReadVarint(out int value)
        {
            value = 0;
            for (var i = 0; i < 4 && i < _rest.Length; i++)
            {
                value |= (_rest[i] & 0x7f) << (7 * i);
                if (_rest[i] < 0x80)
                {
                    _rest = _rest[(i + 1)..];
                    return true;
                }
            }
            return false;
        }
    }
}
