using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Coordinator.Grains.Lightning.Payments;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>The production LNbits client against <see cref="FakeLnbits"/>, which speaks LNbits' wire format.</summary>
public sealed class LnbitsLightningNodeTests : IAsyncLifetime
{
    private FakeLnbits _lnbits = null!;

    public async Task InitializeAsync() => _lnbits = await FakeLnbits.StartAsync();

    public async Task DisposeAsync() => await _lnbits.DisposeAsync();

    [Theory]
    [InlineData(FakeLnbitsVersion.Current)]
    [InlineData(FakeLnbitsVersion.Legacy)]
    public async Task CreateInvoice_MakesAnInvoiceForTheAmountAndMemo_InEitherLnbitsVersion(FakeLnbitsVersion version)
    {
        _lnbits.Version = version;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var node = services.Get<ILightningNode>();

        var invoice = await node.CreateInvoiceAsync(1234, "eval fee for job 7", CancellationToken.None);

        Assert.IsType<LnbitsLightningNode>(node);
        Assert.False(node.IsStub);
        var made = Assert.Single(_lnbits.Invoices);
        Assert.Equal(made.PaymentHash, invoice.PaymentHash);
        Assert.Equal(made.PaymentRequest, invoice.PaymentRequest);
        Assert.Equal(1234, made.AmountSats);
        Assert.Equal(1234, invoice.AmountSats);
        Assert.Equal("eval fee for job 7", made.Memo);
    }

    [Fact]
    public async Task IsPaid_IsFalseUntilThePayerPays_ThenTrue()
    {
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var node = services.Get<ILightningNode>();
        var invoice = await node.CreateInvoiceAsync(10, "eval", CancellationToken.None);
        var other = await node.CreateInvoiceAsync(10, "eval", CancellationToken.None);

        Assert.False(await node.IsPaidAsync(invoice.PaymentHash, CancellationToken.None));
        Assert.True(_lnbits.MarkPaid(invoice.PaymentHash));

        Assert.True(await node.IsPaidAsync(invoice.PaymentHash, CancellationToken.None));
        Assert.False(await node.IsPaidAsync(other.PaymentHash, CancellationToken.None));
    }

