using System.Net;
using Coordinator.Grains.Lightning.Macaroons;
using Coordinator.Grains.Lightning.Sessions;
using Coordinator.Tests.Infrastructure;
using Dapper;
using static Coordinator.Tests.Lightning.Sessions.AgentApi;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// <c>/api/sessions</c> on one node in stub mode: a session's life from deposit to expiry, its requests' charges, the
/// macaroon checks, and the 402/409/410 answers, with time moved by the test's clock.
/// </summary>
public class SessionLifeTests(AgentHostFixture fixture) : IClassFixture<AgentHostFixture>
{
    private HttpClient Client => fixture.Client;

    [Fact]
    public async Task ASession_IsOpenedPaidAndUsed_InTheSpecsShapes_AndEachRequestDebitsItsActualCost()
    {
        var created = await ExpectAsync(await PostAsync(Client, "sessions", new { amount_sats = 500 }), HttpStatusCode.Created);
        Assert.Equal(["sessionId", "state", "invoice"], created.EnumerateObject().Select(p => p.Name));
        Assert.Equal("awaiting_payment", created.GetProperty("state").GetString());
        var id = created.GetProperty("sessionId").GetString()!;
        var invoice = created.GetProperty("invoice");
        Assert.StartsWith("lnbcrt500u1stub_", invoice.GetProperty("paymentRequest").GetString(), StringComparison.Ordinal);
        Assert.Equal(500, invoice.GetProperty("amountSats").GetInt64());
        var hash = invoice.GetProperty("paymentHash").GetString()!;

        var unpaid = await GetAsync(Client, id);
        Assert.Equal(["sessionId", "state", "balanceSats", "minimumBalanceSats", "invoice"], unpaid.EnumerateObject().Select(p => p.Name));
        Assert.Equal("awaiting_payment", unpaid.GetProperty("state").GetString());
        Assert.Equal(0, unpaid.GetProperty("balanceSats").GetInt64());
        Assert.Equal(MinimumBalanceSats, unpaid.GetProperty("minimumBalanceSats").GetInt64());
        Assert.Equal(hash, unpaid.GetProperty("invoice").GetProperty("paymentHash").GetString());

        await PayAsync(Client, hash);
        var paidAt = fixture.Clock.GetUtcNow();
        var active = await GetAsync(Client, id);
        Assert.Equal(["sessionId", "state", "balanceSats", "minimumBalanceSats", "macaroon", "expiresAt"], active.EnumerateObject().Select(p => p.Name));
        Assert.Equal("active", active.GetProperty("state").GetString());
        Assert.Equal(500, active.GetProperty("balanceSats").GetInt64());
        Assert.Equal(paidAt + TimeSpan.FromHours(24), active.GetProperty("expiresAt").GetDateTimeOffset());
        // Reading it again credits nothing more.
        Assert.Equal(500, (await GetAsync(Client, id)).GetProperty("balanceSats").GetInt64());
        var macaroon = active.GetProperty("macaroon").GetString()!;

        var complete = await RunAsync(Client, id, macaroon, "Summarise the news, tokens=1000");
        Assert.Equal(["requestId", "state", "result", "reason", "debitedSats", "balanceRemaining", "cost"], complete.EnumerateObject().Select(p => p.Name));
        Assert.Equal("complete", complete.GetProperty("state").GetString());
        Assert.Equal("done: Summarise the news, tokens=1000", complete.GetProperty("result").GetString());
        var cost = complete.GetProperty("cost");
        Assert.Equal(EvalFeeSats, cost.GetProperty("evalSats").GetInt64());
        Assert.Equal(WorkSats(1000), cost.GetProperty("workSats").GetInt64());
        Assert.Equal(120, WorkSats(1000));
        Assert.Equal(130, cost.GetProperty("totalSats").GetInt64());
        Assert.Equal(BtcUsd, cost.GetProperty("btcPriceUsd").GetDecimal());
        Assert.Equal(130, complete.GetProperty("debitedSats").GetInt64());
        Assert.Equal(370, complete.GetProperty("balanceRemaining").GetInt64());

        // A rejected request pays the eval fee only; a failed work too, and says why.
        var rejected = await RunAsync(Client, id, macaroon, "please reject this");
        Assert.Equal("rejected", rejected.GetProperty("state").GetString());
        Assert.Equal("not something this agent does", rejected.GetProperty("reason").GetString());
        Assert.False(rejected.TryGetProperty("result", out _));
        Assert.Equal((10, 0, 10, 360), Debit(rejected));
        var failed = await RunAsync(Client, id, macaroon, "please fail, tokens=5000");
        Assert.Equal("failed", failed.GetProperty("state").GetString());
        Assert.Contains("the backend broke", failed.GetProperty("errorMessage").GetString(), StringComparison.Ordinal);
        Assert.Equal((10, 0, 10, 350), Debit(failed));

        Assert.Equal(350, (await GetAsync(Client, id)).GetProperty("balanceSats").GetInt64());
        await using var connection = await fixture.Host.OpenConnectionAsync();
        var rows = (await connection.QueryAsync<(string RequestId, string State, long Debited)>(
            "SELECT request_id, state, debited_sats FROM lightning_session_requests WHERE session_id = @id ORDER BY created_at, request_id", new { id })).ToList();
        Assert.Equal(3, rows.Count);
        Assert.Equal(150, rows.Sum(r => r.Debited));
        Assert.Equal(
            new[] { complete, rejected, failed }.Select(r => r.GetProperty("requestId").GetString()).Order(),
            rows.Select(r => r.RequestId).Order());
    }

