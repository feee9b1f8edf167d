using System.Net;
using Coordinator.Grains.Lightning.Bolt11;
using Coordinator.Tests.Infrastructure;
using Coordinator.Tests.Lightning.Payments;
using Dapper;

namespace Coordinator.Tests.Lightning.Agent;

/// <summary>Two silos on one database against one LNbits: concurrent reads and refund claims on both take each step once.</summary>
public sealed class AgentClusterTests
{
    [Fact]
    public async Task ConcurrentReadsOnTwoSilos_RunOneEval_IssueOneWorkInvoice_RunOneWork_AndConcurrentClaimsPayOnce()
    {
        await using var oracle = await FakePriceOracle.StartAsync();
        await using var lnbits = await FakeLnbits.StartAsync();
        var (evalModel, workModel) = (ApiClient.Unique("eval") + ":1b", ApiClient.Unique("work") + ":8b");
        var settings = AgentSettings.For(evalModel, workModel, oracle, lnbits);
        await using var a = await GridHost.StartAsync(settings: settings);
        await using var b = await GridHost.StartAsync(a.ConnectionString, settings: settings);
        await Eventually.TrueAsync(() => a.IsActive && b.IsActive, "both silos are active");
        using var apiA = new AgentApi(a);
        using var apiB = new AgentApi(b);
        var worker = await AgentWorkers.NewAsync(a, evalModel, workModel);

        var created = await apiA.CreateAsync("Explain idempotency keys.");
        var id = created.GetProperty("jobId").GetString()!;
        string HashOf(string paymentRequest) => lnbits.Invoices.Single(i => i.PaymentRequest == paymentRequest).PaymentHash;
        Task<string[]> ReadEverywhereAsync() => Task.WhenAll(Enumerable.Range(0, 40).Select(async i =>
            (await (i % 2 == 0 ? apiA : apiB).GetAsync(id)).GetProperty("state").GetString()!));

        lnbits.MarkPaid(HashOf(created.GetProperty("evalInvoice").GetProperty("paymentRequest").GetString()!));
        Assert.All(await ReadEverywhereAsync(), state => Assert.Equal("evaluating", state));
        var eval = await AgentWorkers.TakeAsync(worker, evalModel);
        await AgentWorkers.CompleteAsync(worker, eval.Id, AgentSettings.Verdict(true, "ok", 5000));

        Assert.All(await ReadEverywhereAsync(), state => Assert.Equal("awaiting_work_payment", state));
        var workInvoices = lnbits.Invoices.Where(i => i.Memo.Contains(id, StringComparison.Ordinal) && i.Memo.EndsWith("work", StringComparison.Ordinal)).ToList();
        var workInvoice = Assert.Single(workInvoices);
        lnbits.MarkPaid(workInvoice.PaymentHash);
        Assert.All(await ReadEverywhereAsync(), state => Assert.Equal("executing", state));
        var work = await AgentWorkers.TakeAsync(worker, workModel);
        await AgentWorkers.CompleteAsync(worker, work.Id, "done", 1, 1);
        Assert.All(await ReadEverywhereAsync(), state => Assert.Equal("complete", state));

        await using (var connection = await a.OpenConnectionAsync())
        {
            var keys = (await connection.QueryAsync<string>(
                "SELECT idempotency_key FROM idempotency_keys WHERE idempotency_key LIKE @prefix ORDER BY 1", new { prefix = $"lightning-job:{id}:%" })).ToList();
            Assert.Equal([$"lightning-job:{id}:eval", $"lightning-job:{id}:work"], keys);
            Assert.Equal(2, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM jobs WHERE model IN (@evalModel, @workModel)", new { evalModel, workModel }));
        }
        Assert.Equal(2, lnbits.Invoices.Count(i => i.Memo.Contains(id, StringComparison.Ordinal)));

        var owed = AgentApi.Long((await apiB.GetAsync(id)).GetProperty("costLedger"), "refundAmountSats");
        var invoices = Enumerable.Range(0, 16).Select(_ => AgentApi.Invoice(owed, Bolt11Network.Bitcoin)).ToList();
        var answers = await Task.WhenAll(invoices.Select((invoice, i) => (i % 2 == 0 ? apiA : apiB).RefundAsync(id, invoice)));
        Assert.Single(answers, r => r.StatusCode == HttpStatusCode.OK);
        Assert.All(answers.Where(r => r.StatusCode != HttpStatusCode.OK), r => Assert.Equal(HttpStatusCode.Conflict, r.StatusCode));
        Assert.Single(lnbits.Payments, p => invoices.Contains(p.Bolt11));
    }

    [Fact]
    public async Task InProduction_TheStubsDevelopmentRouteIsAbsent_AndTheAgentApiIsThere()
    {
        await using var oracle = await FakePriceOracle.StartAsync();
        var settings = AgentSettings.For(ApiClient.Unique("eval") + ":1b", ApiClient.Unique("work") + ":8b", oracle);
        settings["environment"] = "Production";
        await using var host = await GridHost.StartAsync(settings: settings);
        using var api = new AgentApi(host);
        var created = await api.CreateAsync("Anything.");
        var hash = created.GetProperty("evalInvoice").GetProperty("paymentHash").GetString();

        var paid = await api.Http.PostAsync($"dev/stub/pay/{hash}", null);

        Assert.Equal(HttpStatusCode.NotFound, paid.StatusCode);
        Assert.Equal("awaiting_eval_payment", (await api.GetAsync(created.GetProperty("jobId").GetString()!)).GetProperty("state").GetString());
        Assert.Equal(Microsoft.Extensions.Hosting.Environments.Production, host.Get<Microsoft.Extensions.Hosting.IHostEnvironment>().EnvironmentName);
    }
}
