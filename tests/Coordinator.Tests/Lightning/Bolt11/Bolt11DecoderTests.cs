using Coordinator.Grains.Lightning.Bolt11;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>
/// The decoder's checks that the spec's examples do not reach: amounts and prefixes, fields that run short, the
/// signature's recovery id, and the length bound. Invoices are altered under a fresh checksum, so each reaches the
/// check it is about.
/// </summary>
public sealed class Bolt11DecoderTests
{
    private const string Coffee = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";

    [Theory]
    [InlineData("lnbc02500u", Bolt11Error.BadAmount)] // leading zero
    [InlineData("lnbc0", Bolt11Error.BadAmount)] // zero
    [InlineData("lnbc0u", Bolt11Error.BadAmount)]
    [InlineData("lnbc25001p", Bolt11Error.BadAmount)] // 2500.1 millisatoshis
    [InlineData("lnbc2500uu", Bolt11Error.BadAmount)]
    [InlineData("lnbc25m0", Bolt11Error.BadAmount)]
    [InlineData("lnbc22000000", Bolt11Error.BadAmount)] // more bitcoin than there will ever be
    [InlineData("lnbc999999999999999999999", Bolt11Error.BadAmount)]
    [InlineData("lnxy2500u", Bolt11Error.UnknownNetwork)]
    [InlineData("ln2500u", Bolt11Error.UnknownNetwork)]
    [InlineData("lnbcu", Bolt11Error.UnknownNetwork)]
    [InlineData("lnltc2500u", Bolt11Error.UnknownNetwork)]
    public void HumanReadablePart_IsChecked(string hrp, Bolt11Error expected)
    {
        var (_, words) = Bech32Text.Split(Coffee);
        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(hrp, words), out _, out var error));
        Assert.Equal(expected, error);
    }

    [Theory]
    [InlineData("lnbc", null)]
    [InlineData("lnbc21000000", 2_100_000_000_000_000_000)]
    [InlineData("lnbc10p", 1L)]
    [InlineData("lnbc1230p", 123L)]
    [InlineData("lnbc1n", 100L)]
    [InlineData("lnbc1u", 100_000L)]
    [InlineData("lnbc1m", 100_000_000L)]
    [InlineData("lnbc1", 100_000_000_000L)]
    public void Amounts_InEveryUnit_AreTheEncodersShortestForm(string hrp, long? amountMsat)
    {
        using var key = new TestInvoices(seed: 1).NewKey();
        var text = Bolt11Encoder.Encode(new Bolt11InvoiceRequest
        {
            Network = Bolt11Network.Bitcoin,
            AmountMsat = amountMsat,
            Timestamp = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000),
            PaymentHash = new string('a', 64),
        }, key);
        Assert.Equal(hrp, Bech32Text.Split(text).HumanReadablePart);
        Assert.True(Bolt11Decoder.TryDecode(text, out var invoice, out var error), error.ToString());
        Assert.Equal(amountMsat, invoice.AmountMsat);
    }

    [Fact]
    public void WithoutAPaymentHashOfTheRightLength_IsRefused()
    {
        var (hrp, words) = Bech32Text.Split(Coffee);
        var paymentHashField = IndexOfField(words, type: 1);
        words[paymentHashField] = 2; // an unknown type: skipped, as a p field of another length would be

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(hrp, words), out _, out var error));
        Assert.Equal(Bolt11Error.MissingPaymentHash, error);
    }

    [Fact]
    public void AFieldRunningPastTheData_IsMalformed()
    {
        var (hrp, words) = Bech32Text.Split(Coffee);
        var description = IndexOfField(words, type: 13);
        words[description + 1] = 31; // data_length 1000+ words

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(hrp, words), out _, out var error));
        Assert.Equal(Bolt11Error.Malformed, error);
    }

    [Fact]
    public void AnExpiryTooLongToBeANumber_IsMalformed()
    {
        var (hrp, words) = Bech32Text.Split(Coffee);
        var fieldsEnd = words.Length - Bolt11Decoder.SignatureWords;
        byte[] expiry = [6, 0, 13, .. Enumerable.Repeat((byte)31, 13)];
        byte[] altered = [.. words[..fieldsEnd], .. expiry, .. words[fieldsEnd..]];

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(hrp, altered), out _, out var error));
        Assert.Equal(Bolt11Error.Malformed, error);
    }

    [Fact]
    public void ARecoveryIdAbove3_IsABadSignature()
    {
        var (hrp, words) = Bech32Text.Split(Coffee);
        words[^1] = 31; // the low 5 bits of the recovery id byte

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(hrp, words), out _, out var error));
        Assert.Equal(Bolt11Error.BadSignature, error);
    }

    [Fact]
    public void MixedCase_InTheHumanReadablePartAlone_IsRefused()
    {
        Assert.False(Bolt11Decoder.TryDecode("lnBC" + Coffee[4..], out _, out var error));
        Assert.Equal(Bolt11Error.MixedCase, error);
    }

    [Fact]
    public void TheLengthBound_IsOnTheInvoiceItself()
    {
        var atTheBound = "lnbc1" + new string('q', Bolt11Decoder.MaxLength - 5);
        Assert.False(Bolt11Decoder.TryDecode("lightning:" + atTheBound, out _, out var error));
        Assert.Equal(Bolt11Error.BadChecksum, error);
        Assert.False(Bolt11Decoder.TryDecode(atTheBound + "q", out _, out error));
        Assert.Equal(Bolt11Error.TooLong, error);
    }

    /// <summary>The index of the first tagged field of a type, walking the fields after the timestamp.</summary>
    private static int IndexOfField(byte[] words, byte type)
    {
        for (var i = Bolt11Decoder.TimestampWords; i < words.Length - Bolt11Decoder.SignatureWords; i += 3 + words[i + 1] * 32 + words[i + 2])
        {
            if (words[i] == type) return i;
        }
        throw new InvalidOperationException($"no field of type {type}");
    }
}
