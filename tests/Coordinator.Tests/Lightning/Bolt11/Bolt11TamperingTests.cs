using Coordinator.Grains.Lightning.Bolt11;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>
/// An invoice that was changed is refused: a changed character fails the checksum; a change made with a fresh
/// checksum fails the signature when the invoice names its payee, and otherwise recovers another payee (which the
/// refund's payment would then go to: the decoder cannot know, but it does not report the original one).
/// </summary>
public sealed class Bolt11TamperingTests
{
    private static readonly DateTimeOffset Made = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);

    [Fact]
    public void EveryChangedCharacter_FailsTheChecksum()
    {
        var text = Make(includePayee: false, out _);
        var separator = text.LastIndexOf('1');
        for (var i = 0; i < text.Length; i++)
        {
            if (i == separator) continue;
            var replacement = char.IsAsciiDigit(text[i]) && i < separator ? (char)('0' + (text[i] - '0' + 1) % 10) : Other(text[i]);
            var changed = text[..i] + replacement + text[(i + 1)..];
            Assert.False(Bolt11Decoder.TryDecode(changed, out _, out var error), $"position {i}");
            // Without its "ln" the text is no invoice at all; any other change is caught by the checksum.
            Assert.True(error == (i < 2 ? Bolt11Error.NotBolt11 : Bolt11Error.BadChecksum), $"position {i}: {error}");
        }
    }

    [Fact]
    public void TwoSwappedCharacters_FailTheChecksum()
    {
        var text = Make(includePayee: false, out _);
        var start = text.LastIndexOf('1') + 1;
        for (var i = start; i < text.Length - 1; i++)
        {
            if (text[i] == text[i + 1]) continue;
            var swapped = text[..i] + text[i + 1] + text[i] + text[(i + 2)..];
            Assert.False(Bolt11Decoder.TryDecode(swapped, out _, out var error), $"position {i}");
            Assert.Equal(Bolt11Error.BadChecksum, error);
        }
    }

    [Fact]
    public void AlteredAmount_RecheckSummed_FailsTheSignature_WhenThePayeeIsNamed()
    {
        var text = Make(includePayee: true, out _);
        var (hrp, words) = Bech32Text.Split(text);
        Assert.Equal("lnbcrt12340n", hrp);

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join("lnbcrt12350n", words), out var invoice, out var error));
        Assert.Null(invoice);
        Assert.Equal(Bolt11Error.BadSignature, error);
    }

    [Fact]
    public void AlteredPaymentHash_RecheckSummed_FailsTheSignature_WhenThePayeeIsNamed()
    {
        var text = Make(includePayee: true, out _);
        var (hrp, words) = Bech32Text.Split(text);
        words[Bolt11Decoder.TimestampWords + 3] ^= 1; // the first word of the p field's data

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(hrp, words), out _, out var error));
        Assert.Equal(Bolt11Error.BadSignature, error);
    }

    [Fact]
    public void AlteredData_RecheckSummed_RecoversAnotherPayee_WhenNoneIsNamed()
    {
        var text = Make(includePayee: false, out var payee);
        var (hrp, words) = Bech32Text.Split(text);
        Assert.True(Bolt11Decoder.TryDecode(text, out var original, out _));
        Assert.Equal(payee, original.PayeeNodeKey);

        var changedAmount = Bech32Text.Join("lnbcrt12350n", words);
        words[Bolt11Decoder.TimestampWords + 3] ^= 1;
        var changedHash = Bech32Text.Join(hrp, words);
        foreach (var changed in new[] { changedAmount, changedHash })
        {
            // A changed message recovers some other key, or none; never the payee's.
            if (Bolt11Decoder.TryDecode(changed, out var invoice, out var error)) Assert.NotEqual(payee, invoice.PayeeNodeKey);
            else Assert.Equal(Bolt11Error.BadSignature, error);
        }
    }

    [Fact]
    public void AnotherKeysSignature_UnderTheNamedPayee_FailsTheSignature()
    {
        var random = new TestInvoices(seed: 5);
        using var payee = random.NewKey();
        using var other = random.NewKey();
        var request = Request(includePayee: true);
        var byPayee = Bech32Text.Split(Bolt11Encoder.Encode(request, payee));
        var byOther = Bech32Text.Split(Bolt11Encoder.Encode(request, other));
        // The payee's fields (its n field included) with the other key's signature over its own n field.
        var forged = byPayee.Words[..^Bolt11Decoder.SignatureWords].Concat(byOther.Words[^Bolt11Decoder.SignatureWords..]).ToArray();

        Assert.False(Bolt11Decoder.TryDecode(Bech32Text.Join(byPayee.HumanReadablePart, forged), out _, out var error));
        Assert.Equal(Bolt11Error.BadSignature, error);
    }

    private static string Make(bool includePayee, out string payee)
    {
        using var key = new TestInvoices(seed: 3).NewKey();
        payee = key.PubKey.ToHex();
        return Bolt11Encoder.Encode(Request(includePayee), key);
    }

    private static Bolt11InvoiceRequest Request(bool includePayee) => new()
    {
        Network = Bolt11Network.Regtest,
        AmountMsat = 1_234_000,
        Timestamp = Made,
        PaymentHash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        PaymentSecret = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
        Description = "refund",
        Expiry = TimeSpan.FromHours(1),
        IncludePayeeNodeKey = includePayee,
    };

    private static char Other(char c)
    {
        var lower = char.ToLowerInvariant(c);
        var index = Bech32Text.Charset.IndexOf(lower, StringComparison.Ordinal);
        return index >= 0 ? Bech32Text.Charset[(index + 1) % 32] : lower == 'l' ? 'm' : 'l';
    }
}