    [Fact]
    public async Task MissingForgedOrOtherSessionsMacaroons_Are401_AndDebitNothing()
    {
        var (id, macaroon) = await OpenActiveAsync(Client, 300);
        var (_, otherMacaroon) = await OpenActiveAsync(Client, 300);
        // One character changed in the middle: the signature no longer holds.
        var middle = macaroon.Length / 2;
        var tampered = macaroon[..middle] + (macaroon[middle] == 'A' ? 'B' : 'A') + macaroon[(middle + 1)..];

        foreach (var bad in new string?[] { null, "not-a-macaroon", otherMacaroon, tampered })
        {
            await ErrorAsync(await RequestAsync(Client, id, bad!, "hello"), HttpStatusCode.Unauthorized);
            await ErrorAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 100 }, bad), HttpStatusCode.Unauthorized);
        }
        // The token in another scheme is no bearer token.
        using (var basic = new HttpRequestMessage(HttpMethod.Post, $"sessions/{id}/request") { Content = JsonContent("""{"request":"hi"}""") })
        {
            basic.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic", macaroon);
            await ErrorAsync(await Client.SendAsync(basic), HttpStatusCode.Unauthorized);
        }
        var session = await GetAsync(Client, id);
        Assert.Equal(300, session.GetProperty("balanceSats").GetInt64());
        Assert.False(session.TryGetProperty("pendingTopup", out _));
        // The genuine one works.
        Assert.Equal("complete", (await RunAsync(Client, id, macaroon, "fine")).GetProperty("state").GetString());
    }

    [Fact]
    public async Task UnknownSessions_Are404_AndAnUnpaidOne_Is409()
    {
        await ErrorAsync(await Client.GetAsync("sessions/ses_00000000000000000000000000000000"), HttpStatusCode.NotFound);
        await ErrorAsync(await Client.GetAsync("sessions/not-a-session"), HttpStatusCode.NotFound);
        var macaroons = fixture.Host.Get<SessionMacaroons>();
        var unknown = SessionIds.NewSessionId();
        var forUnknown = await macaroons.MintAsync(unknown, fixture.Clock.GetUtcNow().AddHours(1));
        await ErrorAsync(await RequestAsync(Client, unknown, forUnknown, "hello"), HttpStatusCode.NotFound);

        var (id, _) = await OpenAsync(Client, 200);
        var forUnpaid = await macaroons.MintAsync(id, fixture.Clock.GetUtcNow().AddHours(1));
        Assert.Contains("deposit", await ErrorAsync(await RequestAsync(Client, id, forUnpaid, "hello"), HttpStatusCode.Conflict), StringComparison.Ordinal);
        await ErrorAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 100 }, forUnpaid), HttpStatusCode.Conflict);
    }

    [Theory]
    [InlineData("""{"amount_sats": 99}""")]
    [InlineData("""{"amount_sats": 10001}""")]
    [InlineData("""{"amount_sats": "500"}""")]
    [InlineData("""{"amount_sats": 500.5}""")]
    [InlineData("""{"amount_sats": null}""")]
    [InlineData("""{}""")]
    [InlineData("""[500]""")]
    [InlineData("""not json""")]
    public async Task BadAmounts_Are400_ToOpenAndToTopUp(string body)
    {
        await ErrorAsync(await PostJsonAsync(Client, "sessions", body), HttpStatusCode.BadRequest);
        var (id, macaroon) = await OpenActiveAsync(Client, 300);
        await ErrorAsync(await PostJsonAsync(Client, $"sessions/{id}/topup", body, macaroon), HttpStatusCode.BadRequest);
        Assert.False((await GetAsync(Client, id)).TryGetProperty("pendingTopup", out _));
    }

    [Theory]
    [InlineData("""{}""")]
    [InlineData("""{"request": ""}""")]
    [InlineData("""{"request": 42}""")]
    [InlineData("""not json""")]
    public async Task BadRequestBodies_Are400_AndDebitNothing(string body)
    {
        var (id, macaroon) = await OpenActiveAsync(Client, 300);
        await ErrorAsync(await PostJsonAsync(Client, $"sessions/{id}/request", body, macaroon), HttpStatusCode.BadRequest);
        Assert.Equal(300, (await GetAsync(Client, id)).GetProperty("balanceSats").GetInt64());
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData(null)]
    public async Task BodiesNotSentAsJson_Are400_AndOpenTopUpOrDebitNothing(string? contentType)
    {
        var (id, macaroon) = await OpenActiveAsync(Client, 300);
        foreach (var (path, body) in new[] { ("sessions", """{"amount_sats": 500}"""), ($"sessions/{id}/topup", """{"amount_sats": 500}"""), ($"sessions/{id}/request", """{"request": "hi"}""") })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(body)) };
            if (contentType is not null) request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", macaroon);
            Assert.Contains("Content-Type: application/json", await ErrorAsync(await Client.SendAsync(request), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        }
        var session = await GetAsync(Client, id);
        Assert.Equal(300, session.GetProperty("balanceSats").GetInt64());
        Assert.False(session.TryGetProperty("pendingTopup", out _));
    }

    [Fact]
    public async Task BelowTheMinimum_ARequestIs402_ThenItPauses_AndAPaidTopupResumesIt_OneTopupAtATime()
    {
        // 100 sats is a valid deposit but below the minimum of 150: active, yet short of a request.
        var (id, macaroon) = await OpenActiveAsync(Client, 100);
        Assert.Contains("minimum", await ErrorAsync(await RequestAsync(Client, id, macaroon, "hello"), HttpStatusCode.PaymentRequired), StringComparison.Ordinal);
        Assert.Equal(100, (await GetAsync(Client, id)).GetProperty("balanceSats").GetInt64());

        var topup = await ExpectAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 200 }, macaroon), HttpStatusCode.OK);
        Assert.Equal(["sessionId", "topup"], topup.EnumerateObject().Select(p => p.Name));
        Assert.Equal(id, topup.GetProperty("sessionId").GetString());
        Assert.Equal(200, topup.GetProperty("topup").GetProperty("amountSats").GetInt64());
        var topupHash = topup.GetProperty("topup").GetProperty("paymentHash").GetString()!;
        // One outstanding at a time.
        Assert.Contains("outstanding", await ErrorAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 300 }, macaroon), HttpStatusCode.Conflict),
            StringComparison.Ordinal);
        var pending = await GetAsync(Client, id);
        Assert.Equal(topupHash, pending.GetProperty("pendingTopup").GetProperty("paymentHash").GetString());
        Assert.Equal(100, pending.GetProperty("balanceSats").GetInt64());

        await PayAsync(Client, topupHash);
        var credited = await GetAsync(Client, id);
        Assert.Equal(300, credited.GetProperty("balanceSats").GetInt64());
        Assert.False(credited.TryGetProperty("pendingTopup", out _));
        Assert.Equal(300, (await GetAsync(Client, id)).GetProperty("balanceSats").GetInt64());

        // 300 → 170 (still active) → 40: below the minimum, the session pauses.
        Assert.Equal((10, 120, 130, 170), Debit(await RunAsync(Client, id, macaroon, "one, tokens=1000")));
        Assert.Equal((10, 120, 130, 40), Debit(await RunAsync(Client, id, macaroon, "two, tokens=1000")));
        var paused = await GetAsync(Client, id);
        Assert.Equal("paused", paused.GetProperty("state").GetString());
        Assert.True(paused.TryGetProperty("macaroon", out _));
        Assert.Contains("paused", await ErrorAsync(await RequestAsync(Client, id, macaroon, "three"), HttpStatusCode.Conflict), StringComparison.Ordinal);

        // The balance never goes below 0: a request that costs more than is left takes what is left.
        var next = await ExpectAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 100 }, macaroon), HttpStatusCode.OK);
        await PayAsync(Client, next.GetProperty("topup").GetProperty("paymentHash").GetString()!);
        var resumed = await GetAsync(Client, id);
        Assert.Equal("active", resumed.GetProperty("state").GetString());
        Assert.Equal(140, resumed.GetProperty("balanceSats").GetInt64());
        // 140 is below the minimum again: the session is active but short, so 402 until more comes.
        await ErrorAsync(await RequestAsync(Client, id, macaroon, "four"), HttpStatusCode.PaymentRequired);
        var more = await ExpectAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 100 }, macaroon), HttpStatusCode.OK);
        await PayAsync(Client, more.GetProperty("topup").GetProperty("paymentHash").GetString()!);
        var overdraw = await RunAsync(Client, id, macaroon, "five, tokens=3000");
        Assert.Equal((10, 360, 240, 0), Debit(overdraw));
        Assert.Equal("paused", (await GetAsync(Client, id)).GetProperty("state").GetString());
    }

    [Fact]
    public async Task ActivityMovesTheExpiry_AnOlderMacaroonIs401WithAHint_AndAnIdleSessionExpires()
    {
        var (id, firstMacaroon) = await OpenActiveAsync(Client, 500);
        fixture.Clock.Advance(TimeSpan.FromHours(23));
        Assert.Equal("complete", (await RunAsync(Client, id, firstMacaroon, "still here")).GetProperty("state").GetString());
        var afterActivity = fixture.Clock.GetUtcNow();
        fixture.Clock.Advance(TimeSpan.FromHours(23));

        // 46 h after the deposit: the first macaroon (to 24 h) has expired, the session (to 23 + 24 h) has not.
        var session = await GetAsync(Client, id);
        Assert.Equal("active", session.GetProperty("state").GetString());
        Assert.Equal(afterActivity + TimeSpan.FromHours(24), session.GetProperty("expiresAt").GetDateTimeOffset());
        var hint = await ErrorAsync(await RequestAsync(Client, id, firstMacaroon, "again"), HttpStatusCode.Unauthorized);
        Assert.Contains($"GET /api/sessions/{id}", hint, StringComparison.Ordinal);
        var freshMacaroon = session.GetProperty("macaroon").GetString()!;
        Assert.Equal("complete", (await RunAsync(Client, id, freshMacaroon, "again")).GetProperty("state").GetString());

        var expiresAt = (await GetAsync(Client, id)).GetProperty("expiresAt").GetDateTimeOffset();
        fixture.Clock.Advance(expiresAt - fixture.Clock.GetUtcNow());
        var expired = await GetAsync(Client, id);
        Assert.Equal("expired", expired.GetProperty("state").GetString());
        Assert.False(expired.TryGetProperty("macaroon", out _));
        Assert.Contains("expired", await ErrorAsync(await RequestAsync(Client, id, freshMacaroon, "too late"), HttpStatusCode.Gone), StringComparison.Ordinal);
        await ErrorAsync(await PostAsync(Client, $"sessions/{id}/topup", new { amount_sats = 100 }, freshMacaroon), HttpStatusCode.Conflict);
        // Expiry is final: nothing moves it again.
        fixture.Clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(expiresAt, (await GetAsync(Client, id)).GetProperty("expiresAt").GetDateTimeOffset());
    }

    private static (long Eval, long Work, long Debited, long Remaining) Debit(System.Text.Json.JsonElement answer) => (
        answer.GetProperty("cost").GetProperty("evalSats").GetInt64(), answer.GetProperty("cost").GetProperty("workSats").GetInt64(),
        answer.GetProperty("debitedSats").GetInt64(), answer.GetProperty("balanceRemaining").GetInt64());

    private static StringContent JsonContent(string json) => new(json, System.Text.Encoding.UTF8, "application/json");
}
