using System.Net;
using System.Text.Json;
using Coordinator.Grains.Lightning.Bolt11;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>Pay-per-job in stub mode, over HTTP: invoices paid through the development route, a fake worker on the grid.</summary>
public sealed class AgentJobsStubTests(StubAgentFixture fixture) : IClassFixture<StubAgentFixture>
{
    private AgentApi Api => fixture.Api;

    [Fact]
    public async Task Healthz_IsOk()
    {
        var body = await ApiClient.ExpectAsync(await Api.Http.GetAsync("healthz"), HttpStatusCode.OK);
        Assert.Equal("""{"status":"ok"}""", body.GetRawText());
    }

    [Fact]
    public async Task HappyPath_EvalWorkAndRefund_WithExactPricesAndLedger()
    {
        var created = await Api.CreateAsync("Write a haiku about queues.");
        Assert.Equal(["jobId", "createdAt", "evalInvoice"], created.EnumerateObject().Select(p => p.Name));
        var id = created.GetProperty("jobId").GetString()!;
        Assert.Matches("^[0-9a-f]{32}$", id);
        var evalInvoice = created.GetProperty("evalInvoice");
        Assert.Equal(10, AgentApi.Long(evalInvoice, "amountSats"));
        Assert.StartsWith("lnbcrt10u1stub_", evalInvoice.GetProperty("paymentRequest").GetString());
        Assert.Matches("^[0-9a-f]{64}$", evalInvoice.GetProperty("paymentHash").GetString());
        Assert.Equal(fixture.Clock.GetUtcNow(), created.GetProperty("createdAt").GetDateTimeOffset(), TimeSpan.FromMilliseconds(1));

        // Unpaid: reads change nothing.
        var unpaid = await Api.GetAsync(id);
        Assert.Equal(["jobId", "state", "createdAt", "evalInvoice"], unpaid.EnumerateObject().Select(p => p.Name));
        Assert.Equal("awaiting_eval_payment", unpaid.GetProperty("state").GetString());

        await Api.PayStubAsync(evalInvoice);
        Assert.Equal("evaluating", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        Assert.Contains("Write a haiku about queues.", eval.Prompt);
        Assert.Contains("estimated_tokens", eval.Prompt);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(true, "A short poem is fine.", 2000));

        // 2,000 tokens at 0.5 USD per 1,000 = 1.00; + 0.01 infrastructure = 1.01; + 20 % = 1.212 USD;
        // at 70,000 USD per BTC that is 1,731.43 sats, rounded up to 1,732.
        var quoted = await Api.GetAsync(id);
        Assert.Equal("awaiting_work_payment", quoted.GetProperty("state").GetString());
        Assert.Equal("A short poem is fine.", quoted.GetProperty("reason").GetString());
        var workInvoice = quoted.GetProperty("workInvoice");
        Assert.Equal(1732, AgentApi.Long(workInvoice, "amountSats"));
        Assert.StartsWith("lnbcrt1732u1stub_", workInvoice.GetProperty("paymentRequest").GetString());
        var pricing = quoted.GetProperty("pricingBreakdown");
        Assert.Equal((1.212m, 20m, 70_000m), (AgentApi.Decimal(pricing, "estimatedCostUsd"), AgentApi.Decimal(pricing, "marginPct"), AgentApi.Decimal(pricing, "btcPriceUsd")));

        // The price is locked: a new BTC price after the quote changes nothing of this job.
        fixture.Oracle.UsdPrice = 10_000m;
        fixture.Clock.Advance(TimeSpan.FromMinutes(2));
        await Api.PayStubAsync(workInvoice);
        Assert.Equal("executing", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var work = await AgentWorkers.TakeAsync(fixture.Worker, fixture.WorkModel);
        Assert.Equal("Write a haiku about queues.", work.Prompt);
        await AgentWorkers.CompleteAsync(fixture.Worker, work.Id, "Rows wait in order", inputTokens: 300, outputTokens: 500);

        // 800 tokens: 0.40 USD raw; (0.40 + 0.01) × 1.2 = 0.492 USD charged = 702.86 sats at the locked price, so 703;
        // the refund is 1,732 − 703 = 1,029 sats.
        var complete = await Api.GetAsync(id);
        Assert.Equal("complete", complete.GetProperty("state").GetString());
        Assert.Equal("Rows wait in order", complete.GetProperty("result").GetString());
        Assert.Equal(fixture.Clock.GetUtcNow(), complete.GetProperty("completedAt").GetDateTimeOffset(), TimeSpan.FromMilliseconds(1));
        var ledger = complete.GetProperty("costLedger");
        Assert.Equal((300L, 500L, 800L), (AgentApi.Long(ledger, "actualInputTokens"), AgentApi.Long(ledger, "actualOutputTokens"), AgentApi.Long(ledger, "totalTokens")));
        Assert.Equal((0.4m, 0.492m, 1.212m), (AgentApi.Decimal(ledger, "actualCostUsd"), AgentApi.Decimal(ledger, "actualChargeUsd"), AgentApi.Decimal(ledger, "estimatedCostUsd")));
        Assert.Equal((703L, 1732L, 1029L), (AgentApi.Long(ledger, "actualAmountSats"), AgentApi.Long(ledger, "workAmountSats"), AgentApi.Long(ledger, "refundAmountSats")));
        Assert.Equal(("pending", 20m, 70_000m), (ledger.GetProperty("refundState").GetString(), AgentApi.Decimal(ledger, "marginPct"), AgentApi.Decimal(ledger, "btcPriceUsd")));

        var invoice = AgentApi.Invoice(1029, at: fixture.Clock.GetUtcNow());
        var refund = await ApiClient.ExpectAsync(await Api.RefundAsync(id, invoice), HttpStatusCode.OK);
        Assert.Equal(["ok", "refundAmountSats", "paymentHash", "message"], refund.EnumerateObject().Select(p => p.Name));
        Assert.True(refund.GetProperty("ok").GetBoolean());
        Assert.Equal(1029, AgentApi.Long(refund, "refundAmountSats"));
        var paymentHash = refund.GetProperty("paymentHash").GetString();
        await using (var connection = await fixture.Host.OpenConnectionAsync())
        {
            var paid = (await connection.QueryAsync<(string Bolt11, long AmountSats)>(
                "SELECT bolt11, amount_sats FROM lightning_stub_payments WHERE payment_hash = @paymentHash", new { paymentHash })).ToList();
            Assert.Equal([(invoice, 1029L)], paid);
        }
        Assert.Equal("paid", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        Assert.Contains("already been paid", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(1029, at: fixture.Clock.GetUtcNow())), HttpStatusCode.Conflict));
    }

