using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Coordinator.Grains.Accounts;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.RateLimits;

/// <summary>
/// A node with small limits on failed authentications and dashboard sign-ins, hour-long windows (no window reopens
/// during a test) and a trusted proxy on loopback, so each test poses as client addresses of its own.
/// </summary>
public sealed class FailedAuthenticationFixture : IAsyncLifetime
{
    public const int FailureLimit = 6;
    public const int SignInLimit = 3;

    private GridHost? _host;

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync() => _host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
    {
        ["RateLimits:Enabled"] = "true",
        ["RateLimits:FailedAuthentications:PermitLimit"] = $"{FailureLimit}",
        ["RateLimits:FailedAuthentications:Window"] = "01:00:00",
        ["RateLimits:DashboardSignIn:PermitLimit"] = $"{SignInLimit}",
        ["RateLimits:DashboardSignIn:Window"] = "01:00:00",
        ["Network:TrustedProxies"] = "127.0.0.1",
    });

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
    }
}

public sealed partial class FailedAuthenticationTests(FailedAuthenticationFixture fixture) : IClassFixture<FailedAuthenticationFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task ANewMadeUpKeyOnEveryRequest_IsRefusedPastTheLimit_PerAddress_InEachFrontDoorsShape()
    {
        var (guesser, other) = (NewAddress(), NewAddress());
        var validKey = (await Host.Get<AccountStore>().CreateAccountAsync("guessed")).ApiKey;
        // Each made-up key would be a caller of its own to the request limits: only the failures per address add up.
        for (var i = 0; i < FailedAuthenticationFixture.FailureLimit; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(Grid("usage"), bearer: MadeUpKey(), from: guesser)).StatusCode);
        }

        var grid = await RateLimitTests.ExpectRateLimitedAsync(await SendAsync(Grid("usage"), bearer: MadeUpKey(), from: guesser), maxRetryAfter: 3600);
        Assert.Equal("rate_limited", grid.GetProperty("error").GetString());
        Assert.Contains("failed authentications", grid.GetProperty("message").GetString(), StringComparison.Ordinal);
        // The address is refused whatever it sends until its window ends, a valid key included: a guess that hits is no way out.
        await RateLimitTests.ExpectRateLimitedAsync(await SendAsync(Grid("usage"), bearer: validKey, from: guesser), maxRetryAfter: 3600);

        var openAi = (await RateLimitTests.ExpectRateLimitedAsync(await SendAsync(new Uri(Host.BaseAddress, "/v1/models"), bearer: MadeUpKey(), from: guesser), maxRetryAfter: 3600)).GetProperty("error");
        Assert.Equal("rate_limit_exceeded", openAi.GetProperty("code").GetString());
        var aitbc = await RateLimitTests.ExpectRateLimitedAsync(await SendAsync(new Uri(Host.Aitbc.BaseAddress!, "v1/jobs"), apiKey: MadeUpKey(), from: guesser), maxRetryAfter: 3600);
        Assert.Equal("rate_limited", aitbc.GetProperty("error_code").GetString());
        var agent = await RateLimitTests.ExpectRateLimitedAsync(await SendAsync(new Uri(Host.BaseAddress, "/api/jobs/1"), bearer: MadeUpKey(), from: guesser), maxRetryAfter: 3600);
        Assert.Equal(JsonValueKind.String, agent.GetProperty("error").ValueKind);

        // Health checks still answer, and another address is unaffected.
        Assert.NotEqual(HttpStatusCode.TooManyRequests, (await SendAsync(Grid("health"), from: guesser)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(Grid("usage"), bearer: validKey, from: other)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(Grid("usage"), bearer: MadeUpKey(), from: other)).StatusCode);
    }

    [Fact]
    public async Task SuccessfulRequests_DoNotCount()
    {
        var from = NewAddress();
        var key = (await Host.Get<AccountStore>().CreateAccountAsync("honest")).ApiKey;
        for (var i = 0; i < FailedAuthenticationFixture.FailureLimit * 2; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(Grid("usage"), bearer: key, from: from)).StatusCode);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(Grid("usage"), bearer: MadeUpKey(), from: from)).StatusCode);
    }

    [Fact]
    public async Task DashboardSignIn_AttemptsPastTheLimit_Get429Page_ButThePageStillShows()
    {
        var (from, other) = (NewAddress(), NewAddress());
        for (var i = 0; i < FailedAuthenticationFixture.SignInLimit; i++)
        {
            using var refused = await SignInAsync(MadeUpKey(), from);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains("not valid", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using var limited = await SignInAsync(MadeUpKey(), from);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.InRange(limited.Headers.RetryAfter?.Delta?.TotalSeconds ?? 0, 1, 3600);
        Assert.Equal("text/html", limited.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Too many requests", await limited.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Showing the form is not an attempt; another address may still try.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(new Uri(Host.BaseAddress, "/signin"), from: from)).StatusCode);
        using var elsewhere = await SignInAsync(MadeUpKey(), other);
        Assert.Equal(HttpStatusCode.Unauthorized, elsewhere.StatusCode);
    }

    [Fact]
    public async Task TheOpenApiDocument_Lists429WithRetryAfterAndTheErrorBody_ExceptOnHealth()
    {
        using var response = await Host.Anonymous().GetAsync("openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var paths = document.RootElement.GetProperty("paths");

        foreach (var (path, method) in new[] { ("/api/v1/jobs", "post"), ("/api/v1/usage", "get"), ("/api/v1/accounts", "post"), ("/api/v1/worker/jobs/next", "get") })
        {
            var tooMany = paths.GetProperty(path).GetProperty(method).GetProperty("responses").GetProperty("429");
            Assert.True(tooMany.GetProperty("headers").TryGetProperty("Retry-After", out _), $"{method} {path}: no Retry-After");
            var schema = tooMany.GetProperty("content").GetProperty("application/json").GetProperty("schema");
            var properties = Resolve(document.RootElement, schema).GetProperty("properties");
            Assert.True(properties.TryGetProperty("error", out _), $"{method} {path}: the 429's body is not the error");
        }
        Assert.False(paths.GetProperty("/api/v1/health").GetProperty("get").GetProperty("responses").TryGetProperty("429", out _));
    }

    private static JsonElement Resolve(JsonElement document, JsonElement schema)
    {
        if (!schema.TryGetProperty("$ref", out var reference)) return schema;
        var name = reference.GetString()!.Split('/')[^1];
        return document.GetProperty("components").GetProperty("schemas").GetProperty(name);
    }

    /// <summary>The dashboard's sign-in form posted as a browser would: the antiforgery cookie and token from the page, then the form.</summary>
    private async Task<HttpResponseMessage> SignInAsync(string key, string from)
    {
        using var page = await SendAsync(new Uri(Host.BaseAddress, "/signin"), from: from);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        // The host's client may keep cookies itself; else they go back by hand.
        var cookies = page.Headers.TryGetValues("Set-Cookie", out var set) ? string.Join("; ", set.Select(c => c.Split(';')[0])) : null;
        var fields = HiddenInput().Matches(html).ToDictionary(m => WebUtility.HtmlDecode(m.Groups["name"].Value), m => WebUtility.HtmlDecode(m.Groups["value"].Value));
        fields["ApiKey"] = key;

        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(Host.BaseAddress, "/signin"));
        if (cookies is not null) request.Headers.Add("Cookie", cookies);
        request.Headers.Add("X-Forwarded-For", from);
        request.Content = new FormUrlEncodedContent(fields);
        return await Host.Http.SendAsync(request);
    }

    [GeneratedRegex("""<input type="hidden" name="(?<name>[^"]+)" value="(?<value>[^"]*)"\s*/?>""")]
    private static partial Regex HiddenInput();

    private Uri Grid(string path) => new(Host.BaseAddress, path);

    private static string MadeUpKey() => "vk_live_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N");

    private static int _addresses;

    /// <summary>A client address of its own (TEST-NET-2), forwarded by the trusted proxy on loopback.</summary>
    private static string NewAddress()
    {
        var n = Interlocked.Increment(ref _addresses);
        return $"198.51.{100 + n / 250}.{n % 250 + 1}";
    }

    private Task<HttpResponseMessage> SendAsync(Uri uri, string? bearer = null, string? apiKey = null, string? from = null) =>
        RateLimitTests.Send(Host.Http, uri, bearer, apiKey, from);
}
