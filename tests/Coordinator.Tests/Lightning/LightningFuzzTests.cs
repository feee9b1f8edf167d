using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Dapper;
using static Coordinator.Tests.Infrastructure.Fuzz;
using SessionApi = Coordinator.Tests.Lightning.Sessions.AgentApi;

namespace Coordinator.Tests.Lightning;

/// <summary>
/// Throws seeded random input at every endpoint of the Lightning agent API under <c>/api</c> (jobs, refunds, sessions,
/// the demo, the stub's pay route): bodies of every shape, strings that are not text, huge bodies, other content types,
/// path ids and queries of any length and bytes, bad macaroons. Whatever comes in, the answer comes, is a 2xx or a 4xx
/// in the spec's <c>ErrorResponse</c> (exactly <c>{"error": "…"}</c>), never a 5xx, and a refused request writes
/// nothing: no job row, no invoice, no session, top-up, debit or payment.
/// </summary>
public sealed class LightningFuzzTests : IAsyncLifetime
{
    private const int Seed = 20261123;
    private const int RequestsPerEndpoint = 120;


    private GridHost _host = null!;
    private Sessions.FakeAgentWorker? _worker;
    private HttpClient _api = null!;
    private int _addresses;

    public async Task InitializeAsync()
    {
        var (evalModel, workModel) = (ApiClient.Unique("eval"), ApiClient.Unique("work"));
        var settings = SessionApi.Settings(evalModel, workModel);
        // Loopback is the trusted proxy, so that each demo request names a client address of its own.
        settings["Network:TrustedProxies"] = "127.0.0.1";
        _host = await GridHost.StartAsync(settings: settings);
        _worker = await Sessions.FakeAgentWorker.StartAsync(_host, evalModel, workModel);
        _api = SessionApi.Client(_host);
    }

    public async Task DisposeAsync()
    {
        _api?.Dispose();
        if (_worker is not null) await _worker.DisposeAsync();
        if (_host is not null) await _host.DisposeAsync();
    }

