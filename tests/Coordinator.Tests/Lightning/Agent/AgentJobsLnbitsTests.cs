using System.Net;
using System.Text.Json;
using Coordinator.Grains.Lightning.Bolt11;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Lightning.Payments;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>Pay-per-job against a fake LNbits: invoices made and checked there, the refund paid from it, no payment hashes shown.</summary>
public sealed class AgentJobsLnbitsTests(LnbitsAgentFixture fixture) : IClassFixture<LnbitsAgentFixture>
{
    private AgentApi Api => fixture.Api;

    private FakeLnbits Lnbits => fixture.Lnbits!;

    [Fact]
    public async Task HappyPath_InvoicesAtLnbits_AndTheRefundPaidFromIt()
    {
        var created = await Api.CreateAsync("Summarise the BOLT 11 specification.");
        var id = created.GetProperty("jobId").GetString()!;
        var evalInvoice = created.GetProperty("evalInvoice");
        Assert.Equal(["paymentRequest", "amountSats"], evalInvoice.EnumerateObject().Select(p => p.Name));
        Assert.Equal((10L, "eval fee"), (Invoice(evalInvoice).AmountSats, Invoice(evalInvoice).Memo[^8..]));

        Assert.Equal("awaiting_eval_payment", (await Api.GetAsync(id)).GetProperty("state").GetString());
        Assert.True(Lnbits.MarkPaid(Invoice(evalInvoice).PaymentHash));
        Assert.Equal("evaluating", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(true, "fine", 2000));

        var quoted = await Api.GetAsync(id);
        var workInvoice = quoted.GetProperty("workInvoice");
        Assert.Equal(["paymentRequest", "amountSats"], workInvoice.EnumerateObject().Select(p => p.Name));
        Assert.Equal(1732, AgentApi.Long(workInvoice, "amountSats"));
        Assert.Equal(1732, Invoice(workInvoice).AmountSats);
        Assert.True(Lnbits.MarkPaid(Invoice(workInvoice).PaymentHash));
        Assert.Equal("executing", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var work = await AgentWorkers.TakeAsync(fixture.Worker, fixture.WorkModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, work.Id, "BOLT 11 encodes invoices.", inputTokens: 300, outputTokens: 500);
        Assert.Equal(1029, AgentApi.Long((await Api.GetAsync(id)).GetProperty("costLedger"), "refundAmountSats"));

        // With LNbits the node pays on mainnet unless told otherwise: a regtest invoice is refused.
        Assert.Contains("this node pays on bitcoin", await AgentApi.ErrorAsync(
            await Api.RefundAsync(id, AgentApi.Invoice(1029, Bolt11Network.Regtest, fixture.Clock.GetUtcNow())), HttpStatusCode.BadRequest));
        var invoice = AgentApi.Invoice(1029, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        var refund = await ApiClient.ExpectAsync(await Api.RefundAsync(id, invoice), HttpStatusCode.OK);

        var payment = Assert.Single(Lnbits.Payments, p => p.Bolt11 == invoice);
        Assert.Equal((1029L, payment.PaymentHash), (payment.AmountSats, refund.GetProperty("paymentHash").GetString()));
        Assert.Equal("paid", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
    }

    [Fact]
    public async Task ARefundLnbitsFailsToPay_Is500_AndStaysOwedForTheNextClaim()
    {
        var (id, owed) = await CompleteJobAsync();
        var invoice = AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        Lnbits.PayOutcome = FakeLnbitsPayOutcome.Fail;
        try
        {
            Assert.Contains("could not pay", await AgentApi.ErrorAsync(await Api.RefundAsync(id, invoice), HttpStatusCode.InternalServerError));
        }
        finally
        {
            Lnbits.PayOutcome = FakeLnbitsPayOutcome.Succeed;
        }
        Assert.DoesNotContain(Lnbits.Payments, p => p.Bolt11 == invoice);
        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());

        await ApiClient.ExpectAsync(await Api.RefundAsync(id, invoice), HttpStatusCode.OK);
        Assert.Single(Lnbits.Payments, p => p.Bolt11 == invoice);
    }

    [Fact]
    public async Task ARefundWhoseAnswerIsLost_IsFoundPaidAtLnbits_AndNeverPaidAgain()
    {
        var (id, owed) = await CompleteJobAsync();
        var invoice = AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        Lnbits.PayOutcome = FakeLnbitsPayOutcome.PayWithoutAnswer;
        JsonElement refund;
        try
        {
            var claiming = Api.RefundAsync(id, invoice);
            await Eventually.TrueAsync(() => Lnbits.Payments.Any(p => p.Bolt11 == invoice), "LNbits has paid");
            fixture.Clock.Advance(TimeSpan.FromSeconds(10));
            refund = await ApiClient.ExpectAsync(await claiming, HttpStatusCode.OK);
        }
        finally
        {
            Lnbits.PayOutcome = FakeLnbitsPayOutcome.Succeed;
        }

        var payment = Assert.Single(Lnbits.Payments, p => p.Bolt11 == invoice);
        Assert.Equal(payment.PaymentHash, refund.GetProperty("paymentHash").GetString());
        Assert.Equal("paid", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        Assert.Contains("already been paid", await AgentApi.ErrorAsync(
            await Api.RefundAsync(id, AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow())), HttpStatusCode.Conflict));
    }

    [Fact]
    public async Task ARefundLnbitsDoesNotAnswer_IsHeldForItsInvoice_UntilTheSettleWindowShowsItNeverWentOut()
    {
        var (id, owed) = await CompleteJobAsync();
        var lost = AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        Lnbits.PayOutcome = FakeLnbitsPayOutcome.HangWithoutPaying;
        try
        {
            var before = Lnbits.Requests;
            var claiming = Api.RefundAsync(id, lost);
            await Eventually.TrueAsync(() => Lnbits.Requests > before, "the payment reaches LNbits");
            fixture.Clock.Advance(TimeSpan.FromSeconds(10));
            Assert.Contains("has not said whether it paid", await AgentApi.ErrorAsync(await claiming, HttpStatusCode.InternalServerError));
        }
        finally
        {
            Lnbits.PayOutcome = FakeLnbitsPayOutcome.Succeed;
        }

        // It may still be on its way: another invoice is not paid while the claim is younger than the window (3 × 10 s).
        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        Assert.Contains("being paid", await AgentApi.ErrorAsync(
            await Api.RefundAsync(id, AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow())), HttpStatusCode.Conflict));
        fixture.Clock.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        var again = AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        await ApiClient.ExpectAsync(await Api.RefundAsync(id, again), HttpStatusCode.OK);
        Assert.Single(Lnbits.Payments, p => p.Bolt11 == lost || p.Bolt11 == again);
    }

    [Fact]
    public async Task ARefundInFlight_ShowsPending_ThenPaid_OrOwedAgainIfItFails()
    {
        var (id, owed) = await CompleteJobAsync();
        var first = AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        Lnbits.PayOutcome = FakeLnbitsPayOutcome.StayPending;
        JsonElement sent;
        try
        {
            sent = await ApiClient.ExpectAsync(await Api.RefundAsync(id, first), HttpStatusCode.OK);
        }
        finally
        {
            Lnbits.PayOutcome = FakeLnbitsPayOutcome.Succeed;
        }
        Assert.Contains("still settling", sent.GetProperty("message").GetString());
        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());

        // The payment fails in flight: the funds are back, and the refund is owed again.
        Lnbits.SettleOutgoing(sent.GetProperty("paymentHash").GetString()!, succeeded: false);
        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        var second = AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow());
        await ApiClient.ExpectAsync(await Api.RefundAsync(id, second), HttpStatusCode.OK);
        Assert.Equal("paid", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        Assert.Single(Lnbits.Payments, p => p.Bolt11 == first || p.Bolt11 == second);
    }

