namespace Coordinator.Tests.Lightning.Payments;

/// <summary>The fake wallet's BOLT11 reading, checked on the BOLT 11 specification's own examples.</summary>
public sealed class FakeBolt11Tests
{
    // BOLT 11, "Examples": "Please make a donation of any amount using payment_hash 0001020304… to me @03e7156ae33b…".
    private const string DonationOfAnyAmount =
        "lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql";

    // BOLT 11, "Examples": "Please send $3 for a cup of coffee to the same peer, within one minute" (2500u).
    private const string CupOfCoffee =
        "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";

    private const string SpecPaymentHash = "0001020304050607080900010203040506070809000102030405060708090102";

    [Fact]
    public void ReadsTheSpecExamples()
    {
        Assert.Null(FakeBolt11.AmountMsat(DonationOfAnyAmount));
        Assert.Equal(SpecPaymentHash, FakeBolt11.PaymentHash(DonationOfAnyAmount));
        Assert.Equal(250_000_000, FakeBolt11.AmountMsat(CupOfCoffee));
        Assert.Equal(SpecPaymentHash, FakeBolt11.PaymentHash(CupOfCoffee));
    }

    [Fact]
    public void ReadsBackWhatItMakes()
    {
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var invoice = FakeBolt11.Make(1234, hash);

        Assert.StartsWith("lnbcrt12340n1", invoice);
        Assert.Equal(1_234_000, FakeBolt11.AmountMsat(invoice));
        Assert.Equal(hash, FakeBolt11.PaymentHash(invoice));
    }
}