    [Fact]
    public async Task RandomBodies_AreAnswered2xxOr4xxInTheSpecShape_AndRefusedOnesWriteNothing()
    {
        var random = new Random(Seed);
        var (session, macaroon) = await SessionApi.OpenActiveAsync(_api, 10_000);
        var (complete, refundSats) = await CompleteJobWithRefundAsync();
        var pending = (await ExpectCreatedJobAsync("waiting for its eval fee")).GetProperty("jobId").GetString()!;

        var targets = new (string Path, string[] Fields, string? Macaroon)[]
        {
            ("jobs", ["request"], null),
            ($"jobs/{complete}/refund", ["invoice"], null),
            ($"jobs/{pending}/refund", ["invoice"], null),
            ("sessions", ["amount_sats"], null),
            ($"sessions/{session}/request", ["request"], macaroon),
            ($"sessions/{session}/topup", ["amount_sats"], macaroon),
        };
        var failures = new List<string>();
        foreach (var (path, fields, bearer) in targets)
        {
            var statuses = new HashSet<int>();
            for (var i = 0; i < RequestsPerEndpoint; i++)
            {
                // Now and then a refund claim carries a real invoice, bent (the BOLT11 decoder's input, not just noise), and an
                // amount is one a deposit may be, beside a stray field: random numbers are seldom from 100 to 10,000.
                var body = (random.Next(3) == 0, fields) switch
                {
                    (true, ["invoice"]) => "{\"invoice\":" + Quote(BentInvoice(random, refundSats)) + "}",
                    (true, ["amount_sats"]) => $"{{\"amount_sats\":{random.Next(100, 10_001)},{Quote(RandomString(random, random.Next(0, 8), invalid: random.Next(4) == 0))}:{RandomJson(random, 0)}}}",
                    _ => RandomBody(random, fields),
                };
                var contentType = random.Next(8) == 0 ? OtherContentTypes[random.Next(OtherContentTypes.Length)] : "application/json";
                var what = $"POST {path} ({contentType}) {Shorten(body)}";
                var before = await RowsAsync();
                var status = await CheckAgentAnswerAsync(() => PostAsync(path, ToBytes(random, body), contentType, bearer), what, failures);
                if (status is null) continue;
                statuses.Add(status.Value);
                if (contentType != "application/json" && status < 400) failures.Add($"{what} → {status}: a body that is not sent as JSON is accepted");
                if (status >= 400 && await RowsAsync() is var after && after != before) failures.Add($"{what} → {status}, but it wrote: {before} → {after}");
            }
            // The fuzz reached past the checks: some bodies were refused, and (where chance makes one) some were valid.
            if (!statuses.Contains(400)) failures.Add($"POST {path}: no body was refused with a 400 ({string.Join(", ", statuses)})");
            if (!path.EndsWith("/refund", StringComparison.Ordinal) && !statuses.Any(s => s is 200 or 201)) failures.Add($"POST {path}: no body was valid ({string.Join(", ", statuses)})");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public async Task EmptyBodies_OtherContentTypes_AndHugeBodies_Are4xxInTheSpecShape_AndWriteNothing()
    {
        var (session, macaroon) = await SessionApi.OpenActiveAsync(_api, 10_000);
        var (complete, _) = await CompleteJobWithRefundAsync();
        var targets = new (string Path, string ValidBody, string? Macaroon)[]
        {
            ("jobs", """{"request": "summarise this"}""", null),
            ($"jobs/{complete}/refund", $$"""{"invoice": "{{Agent.AgentApi.Invoice(1)}}"}""", null),
            ("sessions", """{"amount_sats": 500}""", null),
            ($"sessions/{session}/request", """{"request": "summarise this"}""", macaroon),
            ($"sessions/{session}/topup", """{"amount_sats": 500}""", macaroon),
        };
        var failures = new List<string>();
        foreach (var (path, valid, bearer) in targets)
        {
            var cases = RefusedBodies(valid);
            cases.AddRange(
            [
                // Just over the agent's request limit (2,000 bytes here) in every string field the endpoints read.
                ("fields over their limits", Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
                {
                    request = new string('x', SessionApi.MaxRequestBytes + 1),
                    invoice = "lnbcrt" + new string('q', 5000),
                    amount_sats = 10_001,
                })), "application/json"),
                ("a lone surrogate in every field", """{"request": "a\ud800b", "invoice": "lnbc\udc00", "amount_sats": "\ud800"}"""u8.ToArray(), "application/json"),
                ("bytes that are not UTF-8 in a field name", [.. "{\""u8, 0xC3, 0x28, .. "\": 1, \"request\": \"x\", \"amount_sats\": 500}"u8], "application/json"),
            ]);
            // The huge body is past the server's body limit (Http:MaxRequestBodyBytes, 8 MiB): refused on its declared length.
            var huge = "{\"request\": \"" + new string('a', 9 * 1024 * 1024) + "\"}";
            await CheckRefusedAsync(path, cases, huge, (body, contentType, expectContinue) => PostAsync(path, body, contentType, bearer, expectContinue), RowsAsync, failures);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public async Task RandomPathIdsAndQueries_Are2xxOr4xxInTheSpecShape()
    {
        var random = new Random(Seed + 1);
        var (session, macaroon) = await SessionApi.OpenActiveAsync(_api, 10_000);
        var failures = new List<string>();
        for (var i = 0; i < RequestsPerEndpoint; i++)
        {
            var id = RandomId(random);
            var body = RandomBody(random, ["request", "invoice", "amount_sats"]);
            await CheckAgentAnswerAsync(() => _api.GetAsync($"jobs/{id}"), $"GET jobs/{id}", failures);
            await CheckAgentAnswerAsync(() => PostAsync($"jobs/{id}/refund", ToBytes(random, body), "application/json", null), $"POST jobs/{id}/refund {Shorten(body)}", failures);
            await CheckAgentAnswerAsync(() => _api.GetAsync($"sessions/{id}"), $"GET sessions/{id}", failures);
            // Another session's macaroon on a random id: a 401 before the id is looked up.
            await CheckAgentAnswerAsync(() => PostAsync($"sessions/{id}/request", """{"request": "hi"}"""u8.ToArray(), "application/json", macaroon), $"POST sessions/{id}/request", failures);
            await CheckAgentAnswerAsync(() => PostAsync($"sessions/{id}/topup", """{"amount_sats": 500}"""u8.ToArray(), "application/json", macaroon), $"POST sessions/{id}/topup", failures);
            await CheckAgentAnswerAsync(() => PostAsync($"dev/stub/pay/{id}", null, null, null), $"POST dev/stub/pay/{id}", failures);
            var query = RandomQuery(random, ["request", "id", "status", "amount_sats"]);
            await CheckAgentAnswerAsync(() => _api.GetAsync("healthz?" + query), $"GET healthz?{query}", failures);
            await CheckAgentAnswerAsync(() => _api.GetAsync($"sessions/{session}?{query}"), $"GET sessions/{session}?{query}", failures);
        }
        // Methods the paths do not take, and paths that do not exist under /api.
        foreach (var (method, path) in new[] { ("PUT", "jobs"), ("DELETE", $"sessions/{session}"), ("GET", "jobs"), ("PATCH", "demo"), ("GET", "sessions"), ("GET", "nothing/here"), ("POST", "healthz") })
        {
            await CheckAgentAnswerAsync(() => _api.SendAsync(new HttpRequestMessage(new HttpMethod(method), path)), $"{method} {path}", failures);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public async Task BadMacaroons_Are401InTheSpecShape_AndTouchNoSession()
    {
        var random = new Random(Seed + 2);
        var (session, macaroon) = await SessionApi.OpenActiveAsync(_api, 10_000);
        var (_, otherMacaroon) = await SessionApi.OpenActiveAsync(_api, 10_000);
        var headers = new List<string?>
        {
            null, "", "Bearer", "Bearer ", "Bearer    ", "Basic " + Convert.ToBase64String("user:pass"u8), "Token " + macaroon, "Bearer" + macaroon,
            "Bearer not-a-macaroon", "Bearer !!!!", "Bearer ====", "Bearer a", "Bearer ab=", "Bearer abc==", "Bearer a=b",
            "Bearer " + otherMacaroon, "Bearer " + macaroon + "x", "Bearer " + macaroon + "===", "Bearer " + macaroon + " " + macaroon,
            "Bearer " + macaroon + "," + macaroon, "Bearer " + new string('A', 4097), "Bearer " + new string('A', 20_000),
            "Bearer " + Convert.ToBase64String(new byte[3000]), "Bearer " + Convert.ToBase64String([0x02, .. new byte[100]]),
            "Bearer " + Convert.ToBase64String("0004cid\n"u8), "Bearer " + Convert.ToBase64String(Encoding.ASCII.GetBytes(new string('f', 64))),
        };
        // The genuine macaroon cut short at every length, with one character changed, and as random base64.
        for (var length = 1; length < macaroon.Length; length += Math.Max(1, macaroon.Length / 40)) headers.Add("Bearer " + macaroon[..length]);
        // One character changed past the location (version, field type and length, then 30 bytes: the first 44 characters),
        // which no signature covers, as in every macaroon; never to the other alphabet's spelling of the same six bits.
        const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=";
        for (var i = 0; i < 60; i++)
        {
            var chars = macaroon.ToCharArray();
            var at = random.Next(44, chars.Length);
            var others = Alphabet.Where(c => c != chars[at]).ToArray();
            chars[at] = others[random.Next(others.Length)];
            headers.Add("Bearer " + new string(chars));
        }
        for (var i = 0; i < 60; i++)
        {
            var bytes = new byte[random.Next(0, 400)];
            random.NextBytes(bytes);
            // Some start like a V2 macaroon (version 2, then a location or identifier field), so that the parser gets past its first byte.
            if (bytes.Length > 2 && random.Next(2) == 0) (bytes[0], bytes[1]) = (2, (byte)random.Next(0, 3));
            headers.Add("Bearer " + (random.Next(2) == 0 ? Convert.ToBase64String(bytes) : System.Buffers.Text.Base64Url.EncodeToString(bytes)));
        }

        var failures = new List<string>();
        var before = await RowsAsync();
        foreach (var header in headers)
        {
            foreach (var (path, body) in new[] { ($"sessions/{session}/request", """{"request": "hi"}"""), ($"sessions/{session}/topup", """{"amount_sats": 500}""") })
            {
                var what = $"POST {path} with Authorization: {Shorten(header ?? "(none)")}";
                var status = await CheckAgentAnswerAsync(() =>
                {
                    var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body)) };
                    request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                    if (header is not null) request.Headers.TryAddWithoutValidation("Authorization", header);
                    return _api.SendAsync(request);
                }, what, failures);
                if (status is not null and not 401) failures.Add($"{what} → {status}, not 401");
            }
        }
        if (await RowsAsync() is var after && after != before) failures.Add($"bad macaroons wrote: {before} → {after}");
        // The genuine macaroon still works.
        await SessionApi.RunAsync(_api, session, macaroon, "still fine");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public async Task RandomDemoQueries_Are200Or400InTheSpecShape_CountedOnce_WithTheLimitsHeaders()
    {
        var random = new Random(Seed + 3);
        var queries = new List<string>
        {
            "", "request", "request=", "request=%20", "request=%00", "request=a%00b", "request=a&request=b", "request[]=a", "REQUEST=a", "request=%",
            "request=%zz", "request=%ED%A0%80", "request=%FF%FE", "request=" + new string('x', SessionApi.MaxRequestBytes + 1),
            "request=" + new string('x', 7000), "request=" + string.Concat(Enumerable.Repeat("%C3%A9", SessionApi.MaxRequestBytes / 2 + 1)),
            "request=ok&" + new string('&', 3000), "=&=&=", "request=%u0041",
        };
        for (var i = 0; i < RequestsPerEndpoint; i++) queries.Add(RandomQuery(random, ["request", "request", "limit", "model"]));

        var failures = new List<string>();
        var served = 0;
        foreach (var query in queries)
        {
            // Each request from an address of its own: the limit (5 an hour) counts them before their parameter is read.
            var address = NewAddress();
            var what = $"GET demo?{Shorten(query)}";
            HttpResponseMessage? answer = null;
            var status = await CheckAgentAnswerAsync(async () => answer = await DemoAsync(query, address), what, failures);
            if (answer is null || status is null) continue;
            if (status is not (200 or 400)) failures.Add($"{what} → {status}, not 200 or 400");
            if (status == 200) served++;
            if (!answer.Headers.TryGetValues("X-RateLimit-Remaining", out var remaining) || remaining.Single() != "4"
                || !answer.Headers.Contains("X-RateLimit-Limit") || !answer.Headers.Contains("X-RateLimit-Reset"))
            {
                failures.Add($"{what} → {status} without the limit's headers counting it once");
            }
        }

        Assert.True(served > 10, $"only {served} demo requests ran: the fuzz hardly reached the work");

        // Past the limit, whatever the parameter: a 429 in the spec's shape, with the headers.
        var limited = NewAddress();
        for (var i = 0; i < 5; i++) await CheckAgentAnswerAsync(() => DemoAsync("", limited), "GET demo (no parameter)", failures);
        foreach (var query in queries.Take(20))
        {
            HttpResponseMessage? answer = null;
            var status = await CheckAgentAnswerAsync(async () => answer = await DemoAsync(query, limited), $"GET demo?{Shorten(query)} past the limit", failures);
            if (status is not null and not 429) failures.Add($"GET demo?{Shorten(query)} past the limit → {status}, not 429");
            if (answer is not null && (!answer.Headers.TryGetValues("X-RateLimit-Remaining", out var remaining) || remaining.Single() != "0"))
            {
                failures.Add($"GET demo?{Shorten(query)} past the limit: X-RateLimit-Remaining is not 0");
            }
        }

        // Forwarded addresses that are not addresses: the proxy's own address is the client then, and shares one count.
        foreach (var forwarded in new[] { "not-an-ip", "999.1.1.1", "", ", ,", "1.2.3.4:99999", "[::1", new string('9', 5000), "203.0.113.1\u0001" })
        {
            await CheckAgentAnswerAsync(() => DemoAsync("request=hi", forwarded), $"GET demo with X-Forwarded-For: {Shorten(forwarded)}", failures);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    /// <summary>The rows every refused request must leave as they were.</summary>
    private async Task<string> RowsAsync()
    {
        await using var connection = await _host.OpenConnectionAsync();
        var counts = await connection.QuerySingleAsync<(long Jobs, long Invoices, long Payments, long Sessions, long Balance, long Topups, long Requests, long GridJobs)>("""
            SELECT (SELECT count(*) FROM lightning_agent_jobs), (SELECT count(*) FROM lightning_stub_invoices),
                   (SELECT count(*) FROM lightning_stub_payments), (SELECT count(*) FROM lightning_sessions),
                   (SELECT coalesce(sum(balance_sats), 0)::bigint FROM lightning_sessions), (SELECT count(*) FROM lightning_session_topups),
                   (SELECT count(*) FROM lightning_session_requests), (SELECT count(*) FROM jobs)
            """);
        return $"{counts.Jobs} agent jobs, {counts.Invoices} invoices, {counts.Payments} payments, {counts.Sessions} sessions holding {counts.Balance} sats, "
            + $"{counts.Topups} top-ups, {counts.Requests} session requests, {counts.GridJobs} grid jobs";
    }

    private async Task<HttpResponseMessage> PostAsync(string path, byte[]? body, string? contentType, string? macaroon, bool expectContinue = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            request.Content.Headers.ContentType = contentType is null ? null : MediaTypeHeaderValue.Parse(contentType);
        }
        if (macaroon is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", macaroon);
        if (expectContinue) request.Headers.ExpectContinue = true;
        return await _api.SendAsync(request);
    }

    private async Task<HttpResponseMessage> DemoAsync(string query, string forwardedFor)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "demo" + (query.Length > 0 ? "?" + query : ""));
        request.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor);
        return await _api.SendAsync(request);
    }

    /// <summary>A client address of its own, from 198.18.0.0/15 (benchmarking addresses, never a real client).</summary>
    private string NewAddress()
    {
        var n = Interlocked.Increment(ref _addresses);
        return $"198.{18 + n / 65536 % 2}.{n / 256 % 256}.{n % 256}";
    }

    /// <summary>A path segment: random text escaped (bytes that are not UTF-8 too), very long, or nearly an id.</summary>
    private static string RandomId(Random random) => random.Next(6) switch
    {
        // Kestrel itself refuses a path with a NUL in it (an empty 400, before any endpoint): not fuzzed here.
        0 => Uri.EscapeDataString(RandomString(random, random.Next(1, 40)).Replace('\0', '0')),
        1 => "x" + NotUtf8InQueries[random.Next(NotUtf8InQueries.Length)] + "y",
        // Long, but inside Kestrel's 8 KiB request line.
        2 => new string((char)random.Next('a', 'g'), random.Next(100, 6000)),
        3 => "ses_" + Convert.ToHexStringLower(RandomBytes(random, 16))[..random.Next(0, 33)],
        4 => random.Next(2) == 0 ? "ses_" + Convert.ToHexStringLower(RandomBytes(random, 16)) : Convert.ToHexStringLower(RandomBytes(random, 16)),
        _ => Uri.EscapeDataString(new[] { "-1", "0", "99999999999999999999999", "null", "undefined", "%", "..", "ses_", "\u00e9", "a b", "a+b" }[random.Next(11)]),
    };

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A real refund invoice (sometimes for the refund's amount), then bent: cut, a character changed, its case mixed, junk around it.</summary>
    private static string BentInvoice(Random random, long refundSats)
    {
        var invoice = Agent.AgentApi.Invoice(random.Next(3) switch { 0 => refundSats, 1 => null, _ => random.Next(1, 100_000) },
            random.Next(4) == 0 ? Coordinator.Grains.Lightning.Bolt11.Bolt11Network.Bitcoin : Coordinator.Grains.Lightning.Bolt11.Bolt11Network.Regtest);
        return random.Next(7) switch
        {
            0 => invoice,
            1 => invoice[..random.Next(0, invoice.Length)],
            2 => invoice.Remove(random.Next(invoice.Length), 1).Insert(random.Next(invoice.Length - 1), ((char)random.Next(32, 127)).ToString()),
            3 => invoice.ToUpperInvariant(),
            4 => "lightning:" + invoice,
            5 => " " + invoice + RandomString(random, random.Next(1, 20), invalid: true),
            _ => invoice[..(invoice.Length / 2)] + invoice.ToUpperInvariant()[(invoice.Length / 2)..],
        };
    }

    /// <summary>Runs a job to complete with fewer tokens than quoted (100 estimated, 1 used): its id and the refund owed.</summary>
    private async Task<(string Id, long RefundSats)> CompleteJobWithRefundAsync()
    {
        var created = await ExpectCreatedJobAsync("tokens=1");
        var id = created.GetProperty("jobId").GetString()!;
        await SessionApi.PayAsync(_api, created.GetProperty("evalInvoice").GetProperty("paymentHash").GetString()!);
        var job = await UntilAsync(id, "awaiting_work_payment");
        await SessionApi.PayAsync(_api, job.GetProperty("workInvoice").GetProperty("paymentHash").GetString()!);
        job = await UntilAsync(id, "complete");
        var refund = job.GetProperty("costLedger").GetProperty("refundAmountSats").GetInt64();
        Assert.True(refund > 0, $"the job owes a refund: {job}");
        return (id, refund);
    }

    private async Task<JsonElement> ExpectCreatedJobAsync(string request) =>
        await SessionApi.ExpectAsync(await SessionApi.PostAsync(_api, "jobs", new { request }), HttpStatusCode.Created);

    private async Task<JsonElement> UntilAsync(string id, string state)
    {
        var deadline = Environment.TickCount64 + 30_000;
        while (true)
        {
            var job = await SessionApi.ExpectAsync(await _api.GetAsync($"jobs/{id}"), HttpStatusCode.OK);
            if (job.GetProperty("state").GetString() == state) return job;
            Assert.True(Environment.TickCount64 < deadline, $"job {id} stayed {job.GetProperty("state").GetString()}, not {state}: {job}");
            await Task.Delay(20);
        }
    }
}
