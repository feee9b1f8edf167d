using System.Text;
using NBitcoin.DataEncoders;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>
/// Takes invoices apart and puts them back together with a fresh checksum (NBitcoin's bech32, used directly), so a
/// test can alter what an invoice says and reach the checks behind the checksum.
/// </summary>
internal static class Bech32Text
{
    public const string Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

    public static (string HumanReadablePart, byte[] Words) Split(string invoice)
    {
        var separator = invoice.LastIndexOf('1');
        var hrp = invoice[..separator];
        return (hrp, Encoder(hrp).DecodeDataRaw(invoice, out _));
    }

    public static string Join(string humanReadablePart, ReadOnlySpan<byte> words) =>
        Encoder(humanReadablePart).EncodeData(words, Bech32EncodingType.BECH32);

    private static Bech32Encoder Encoder(string hrp) => new(Encoding.ASCII.GetBytes(hrp)) { StrictLength = false };
}
