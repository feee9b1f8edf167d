namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// Conversions between bech32's 5-bit words and bytes or big-endian integers, as BOLT11 uses them: byte data is
/// left-aligned (its last word padded with zero bits), integers are right-aligned.
/// </summary>
internal static class Bolt11Words
{
    /// <summary>The bytes the words spell; a last partial byte is dropped (field data: 52 words are 32 bytes).</summary>
    public static byte[] ToBytesTruncated(ReadOnlySpan<byte> words) => ToBytes(words, keepPartialByte: false);

    /// <summary>The bytes the words spell, the last one padded with zero bits (what the signature covers).</summary>
    public static byte[] ToBytesPadded(ReadOnlySpan<byte> words) => ToBytes(words, keepPartialByte: true);

    /// <summary>The words that spell the bytes, the last one padded with zero bits.</summary>
    public static byte[] FromBytes(ReadOnlySpan<byte> bytes)
    {
        var words = new byte[(bytes.Length * 8 + 4) / 5];
        var accumulator = 0;
        var bits = 0;
        var index = 0;
        foreach (var value in bytes)
        {
            accumulator = (accumulator << 8) | value;
            bits += 8;
            while (bits >= 5)
            {
                bits -= 5;
                words[index++] = (byte)((accumulator >> bits) & 31);
            }
        }
        if (bits > 0) words[index] = (byte)((accumulator << (5 - bits)) & 31);
        return words;
    }

    /// <summary>The big-endian integer the words spell; false when it does not fit in 63 bits.</summary>
    public static bool TryToInteger(ReadOnlySpan<byte> words, out long value)
    {
        value = 0;
        if (words.Length > 12) return false;
        foreach (var word in words) value = (value << 5) | word;
        return true;
    }

    /// <summary>The fewest words (at least <paramref name="minimumWords"/>) that spell a non-negative integer.</summary>
    public static byte[] FromInteger(long value, int minimumWords = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        var words = new List<byte>();
        for (var rest = value; rest > 0; rest >>= 5) words.Add((byte)(rest & 31));
        while (words.Count < minimumWords) words.Add(0);
        words.Reverse();
        return [.. words];
    }

    private static byte[] ToBytes(ReadOnlySpan<byte> words, bool keepPartialByte)
    {
        var totalBits = words.Length * 5;
        var bytes = new byte[keepPartialByte ? (totalBits + 7) / 8 : totalBits / 8];
        var accumulator = 0;
        var bits = 0;
        var index = 0;
        foreach (var word in words)
        {
            accumulator = ((accumulator << 5) | word) & 0xFFF;
            bits += 5;
            if (bits >= 8)
            {
                bits -= 8;
                bytes[index++] = (byte)(accumulator >> bits);
            }
        }
        if (keepPartialByte && bits > 0) bytes[index] = (byte)(accumulator << (8 - bits));
        return bytes;
    }
}
