using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Coordinator.Grains.Lightning.Payments;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>The stub node against real PostgreSQL; two nodes on two data sources stand for two silos.</summary>
public sealed partial class StubLightningNodeTests(LightningDatabase database) : IClassFixture<LightningDatabase>
{
    [Fact]
    public async Task CreateInvoice_MakesAStubRequestForTheAmount_WithARandom32ByteHash()
    {
        await using var dataSource = database.NewDataSource();
        var node = new StubLightningNode(dataSource, TimeProvider.System);

        var first = await node.CreateInvoiceAsync(2500, "work for job 3", CancellationToken.None);
        var second = await node.CreateInvoiceAsync(2500, "work for job 3", CancellationToken.None);

        Assert.True(node.IsStub);
        Assert.Equal(2500, first.AmountSats);
        var request = StubRequest().Match(first.PaymentRequest);
        Assert.True(request.Success, first.PaymentRequest);
        Assert.Equal("2500", request.Groups["sats"].Value);
        Assert.Matches("^[0-9a-f]{64}$", first.PaymentHash);
        Assert.NotEqual(first.PaymentHash, second.PaymentHash);
        Assert.NotEqual(first.PaymentRequest, second.PaymentRequest);
        Assert.False(await node.IsPaidAsync(first.PaymentHash, CancellationToken.None));
    }

    [Fact]
    public async Task APaymentMarkedOnOneSilo_IsSeenOnTheOther()
    {
        await using var siloA = database.NewDataSource();
        await using var siloB = database.NewDataSource();
        var nodeA = new StubLightningNode(siloA, TimeProvider.System);
        var nodeB = new StubLightningNode(siloB, TimeProvider.System);
        var invoice = await nodeA.CreateInvoiceAsync(10, "eval", CancellationToken.None);
        Assert.False(await nodeB.IsPaidAsync(invoice.PaymentHash, CancellationToken.None));

        Assert.True(await nodeB.MarkPaidAsync(invoice.PaymentHash));

        Assert.True(await nodeA.IsPaidAsync(invoice.PaymentHash, CancellationToken.None));
        Assert.True(await nodeB.IsPaidAsync(invoice.PaymentHash, CancellationToken.None));
    }

    [Fact]
    public async Task MarkPaid_OfAnUnknownHash_AnswersFalse_AndIsPaidOfIt_IsALightningException()
    {
        await using var dataSource = database.NewDataSource();
        var node = new StubLightningNode(dataSource, TimeProvider.System);
        var unknown = new string('e', 64);

        Assert.False(await node.MarkPaidAsync(unknown));
        await Assert.ThrowsAsync<LightningException>(() => node.IsPaidAsync(unknown, CancellationToken.None));
    }

    [Fact]
    public async Task MarkingAgain_IsHarmless_AndKeepsTheFirstPaymentTime()
    {
        var clock = new ManualTimeProvider(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
        await using var dataSource = database.NewDataSource();
        var node = new StubLightningNode(dataSource, clock);
        var invoice = await node.CreateInvoiceAsync(10, "eval", CancellationToken.None);

        Assert.True(await node.MarkPaidAsync(invoice.PaymentHash));
        clock.Advance(TimeSpan.FromMinutes(5));
        Assert.True(await node.MarkPaidAsync(invoice.PaymentHash));

        await using var command = dataSource.CreateCommand("SELECT paid_at FROM lightning_stub_invoices WHERE payment_hash = @hash");
        command.Parameters.AddWithValue("hash", invoice.PaymentHash);
        Assert.Equal(new DateTime(2026, 3, 1, 12, 0, 0, DateTimeKind.Utc), (DateTime)(await command.ExecuteScalarAsync())!);
    }

    [Fact]
    public async Task Pay_RecordsTheOutgoingPaymentUnderTheInvoicesHash_AndAnswersItSettled()
    {
        await using var dataSource = database.NewDataSource();
        var node = new StubLightningNode(dataSource, TimeProvider.System);
        var hash = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var bolt11 = "lnbcrt4200n1refund" + Guid.NewGuid().ToString("N");
        Assert.Equal(OutgoingPaymentStatus.Unknown, await node.GetPaymentAsync(hash, CancellationToken.None));

        var payment = await node.PayAsync(bolt11, hash, 420, CancellationToken.None);

        Assert.Equal(new LightningPayment(hash, 420, IsPending: false), payment);
        Assert.Equal(OutgoingPaymentStatus.Succeeded, await node.GetPaymentAsync(hash, CancellationToken.None));
        await using var command = dataSource.CreateCommand("SELECT bolt11, amount_sats FROM lightning_stub_payments WHERE payment_hash = @hash");
        command.Parameters.AddWithValue("hash", hash);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(bolt11, reader.GetString(0));
        Assert.Equal(420, reader.GetInt64(1));
    }

    [Fact]
    public async Task Pay_OfAnInvoicePaidAlready_IsRefused()
    {
        await using var dataSource = database.NewDataSource();
        var node = new StubLightningNode(dataSource, TimeProvider.System);
        var hash = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        await node.PayAsync("lnbcrt1n1first", hash, 1, CancellationToken.None);

        var error = await Assert.ThrowsAsync<LightningException>(() => node.PayAsync("lnbcrt1n1again", hash, 1, CancellationToken.None));

        Assert.True(error.NodeAnswered);
        Assert.Contains("paid already", error.Message);
    }

    [GeneratedRegex("^lnbcrt(?<sats>[0-9]+)u1stub_[0-9a-z]+$")]
    private static partial Regex StubRequest();
}