    [Fact]
    public async Task IsPaid_OfAnInvoiceLnbitsDoesNotKnow_IsALightningException()
    {
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));

        var error = await Assert.ThrowsAsync<LightningException>(() =>
            services.Get<ILightningNode>().IsPaidAsync(RandomHash(), CancellationToken.None));

        Assert.Contains("Payment does not exist", error.Message);
        Assert.Contains("HTTP 404", error.Message);
    }

    [Theory]
    [InlineData(FakeLnbitsVersion.Current)]
    [InlineData(FakeLnbitsVersion.Legacy)]
    public async Task Pay_PaysTheInvoiceWithTheAdminKey_AndAnswersItsPaymentHash(FakeLnbitsVersion version)
    {
        _lnbits.Version = version;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var hash = RandomHash();
        var bolt11 = FakeBolt11.Make(321, hash);

        var payment = await services.Get<ILightningNode>().PayAsync(bolt11, hash, 321, CancellationToken.None);

        Assert.Equal(new LightningPayment(hash, 321, IsPending: false), payment);
        var paid = Assert.Single(_lnbits.Payments);
        Assert.Equal(new FakeLnbitsPayment(hash, bolt11, 321), paid);
    }

    [Fact]
    public async Task Pay_ThatLnbitsReportsInFlight_IsPending()
    {
        _lnbits.PayOutcome = FakeLnbitsPayOutcome.StayPending;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var hash = RandomHash();

        var payment = await services.Get<ILightningNode>().PayAsync(FakeBolt11.Make(50, hash), hash, 50, CancellationToken.None);

        Assert.Equal(new LightningPayment(hash, 50, IsPending: true), payment);
    }

    [Fact]
    public async Task Pay_ThatLnbitsCannotMake_IsALightningExceptionSayingWhy()
    {
        _lnbits.PayOutcome = FakeLnbitsPayOutcome.Fail;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));

        var error = await Assert.ThrowsAsync<LightningException>(() =>
            PayAnyAsync(services.Get<ILightningNode>(), 50));

        Assert.Contains("could not pay the invoice", error.Message);
        Assert.Contains("no route found", error.Message);
        Assert.Contains("HTTP 520", error.Message);
        Assert.Empty(_lnbits.Payments);
    }

    [Theory]
    [InlineData(FakeLnbitsVersion.Current)]
    [InlineData(FakeLnbitsVersion.Legacy)]
    public async Task GetPayment_ReadsAnOutgoingPaymentBack_SettledUnknownOrFailed(FakeLnbitsVersion version)
    {
        _lnbits.Version = version;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var node = services.Get<ILightningNode>();
        var paid = await PayAnyAsync(node, 40);
        _lnbits.PayOutcome = FakeLnbitsPayOutcome.Fail;
        var failedHash = RandomHash();
        var failure = await Assert.ThrowsAsync<LightningException>(() => node.PayAsync(FakeBolt11.Make(40, failedHash), failedHash, 40, CancellationToken.None));

        Assert.True(failure.NodeAnswered);
        Assert.Equal(OutgoingPaymentStatus.Succeeded, await node.GetPaymentAsync(paid.PaymentHash, CancellationToken.None));
        Assert.Equal(OutgoingPaymentStatus.Unknown, await node.GetPaymentAsync(RandomHash(), CancellationToken.None));
        // 1.x keeps a failed payment and says so; 0.x deletes it.
        Assert.Equal(version == FakeLnbitsVersion.Current ? OutgoingPaymentStatus.Failed : OutgoingPaymentStatus.Unknown,
            await node.GetPaymentAsync(failedHash, CancellationToken.None));
    }

    [Fact]
    public async Task GetPayment_OfAPaymentInFlight_IsPending_UntilLnbitsSettlesIt()
    {
        _lnbits.PayOutcome = FakeLnbitsPayOutcome.StayPending;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var node = services.Get<ILightningNode>();
        var payment = await PayAnyAsync(node, 40);

        Assert.Equal(OutgoingPaymentStatus.Pending, await node.GetPaymentAsync(payment.PaymentHash, CancellationToken.None));
        _lnbits.SettleOutgoing(payment.PaymentHash, succeeded: true);
        Assert.Equal(OutgoingPaymentStatus.Succeeded, await node.GetPaymentAsync(payment.PaymentHash, CancellationToken.None));
    }

    [Fact]
    public async Task APaymentWhoseAnswerNeverComes_IsALightningException_ThatSaysTheNodeDidNotAnswer()
    {
        var clock = new ManualTimeProvider();
        var settings = LightningServices.Lnbits(_lnbits);
        settings["Lightning:RequestTimeout"] = "00:00:07";
        await using var services = new LightningServices(settings, clock);
        _lnbits.PayOutcome = FakeLnbitsPayOutcome.PayWithoutAnswer;
        var node = services.Get<ILightningNode>();
        var hash = RandomHash();

        var paying = node.PayAsync(FakeBolt11.Make(40, hash), hash, 40, CancellationToken.None);
        await Eventually.TrueAsync(() => _lnbits.Payments.Count == 1, "LNbits has paid");
        clock.Advance(TimeSpan.FromSeconds(7));

        var error = await Assert.ThrowsAsync<LightningException>(() => paying.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(error.NodeAnswered);
        Assert.Equal(OutgoingPaymentStatus.Succeeded, await node.GetPaymentAsync(hash, CancellationToken.None));
    }

    [Theory]
    [InlineData(FakeLnbitsVersion.Current)]
    [InlineData(FakeLnbitsVersion.Legacy)]
    public async Task Pay_WithTheInvoiceKeyConfiguredAsAdminKey_IsRefused_AndTheMessageHoldsNoKey(FakeLnbitsVersion version)
    {
        _lnbits.Version = version;
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits, adminKey: FakeLnbits.InvoiceKey));
        var node = services.Get<ILightningNode>();

        // The invoice key still makes invoices; it cannot spend.
        await node.CreateInvoiceAsync(10, "eval", CancellationToken.None);
        var error = await Assert.ThrowsAsync<LightningException>(() => PayAnyAsync(node, 50));

        Assert.Contains("refused the wallet key", error.Message);
        Assert.Contains(version == FakeLnbitsVersion.Current ? "HTTP 403" : "HTTP 401", error.Message);
        Assert.DoesNotContain(FakeLnbits.InvoiceKey, error.Message);
        Assert.Empty(_lnbits.Payments);
    }

    [Fact]
    public async Task CreateInvoice_WithAKeyLnbitsDoesNotKnow_IsRefused_AndNoLogLineHoldsAKey()
    {
        const string wrongKey = "not0a0key0of0this0wallet00000000";
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits, invoiceKey: wrongKey));

        var error = await Assert.ThrowsAsync<LightningException>(() =>
            services.Get<ILightningNode>().CreateInvoiceAsync(10, "eval", CancellationToken.None));

        Assert.Contains("refused the wallet key", error.Message);
        Assert.Contains("HTTP 401", error.Message);
        Assert.DoesNotContain(wrongKey, error.Message);
        Assert.Empty(_lnbits.Invoices);
        Assert.NotEmpty(services.Logs.Lines);
        Assert.DoesNotContain(services.Logs.Lines, line => line.Contains(wrongKey));
    }

    [Fact]
    public async Task NoLogLine_HoldsTheInvoiceOrAdminKey()
    {
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits));
        var node = services.Get<ILightningNode>();

        var invoice = await node.CreateInvoiceAsync(10, "eval", CancellationToken.None);
        await node.IsPaidAsync(invoice.PaymentHash, CancellationToken.None);
        await PayAnyAsync(node, 5);
        _lnbits.PayOutcome = FakeLnbitsPayOutcome.Fail;
        await Assert.ThrowsAsync<LightningException>(() => PayAnyAsync(node, 5));

        // HttpClient logs each request's headers at Trace: the keys are there by name only.
        Assert.Contains(services.Logs.Lines, line => line.Contains("X-Api-Key"));
        Assert.DoesNotContain(services.Logs.Lines, line => line.Contains(FakeLnbits.InvoiceKey) || line.Contains(FakeLnbits.AdminKey));
    }

    [Fact]
    public async Task ANodeThatIsNotListening_IsALightningException()
    {
        var closedPort = ClosedPort();
        await using var services = new LightningServices(new Dictionary<string, string?>
        {
            ["Lightning:LnbitsUrl"] = $"http://127.0.0.1:{closedPort}",
            ["Lightning:InvoiceKey"] = FakeLnbits.InvoiceKey,
            ["Lightning:AdminKey"] = FakeLnbits.AdminKey,
        });

        var error = await Assert.ThrowsAsync<LightningException>(() =>
            services.Get<ILightningNode>().CreateInvoiceAsync(10, "eval", CancellationToken.None));

        Assert.Equal("The Lightning node is not reachable.", error.Message);
    }

    [Fact]
    public async Task ANodeThatDoesNotAnswer_IsALightningException_AfterTheRequestTimeout()
    {
        var clock = new ManualTimeProvider();
        var settings = LightningServices.Lnbits(_lnbits);
        settings["Lightning:RequestTimeout"] = "00:00:07";
        await using var services = new LightningServices(settings, clock);
        _lnbits.Gate.Close();

        var check = services.Get<ILightningNode>().CreateInvoiceAsync(10, "eval", CancellationToken.None);
        await Eventually.TrueAsync(() => _lnbits.Requests == 1, "LNbits has the request");
        Assert.False(check.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(7));

        var error = await Assert.ThrowsAsync<LightningException>(() => check.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal("The Lightning node did not answer within 7 s.", error.Message);
    }

    [Fact]
    public async Task ACallerThatGivesUp_GetsACancellation_NotALightningFailure()
    {
        await using var services = new LightningServices(LightningServices.Lnbits(_lnbits), new ManualTimeProvider());
        _lnbits.Gate.Close();
        using var cancellation = new CancellationTokenSource();

        var check = services.Get<ILightningNode>().IsPaidAsync(RandomHash(), cancellation.Token);
        await Eventually.TrueAsync(() => _lnbits.Requests == 1, "LNbits has the request");
        await cancellation.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => check.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    /// <summary>Pays a new invoice for <paramref name="sats"/> to a random payment hash.</summary>
    private static Task<LightningPayment> PayAnyAsync(ILightningNode node, long sats)
    {
        var hash = RandomHash();
        return node.PayAsync(FakeBolt11.Make(sats, hash), hash, sats, CancellationToken.None);
    }

    private static string RandomHash() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