    [Fact]
    public async Task ConcurrentRefundClaims_PayOnceAtLnbits()
    {
        var (id, owed) = await CompleteJobAsync();
        var invoices = Enumerable.Range(0, 12).Select(_ => AgentApi.Invoice(owed, Bolt11Network.Bitcoin, fixture.Clock.GetUtcNow())).ToList();

        var answers = await Task.WhenAll(invoices.Select(invoice => Api.RefundAsync(id, invoice)));

        Assert.Single(answers, a => a.StatusCode == HttpStatusCode.OK);
        Assert.All(answers.Where(a => a.StatusCode != HttpStatusCode.OK), a => Assert.Equal(HttpStatusCode.Conflict, a.StatusCode));
        Assert.Single(Lnbits.Payments, p => invoices.Contains(p.Bolt11));
    }

    [Fact]
    public async Task WhileLnbitsIsDown_ReadsAnswerTheJobAsItIs_AndItMovesOnOnceLnbitsIsBack()
    {
        var created = await Api.CreateAsync("Anything.");
        var id = created.GetProperty("jobId").GetString()!;
        Assert.True(Lnbits.MarkPaid(Invoice(created.GetProperty("evalInvoice")).PaymentHash));
        Lnbits.Gate.Close();
        try
        {
            // The node's 10 s request timeout runs on the node's clock.
            var before = Lnbits.Requests;
            var reading = Api.GetAsync(id);
            await Eventually.TrueAsync(() => Lnbits.Requests > before, "the check reaches LNbits");
            fixture.Clock.Advance(TimeSpan.FromSeconds(11));
            Assert.Equal("awaiting_eval_payment", (await reading).GetProperty("state").GetString());
        }
        finally
        {
            Lnbits.Gate.Open();
        }
        Assert.Equal("evaluating", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(false, "no", 1));
        Assert.Equal("rejected", (await Api.GetAsync(id)).GetProperty("state").GetString());
    }

    private FakeLnbitsInvoice Invoice(JsonElement shown) =>
        Assert.Single(Lnbits.Invoices, i => i.PaymentRequest == shown.GetProperty("paymentRequest").GetString());

    private async Task<(string Id, long RefundSats)> CompleteJobAsync()
    {
        var created = await Api.CreateAsync("Anything.");
        var id = created.GetProperty("jobId").GetString()!;
        Lnbits.MarkPaid(Invoice(created.GetProperty("evalInvoice")).PaymentHash);
        Assert.Equal("evaluating", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(true, "ok", 5000));
        Lnbits.MarkPaid(Invoice((await Api.GetAsync(id)).GetProperty("workInvoice")).PaymentHash);
        Assert.Equal("executing", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var work = await AgentWorkers.TakeAsync(fixture.Worker, fixture.WorkModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, work.Id, "done", 1, 1);
        var complete = await Api.GetAsync(id);
        Assert.Equal("complete", complete.GetProperty("state").GetString());
        return (id, AgentApi.Long(complete.GetProperty("costLedger"), "refundAmountSats"));
    }
}