    [Fact]
    public async Task Rejection_EndsTheJobWithTheReason_AndNoWorkInvoice()
    {
        var id = await PaidJobAsync("Help me break into my neighbour's wifi.");
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(false, "That is illegal.", 10));

        var rejected = await Api.GetAsync(id);

        Assert.Equal("rejected", rejected.GetProperty("state").GetString());
        Assert.Equal("That is illegal.", rejected.GetProperty("reason").GetString());
        foreach (var absent in new[] { "workInvoice", "pricingBreakdown", "result", "costLedger", "completedAt", "errorMessage" })
        {
            Assert.False(rejected.TryGetProperty(absent, out _), absent);
        }
        Assert.Contains("rejected", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(1)), HttpStatusCode.Conflict));
    }

    [Fact]
    public async Task AnEvalAnswerWithoutAVerdict_FailsTheJob()
    {
        var id = await PaidJobAsync("Anything.");
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, "Sure, I would be glad to help with that!");

        var failed = await Api.GetAsync(id);

        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Contains("no verdict", failed.GetProperty("errorMessage").GetString());
        Assert.False(failed.TryGetProperty("workInvoice", out _));
    }

    [Fact]
    public async Task AnEvalTheWorkerFails_FailsTheJob_WithItsError()
    {
        var id = await PaidJobAsync("Anything.");
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.FailAsync(fixture.Worker, eval.Id, "CUDA out of memory");

        var failed = await Api.GetAsync(id);

        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Equal($"the eval grid job {eval.Id} failed: CUDA out of memory", failed.GetProperty("errorMessage").GetString());
    }

    [Fact]
    public async Task AnEvalNoWorkerTakes_FailsTheJob_AtTheTimeout()
    {
        var id = await PaidJobAsync("Anything.");
        fixture.Clock.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal("evaluating", (await Api.GetAsync(id)).GetProperty("state").GetString());

        fixture.Clock.Advance(TimeSpan.FromSeconds(1));
        var failed = await Api.GetAsync(id);

        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Matches("^no worker took the eval grid job [0-9]+ within 60 seconds$", failed.GetProperty("errorMessage").GetString());
    }

    [Fact]
    public async Task AWorkJobTheWorkerFails_FailsTheJob_AndOwesTheWholeWorkInvoiceBack()
    {
        var id = await PaidJobAsync("Anything.");
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(true, "ok", 100));
        var workInvoice = (await Api.GetAsync(id)).GetProperty("workInvoice");
        await Api.PayStubAsync(workInvoice);
        Assert.Equal("executing", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var work = await AgentWorkers.TakeAsync(fixture.Worker, fixture.WorkModel);
        await AgentWorkers.FailAsync(fixture.Worker, work.Id, "backend went away");

        var failed = await Api.GetAsync(id);

        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Equal($"the work grid job {work.Id} failed: backend went away", failed.GetProperty("errorMessage").GetString());
        Assert.False(failed.TryGetProperty("completedAt", out _));
        var paidSats = AgentApi.Long(workInvoice, "amountSats");
        var ledger = failed.GetProperty("costLedger");
        Assert.Equal((0L, 0L, paidSats, paidSats, "pending"), (AgentApi.Long(ledger, "totalTokens"), AgentApi.Long(ledger, "actualAmountSats"),
            AgentApi.Long(ledger, "workAmountSats"), AgentApi.Long(ledger, "refundAmountSats"), ledger.GetProperty("refundState").GetString()));
        Assert.Contains("refund owed is exactly", await AgentApi.ErrorAsync(
            await Api.RefundAsync(id, AgentApi.Invoice(paidSats - 1, at: fixture.Clock.GetUtcNow())), HttpStatusCode.BadRequest));
        var refund = await ApiClient.ExpectAsync(await Api.RefundAsync(id, AgentApi.Invoice(paidSats, at: fixture.Clock.GetUtcNow())), HttpStatusCode.OK);
        Assert.Equal(paidSats, AgentApi.Long(refund, "refundAmountSats"));
        Assert.Equal("paid", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
    }

    [Fact]
    public async Task AnEvalTheWorkerFails_OwesNoRefund_409()
    {
        var id = await PaidJobAsync("Anything.");
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.FailAsync(fixture.Worker, eval.Id, "CUDA out of memory");

        var failed = await Api.GetAsync(id);

        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.False(failed.TryGetProperty("costLedger", out _));
        Assert.Contains("before its work was paid for", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(1)), HttpStatusCode.Conflict));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ARefundWhoseClaimDiedWhilePaying_IsSettledByAskingTheNode(bool thePaymentWentOut)
    {
        var (id, owed) = await CompleteJobAsync(estimatedTokens: 5000, inputTokens: 1, outputTokens: 1);
        // A claim won the refund for an invoice and its silo died: before paying it, or just after.
        var lost = AgentApi.Invoice(owed, at: fixture.Clock.GetUtcNow());
        Assert.True(Bolt11Decoder.TryDecode(lost, out var decoded, out _));
        var lostHash = decoded.PaymentHash;
        await using (var connection = await fixture.Host.OpenConnectionAsync())
        {
            await connection.ExecuteAsync("""
                UPDATE lightning_agent_jobs SET refund_state = 'paying', refund_payment_hash = @lostHash, refund_claimed_at = @now WHERE id = @id
                """, new { id, lostHash, now = fixture.Clock.GetUtcNow().UtcDateTime });
            if (thePaymentWentOut)
            {
                await connection.ExecuteAsync("""
                    INSERT INTO lightning_stub_payments (payment_hash, bolt11, amount_sats, created_at) VALUES (@lostHash, @lost, @owed, now())
                    """, new { lostHash, lost, owed });
            }
        }

        var read = (await Api.GetAsync(id)).GetProperty("costLedger");

        if (thePaymentWentOut)
        {
            Assert.Equal(("paid", owed), (read.GetProperty("refundState").GetString(), AgentApi.Long(read, "refundAmountSats")));
            Assert.Contains("already been paid", await AgentApi.ErrorAsync(
                await Api.RefundAsync(id, AgentApi.Invoice(owed, at: fixture.Clock.GetUtcNow())), HttpStatusCode.Conflict));
            return;
        }
        // The node knows no such payment, but it might still be on its way: held until the settle window (3 × 10 s) passes.
        Assert.Equal("pending", read.GetProperty("refundState").GetString());
        Assert.Contains("being paid", await AgentApi.ErrorAsync(
            await Api.RefundAsync(id, AgentApi.Invoice(owed, at: fixture.Clock.GetUtcNow())), HttpStatusCode.Conflict));
        fixture.Clock.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        var again = AgentApi.Invoice(owed, at: fixture.Clock.GetUtcNow());
        await ApiClient.ExpectAsync(await Api.RefundAsync(id, again), HttpStatusCode.OK);
        await using var check = await fixture.Host.OpenConnectionAsync();
        Assert.Equal(1, await check.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM lightning_stub_payments WHERE bolt11 = ANY(@invoices)", new { invoices = new[] { lost, again } }));
    }

    [Theory]
    [InlineData("{}", "request is required")]
    [InlineData("""{"request": ""}""", "request is required")]
    [InlineData("""{"request": "   "}""", "request is required")]
    [InlineData("""{"request": 42}""", "request must be a string")]
    [InlineData("""{"request": null}""", "request is required")]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[]", "must be a JSON object")]
    [InlineData("", "not valid JSON")]
    public async Task Create_ABadBody_Is400(string body, string expected)
    {
        Assert.Contains(expected, await AgentApi.ErrorAsync(await Api.PostRawAsync("jobs", body), HttpStatusCode.BadRequest));
    }

    [Fact]
    public async Task Create_ARequestOverTheLimit_Is400_AndTheWrongContentTypeToo()
    {
        var tooLong = JsonSerializer.Serialize(new { request = new string('a', 16_385) });
        Assert.Contains("larger than the limit of 16384 bytes", await AgentApi.ErrorAsync(await Api.PostRawAsync("jobs", tooLong), HttpStatusCode.BadRequest));
        Assert.Contains("Content-Type: application/json",
            await AgentApi.ErrorAsync(await Api.PostRawAsync("jobs", """{"request": "hi"}""", "text/plain"), HttpStatusCode.BadRequest));
    }

    [Fact]
    public async Task WhatTheHostAnswersItself_UnknownRoutesWrongMethodsAndBodiesPastTheServersLimit_IsTheSpecsError()
    {
        Assert.Contains("no such endpoint", await AgentApi.ErrorAsync(await Api.Http.GetAsync("nothing/here"), HttpStatusCode.NotFound));
        // A conversation id that is not an integer matches no route: before the key is asked for.
        Assert.Contains("integers", await AgentApi.ErrorAsync(await Api.Http.GetAsync("gemini/conversations/not-a-number"), HttpStatusCode.NotFound));
        Assert.Contains("method", await AgentApi.ErrorAsync(await Api.Http.PutAsync("jobs", null), HttpStatusCode.MethodNotAllowed));
        using var huge = new HttpRequestMessage(HttpMethod.Post, "jobs")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { request = new string('a', 9 * 1024 * 1024) }), System.Text.Encoding.UTF8, "application/json"),
        };
        // The server refuses the declared length before the body is sent; without this it may close the connection under a client still sending.
        huge.Headers.ExpectContinue = true;
        Assert.Contains("larger than this server accepts", await AgentApi.ErrorAsync(await Api.Http.SendAsync(huge), HttpStatusCode.RequestEntityTooLarge));
    }

    [Fact]
    public async Task UnknownIds_Are404()
    {
        Assert.Contains("no job", await AgentApi.ErrorAsync(await Api.Http.GetAsync("jobs/0123456789abcdef0123456789abcdef"), HttpStatusCode.NotFound));
        Assert.Contains("no job", await AgentApi.ErrorAsync(await Api.RefundAsync("nope", AgentApi.Invoice(1)), HttpStatusCode.NotFound));
    }

    [Fact]
    public async Task Refund_BeforeTheJobIsComplete_Is409_AndWithoutAnInvoice400()
    {
        var id = (await Api.CreateAsync("Anything.")).GetProperty("jobId").GetString()!;

        Assert.Contains("awaiting_eval_payment", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(1)), HttpStatusCode.Conflict));
        Assert.Contains("invoice is required", await AgentApi.ErrorAsync(await Api.PostAsync($"jobs/{id}/refund", new { }), HttpStatusCode.BadRequest));
        Assert.Contains("invoice must be a string", await AgentApi.ErrorAsync(await Api.PostAsync($"jobs/{id}/refund", new { invoice = 5 }), HttpStatusCode.BadRequest));
    }

    [Fact]
    public async Task Refund_OfAnInvoiceThatIsNotForExactlyTheRefundOnThisNetwork_Is400_AndTheRefundStaysOwed()
    {
        var (id, owed) = await CompleteJobAsync(estimatedTokens: 2000, inputTokens: 10, outputTokens: 10);
        var now = fixture.Clock.GetUtcNow();
        var good = AgentApi.Invoice(owed, at: now);
        var badChecksum = good[..^1] + (good[^1] == 'q' ? 'p' : 'q');

        Assert.Contains("refund owed is exactly", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(owed - 1, at: now)), HttpStatusCode.BadRequest));
        Assert.Contains("no amount", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(null, at: now)), HttpStatusCode.BadRequest));
        Assert.Contains("expired", await AgentApi.ErrorAsync(await Api.RefundAsync(id,
            AgentApi.Invoice(owed, at: now.AddHours(-2), expiry: TimeSpan.FromHours(1))), HttpStatusCode.BadRequest));
        Assert.Contains("this node pays on regtest", await AgentApi.ErrorAsync(await Api.RefundAsync(id,
            AgentApi.Invoice(owed, Bolt11Network.Bitcoin, at: now)), HttpStatusCode.BadRequest));
        await AgentApi.ErrorAsync(await Api.RefundAsync(id, badChecksum), HttpStatusCode.BadRequest);
        await AgentApi.ErrorAsync(await Api.RefundAsync(id, "garbage"), HttpStatusCode.BadRequest);

        Assert.Equal("pending", (await Api.GetAsync(id)).GetProperty("costLedger").GetProperty("refundState").GetString());
        var paid = await ApiClient.ExpectAsync(await Api.RefundAsync(id, good), HttpStatusCode.OK);
        Assert.Equal(owed, AgentApi.Long(paid, "refundAmountSats"));
    }

    [Fact]
    public async Task Refund_WhenTheWorkCostWhatItWasCharged_IsNotOwed_409()
    {
        // 100 tokens estimated and 100 used: the charge is the invoice's, rounding aside.
        var (id, owed) = await CompleteJobAsync(estimatedTokens: 100, inputTokens: 60, outputTokens: 40);

        Assert.Equal(0, owed);
        var ledger = (await Api.GetAsync(id)).GetProperty("costLedger");
        Assert.Equal("not_applicable", ledger.GetProperty("refundState").GetString());
        Assert.Contains("no refund is owed", await AgentApi.ErrorAsync(await Api.RefundAsync(id, AgentApi.Invoice(1, at: fixture.Clock.GetUtcNow())), HttpStatusCode.Conflict));
    }

    [Fact]
    public async Task ConcurrentRefundClaims_PayOnce()
    {
        var (id, owed) = await CompleteJobAsync(estimatedTokens: 5000, inputTokens: 1, outputTokens: 1);
        var invoices = Enumerable.Range(0, 12).Select(_ => AgentApi.Invoice(owed, at: fixture.Clock.GetUtcNow())).ToList();

        var answers = await Task.WhenAll(invoices.Select(invoice => Api.RefundAsync(id, invoice)));

        Assert.Single(answers, a => a.StatusCode == HttpStatusCode.OK);
        Assert.All(answers.Where(a => a.StatusCode != HttpStatusCode.OK), a => Assert.Equal(HttpStatusCode.Conflict, a.StatusCode));
        await using var connection = await fixture.Host.OpenConnectionAsync();
        Assert.Equal(1, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM lightning_stub_payments WHERE bolt11 = ANY(@invoices)", new { invoices }));
    }

    /// <summary>A job whose eval fee is paid and whose eval grid job is submitted.</summary>
    private async Task<string> PaidJobAsync(string request)
    {
        var created = await Api.CreateAsync(request);
        var id = created.GetProperty("jobId").GetString()!;
        await Api.PayStubAsync(created.GetProperty("evalInvoice"));
        Assert.Equal("evaluating", (await Api.GetAsync(id)).GetProperty("state").GetString());
        return id;
    }

    /// <summary>A complete job and the refund it owes.</summary>
    private async Task<(string Id, long RefundSats)> CompleteJobAsync(long estimatedTokens, int inputTokens, int outputTokens)
    {
        var id = await PaidJobAsync("Anything.");
        var eval = await AgentWorkers.TakeAsync(fixture.Worker, fixture.EvalModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, eval.Id, AgentSettings.Verdict(true, "ok", estimatedTokens));
        await Api.PayStubAsync((await Api.GetAsync(id)).GetProperty("workInvoice"));
        Assert.Equal("executing", (await Api.GetAsync(id)).GetProperty("state").GetString());
        var work = await AgentWorkers.TakeAsync(fixture.Worker, fixture.WorkModel);
        await AgentWorkers.CompleteAsync(fixture.Worker, work.Id, "done", inputTokens, outputTokens);
        var complete = await Api.GetAsync(id);
        Assert.Equal("complete", complete.GetProperty("state").GetString());
        return (id, AgentApi.Long(complete.GetProperty("costLedger"), "refundAmountSats"));
    }
}
