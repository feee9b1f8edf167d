using System.Security.Cryptography;
using System.Text;
using NBitcoin;

namespace Coordinator.Grains.Lightning.Bolt11;

/// <summary>
/// Writes and signs BOLT11 invoices. The Lightning agent pays invoices and never issues real ones; this is what a
/// fake Lightning node (and the tests) use to make invoices every BOLT11 reader accepts. Unlike the decoder it throws
/// <see cref="ArgumentException"/> on a request it cannot write: its input comes from code, not from clients.
/// </summary>
public static class Bolt11Encoder
{
    private const int MaxDescriptionBytes = 639; // 1023 words, the most a 10-bit field length can count
    private const long MaxTimestamp = (1L << 35) - 1;
    private const int PaymentSecretFeatureBit = 14;
    private const int VarOnionFeatureBit = 8;

    /// <summary>The invoice for a request, signed with the payee's node key.</summary>
    public static string Encode(Bolt11InvoiceRequest request, Key key)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(key);
        var hrp = "ln" + request.Network.Prefix() + (request.AmountMsat is { } msat ? Bolt11Amount.Format(msat) : "");

        var timestamp = request.Timestamp.ToUnixTimeSeconds();
        if (timestamp < 0 || timestamp > MaxTimestamp)
        {
            throw new ArgumentOutOfRangeException(nameof(request), request.Timestamp, "the timestamp must be between 1970 and 2³⁵ − 1 seconds after it");
        }
        var words = new List<byte>(Bolt11Words.FromInteger(timestamp, Bolt11Decoder.TimestampWords));

        AddField(words, 1, Bolt11Words.FromBytes(Hash(request.PaymentHash, nameof(request.PaymentHash))));
        if (request.PaymentSecret is not null)
        {
            AddField(words, 16, Bolt11Words.FromBytes(Hash(request.PaymentSecret, nameof(request.PaymentSecret))));
        }
        if (request.DescriptionHash is not null)
        {
            if (request.Description is not null) throw new ArgumentException("an invoice has a description or a description hash, not both", nameof(request));
            AddField(words, 23, Bolt11Words.FromBytes(Hash(request.DescriptionHash, nameof(request.DescriptionHash))));
        }
        else
        {
            var description = Encoding.UTF8.GetBytes(request.Description ?? "");
            if (description.Length > MaxDescriptionBytes) throw new ArgumentException($"the description is over {MaxDescriptionBytes} UTF-8 bytes", nameof(request));
            AddField(words, 13, Bolt11Words.FromBytes(description));
        }
        if (request.Expiry is { } expiry) AddField(words, 6, Bolt11Words.FromInteger((long)expiry.TotalSeconds));
        AddField(words, 24, Bolt11Words.FromInteger(request.MinFinalCltvExpiry));
        if (request.IncludePayeeNodeKey) AddField(words, 19, Bolt11Words.FromBytes(key.PubKey.Compress().ToBytes()));
        if (request.PaymentSecret is not null) AddField(words, 5, Features(VarOnionFeatureBit, PaymentSecretFeatureBit));

        var signed = Encoding.ASCII.GetBytes(hrp).Concat(Bolt11Words.ToBytesPadded([.. words]));
        var signature = key.SignCompact(new uint256(SHA256.HashData([.. signed])));
        words.AddRange(Bolt11Words.FromBytes([.. signature.Signature, (byte)signature.RecoveryId]));
        return Bolt11Bech32.Encode(hrp, [.. words]);
    }

    private static void AddField(List<byte> words, byte type, byte[] data)
    {
        words.Add(type);
        words.AddRange(Bolt11Words.FromInteger(data.Length, minimumWords: 2));
        words.AddRange(data);
    }

    /// <summary>The feature words with the given bits set (bit 0 is the lowest bit of the last word).</summary>
    private static byte[] Features(params int[] bits)
    {
        var words = new byte[bits.Max() / 5 + 1];
        foreach (var bit in bits) words[^(1 + bit / 5)] |= (byte)(1 << (bit % 5));
        return words;
    }

    private static byte[] Hash(string hex, string name)
    {
        var bytes = hex.Length == 64 ? Convert.FromHexString(hex) : [];
        return bytes.Length == 32 ? bytes : throw new ArgumentException($"{name} must be 32 bytes as 64 hex digits", name);
    }
}
