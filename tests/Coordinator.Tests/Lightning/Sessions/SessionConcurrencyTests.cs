using System.Net;
using Coordinator.Grains.Lightning.Sessions;
using Dapper;
using static Coordinator.Tests.Lightning.Sessions.AgentApi;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// The money invariants of sessions under concurrency on two silos: a payment is credited once, a top-up is offered
/// once, every request debits exactly once, and a balance never goes below 0.
/// </summary>
public class SessionConcurrencyTests(TwoAgentNodesFixture nodes) : IClassFixture<TwoAgentNodesFixture>
{
    [Fact]
    public async Task ManyConcurrentRequests_OnTwoSilos_EachDebitExactlyOnce()
    {
        const int Requests = 24;
        var (id, macaroon) = await OpenActiveAsync(nodes.ClientA, 10_000);
        var answers = await Task.WhenAll(Enumerable.Range(0, Requests).Select(i => RunAsync(nodes.Either(i), id, macaroon, $"request {i}, tokens=100")));

        var cost = EvalFeeSats + WorkSats(100);
        Assert.Equal(22, cost);
        Assert.All(answers, a => Assert.Equal(cost, a.GetProperty("debitedSats").GetInt64()));
        // Each debit saw the balance the one before it left: the remainders are exactly the steps down from the deposit.
        Assert.Equal(Enumerable.Range(1, Requests).Select(k => 10_000 - k * cost), answers.Select(a => a.GetProperty("balanceRemaining").GetInt64()).OrderDescending());
        Assert.Equal(10_000 - Requests * cost, (await GetAsync(nodes.ClientB, id)).GetProperty("balanceSats").GetInt64());

        await using var connection = await nodes.A.OpenConnectionAsync();
        var (rows, debited) = await connection.QuerySingleAsync<(long Rows, long Debited)>(
            "SELECT count(*), coalesce(sum(debited_sats), 0)::bigint FROM lightning_session_requests WHERE session_id = @id", new { id });
        Assert.Equal((Requests, Requests * cost), (rows, debited));
    }

    [Fact]
    public async Task ConcurrentRequests_ThatOverdrawTheBalance_StopAtZero_AndTheDebitsAddUpToTheBalanceTaken()
    {
        var (id, macaroon) = await OpenActiveAsync(nodes.ClientA, 400);
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => RequestAsync(nodes.Either(i), id, macaroon, $"big {i}, tokens=1000")));
        var answered = new List<System.Text.Json.JsonElement>();
        foreach (var response in responses)
        {
            // Admitted requests answer 200; those admitted after the balance fell below the minimum, 402 or 409 (paused).
            Assert.Contains(response.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.PaymentRequired, HttpStatusCode.Conflict });
            if (response.StatusCode == HttpStatusCode.OK) answered.Add(await ExpectAsync(response, HttpStatusCode.OK));
        }
        Assert.All(answered, a => Assert.InRange(a.GetProperty("debitedSats").GetInt64(), 0, 130));
        var balance = (await GetAsync(nodes.ClientB, id)).GetProperty("balanceSats").GetInt64();
        Assert.InRange(balance, 0, 400);
        Assert.Equal(400 - balance, answered.Sum(a => a.GetProperty("debitedSats").GetInt64()));
        // Requests are admitted while the balance is at least the minimum, and each takes up to 130: once four or more
        // were admitted (they usually all are, before any has finished), the fourth took the last 10 and the rest nothing.
        if (answered.Count >= 4) Assert.Equal(0, balance);

        await using var connection = await nodes.A.OpenConnectionAsync();
        Assert.Equal(answered.Count, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM lightning_session_requests WHERE session_id = @id", new { id }));
    }

    [Fact]
    public async Task ConcurrentReads_OnTwoSilos_CreditTheDepositAndATopupOnce()
    {
        var (id, hash) = await OpenAsync(nodes.ClientA, 500);
        await PayAsync(nodes.ClientB, hash);
        var reads = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => GetAsync(nodes.Either(i), id)));
        Assert.All(reads, r => Assert.Equal(("active", 500L), (r.GetProperty("state").GetString(), r.GetProperty("balanceSats").GetInt64())));

        var macaroon = reads[0].GetProperty("macaroon").GetString()!;
        var topups = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => PostAsync(nodes.Either(i), $"sessions/{id}/topup", new { amount_sats = 200 }, macaroon)));
        Assert.Equal(1, topups.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(9, topups.Count(r => r.StatusCode == HttpStatusCode.Conflict));
        var topup = await ExpectAsync(topups.Single(r => r.StatusCode == HttpStatusCode.OK), HttpStatusCode.OK);
        await PayAsync(nodes.ClientA, topup.GetProperty("topup").GetProperty("paymentHash").GetString()!);

        reads = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => GetAsync(nodes.Either(i), id)));
        Assert.All(reads, r => Assert.Equal(700, r.GetProperty("balanceSats").GetInt64()));
        await using var connection = await nodes.A.OpenConnectionAsync();
        Assert.Equal(1, await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM lightning_session_topups WHERE session_id = @id", new { id }));
    }

    [Fact]
    public async Task TheStore_DecidesBetweenTwoSilos_ACreditOrADebitAppliesOnce_WhateverActivationsAsk()
    {
        // The grain keeps one silo from asking twice; the statements keep two activations (a silo thought dead) from it.
        var stores = new[] { nodes.A.Get<SessionStore>(), nodes.B.Get<SessionStore>() };
        var (id, macaroon) = await OpenActiveAsync(nodes.ClientA, 1_000);
        var topup = await ExpectAsync(await PostAsync(nodes.ClientA, $"sessions/{id}/topup", new { amount_sats = 300 }, macaroon), HttpStatusCode.OK);
        var hash = topup.GetProperty("topup").GetProperty("paymentHash").GetString()!;
        var now = DateTimeOffset.UtcNow;
        var day = TimeSpan.FromHours(24);

        var credits = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => stores[i % 2].CreditTopupAsync(id, hash, now, day, CancellationToken.None)));
        Assert.Equal(1, credits.Count(c => c));

        var charge = new SessionCharge(SessionIds.NewRequestId(), SessionRequestStates.Complete, 10, 90, BtcUsd, null, null);
        var debits = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => stores[i % 2].DebitAsync(id, charge, now, day, MinimumBalanceSats, CancellationToken.None)));
        Assert.All(debits, d => Assert.Equal(new SessionDebit(100, 1_200), d));
        Assert.Equal(1_200, (await GetAsync(nodes.ClientB, id)).GetProperty("balanceSats").GetInt64());
    }
}
