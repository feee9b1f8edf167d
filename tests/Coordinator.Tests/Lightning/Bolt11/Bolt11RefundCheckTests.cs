using Coordinator.Grains.Lightning.Bolt11;

namespace Coordinator.Tests.Lightning.Bolt11;

/// <summary>The refund endpoint's check: a valid invoice on the node's network, for exactly the refund owed, not expired.</summary>
public sealed class Bolt11RefundCheckTests
{
    private const long Owed = 1234;
    private static readonly DateTimeOffset Made = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);
    private static readonly DateTimeOffset Now = Made.AddMinutes(10);

    [Fact]
    public void ExactAmount_OnTheNodesNetwork_BeforeExpiry_IsOk()
    {
        var text = Invoice(Owed * 1000);
        var result = Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, Now);
        Assert.True(result.IsOk, result.Message);
        Assert.Equal(Bolt11Error.None, result.Error);
        Assert.Equal(Owed, result.Invoice!.AmountSats);
        Assert.True(Bolt11Decoder.TryDecode(text, out var invoice, out _));
        Assert.Equal(invoice, result.Invoice);
    }

    [Theory]
    [InlineData(Owed - 1, "1,233 sats")]
    [InlineData(Owed + 1, "1,235 sats")]
    public void OneSatOff_IsTheWrongAmount(long sats, string said)
    {
        var result = Bolt11RefundCheck.Check(Invoice(sats * 1000), Owed, Bolt11Network.Regtest, Now);
        Assert.False(result.IsOk);
        Assert.Equal(Bolt11Error.WrongAmount, result.Error);
        Assert.Equal($"the invoice is for {said}; the refund owed is exactly 1,234 sats: make an invoice for that amount", result.Message);
        Assert.NotNull(result.Invoice);
    }

    [Fact]
    public void OneMillisatoshiOver_IsTheWrongAmount()
    {
        var result = Bolt11RefundCheck.Check(Invoice(Owed * 1000 + 1), Owed, Bolt11Network.Regtest, Now);
        Assert.Equal(Bolt11Error.WrongAmount, result.Error);
        Assert.StartsWith("the invoice is for 1,234,001 millisatoshis;", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NoAmount_IsRefused()
    {
        var result = Bolt11RefundCheck.Check(Invoice(null), Owed, Bolt11Network.Regtest, Now);
        Assert.Equal(Bolt11Error.NoAmount, result.Error);
        Assert.Equal("the invoice has no amount: make one for exactly 1,234 sats, the refund owed", result.Message);
    }

    [Fact]
    public void Expired_AtItsExpiry_NotASecondBefore()
    {
        var text = Invoice(Owed * 1000, expiry: TimeSpan.FromHours(1));
        Assert.True(Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, Made.AddHours(1).AddSeconds(-1)).IsOk);

        var result = Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, Made.AddHours(1));
        Assert.Equal(Bolt11Error.Expired, result.Error);
        Assert.Equal("the invoice expired at 2023-11-14T23:13:20Z: make a new one", result.Message);
    }

    [Fact]
    public void WithoutAnExpiryField_ExpiresAfterAnHour()
    {
        var text = Invoice(Owed * 1000, expiry: null);
        Assert.True(Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, Made.AddMinutes(59)).IsOk);
        Assert.Equal(Bolt11Error.Expired, Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, Made.AddMinutes(60)).Error);
    }

    [Fact]
    public void AnExpiryBeyondTheCalendar_NeverExpires()
    {
        var text = Invoice(Owed * 1000, expiry: TimeSpan.FromSeconds((1L << 39) - 1));
        var result = Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, DateTimeOffset.MaxValue.AddDays(-1));
        Assert.True(result.IsOk, result.Message);
        Assert.Equal(DateTimeOffset.MaxValue, result.Invoice!.ExpiresAt);
    }

    [Fact]
    public void AnotherNetwork_IsRefused_BeforeItsAmountIsLookedAt()
    {
        var result = Bolt11RefundCheck.Check(Invoice(1, Bolt11Network.Bitcoin), Owed, Bolt11Network.Regtest, Now);
        Assert.Equal(Bolt11Error.WrongNetwork, result.Error);
        Assert.Equal("the invoice is for bitcoin (lnbc); this node pays on regtest (lnbcrt): make the invoice on that network", result.Message);
        Assert.Equal(Bolt11Error.WrongNetwork, Bolt11RefundCheck.Check(Invoice(Owed * 1000, Bolt11Network.Testnet), Owed, Bolt11Network.Signet, Now).Error);
    }

    public static TheoryData<string?, Bolt11Error> Undecodable() => new()
    {
        { null, Bolt11Error.Empty },
        { "", Bolt11Error.Empty },
        { " \n\t", Bolt11Error.Empty },
        { "lightning:", Bolt11Error.Empty },
        { "hello", Bolt11Error.NotBolt11 },
        { "{\"invoice\": 1}", Bolt11Error.NotBolt11 },
        { "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", Bolt11Error.NotBolt11 },
        { new string('q', 100 * 1024), Bolt11Error.TooLong },
        { "lnbc1" + new string('q', 100 * 1024), Bolt11Error.TooLong },
        { "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7énxv4jsxqzpu", Bolt11Error.NotBolt11 },
        { "lnbc25m1pvjluezpp5ナンセンス", Bolt11Error.NotBolt11 },
        { "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrnt", Bolt11Error.BadChecksum },
    };

    [Theory]
    [MemberData(nameof(Undecodable))]
    public void Undecodable_IsRefusedWithTheDecodersError(string? text, Bolt11Error expected)
    {
        var result = Bolt11RefundCheck.Check(text, Owed, Bolt11Network.Regtest, Now);
        Assert.False(result.IsOk);
        Assert.Equal(expected, result.Error);
        Assert.Equal(expected.Message(), result.Message);
        Assert.Null(result.Invoice);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void NoRefundOwed_IsTheCallersMistake(long owed) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Bolt11RefundCheck.Check(Invoice(1000), owed, Bolt11Network.Regtest, Now));

    [Fact]
    public void EveryError_HasItsOwnMessage()
    {
        var messages = Enum.GetValues<Bolt11Error>().Select(e => e.Message()).ToList();
        Assert.All(messages, m => Assert.False(string.IsNullOrWhiteSpace(m)));
        Assert.Equal(messages.Count, messages.Distinct().Count());
    }

    private static string Invoice(long? amountMsat, Bolt11Network network = Bolt11Network.Regtest, TimeSpan? expiry = null)
    {
        using var key = new TestInvoices(seed: 7).NewKey();
        return Bolt11Encoder.Encode(new Bolt11InvoiceRequest
        {
            Network = network,
            AmountMsat = amountMsat,
            Timestamp = Made,
            PaymentHash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            Description = "refund",
            Expiry = expiry,
        }, key);
    }
}
