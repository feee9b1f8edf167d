using System.Net;
using Coordinator.Api.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

public class OperatorAuthTests(OperatorHostFixture fixture) : IClassFixture<OperatorHostFixture>
{
    private HttpClient Operator => fixture.Operator;

    [Fact]
    public async Task NoKey_Is401_InTheGridErrorShape_WithWwwAuthenticate()
    {
        using var response = await OperatorHost.SendAsync(Operator, HttpMethod.Get, "cluster", bearer: null);
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.Unauthorized);
        Assert.Equal("unauthorized", body.GetProperty("error").GetString());
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
    }

    [Fact]
    public async Task AWrongOperatorKey_Is401()
    {
        using var response = await OperatorHost.SendAsync(Operator, HttpMethod.Get, "cluster", OperatorKeys.Generate());
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.Unauthorized);
        Assert.Equal("unauthorized", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task AnAccountKey_IsNotAnOperatorKey_403()
    {
        var client = await fixture.Host.NewAccountAsync();
        using var response = await OperatorHost.SendAsync(Operator, HttpMethod.Get, "cluster", client.Key);
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.Forbidden);
        Assert.Equal("forbidden", body.GetProperty("error").GetString());
        // and the account key still works where it belongs
        await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK);
    }

    [Fact]
    public async Task TheOperatorKey_OpensTheOperatorSurfaces_ButNotTheGridApi()
    {
        using var cluster = await OperatorHost.SendAsync(Operator, HttpMethod.Get, "cluster", fixture.OperatorKey);
        await ApiClient.ExpectAsync(cluster, HttpStatusCode.OK);
        Assert.Equal("no-store", cluster.Headers.CacheControl?.ToString());

        var asClient = fixture.Host.WithKey(fixture.OperatorKey);
        await ApiClient.ExpectAsync(await asClient.GetAsync("jobs"), HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task ASignInCookie_OpensTheSurfaces_AndAWrongKeyAtTheForm_Is401()
    {
        var cookie = await OperatorHost.SignInAsync(Operator, fixture.OperatorKey);
        using var withCookie = await OperatorHost.GetWithCookieAsync(Operator, "cluster", cookie);
        await ApiClient.ExpectAsync(withCookie, HttpStatusCode.OK);

        using var form = new FormUrlEncodedContent([new("key", OperatorKeys.Generate())]);
        using var wrong = await Operator.PostAsync("signin", form);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.DoesNotContain(wrong.Headers, h => h.Key == "Set-Cookie");
        Assert.Contains("not an operator key", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // A forged or tampered cookie is refused.
        using var forged = await OperatorHost.GetWithCookieAsync(Operator, "cluster", cookie[..^4] + "AAAA");
        Assert.Equal(HttpStatusCode.Unauthorized, forged.StatusCode);
    }

    [Fact]
    public async Task ABrowserWithoutASession_IsSentToTheSignInForm()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "cluster?x=1");
        request.Headers.Add("Accept", "text/html,application/xhtml+xml");
        using var response = await Operator.SendAsync(request);
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal("/operator/signin?return=%2Foperator%2Fcluster%3Fx%3D1", response.Headers.Location?.OriginalString);

        using var page = await Operator.GetAsync("signin");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("name=\"key\"", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheSignIn_RedirectsOnlyToOperatorPaths()
    {
        foreach (var evil in new[] { "https://evil.example/", "//evil.example/x", "/operator//evil.example", "/api/v1/jobs", "/operator/\\evil" })
        {
            using var form = new FormUrlEncodedContent([new("key", fixture.OperatorKey), new("return", evil)]);
            using var response = await Operator.PostAsync("signin", form);
            Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            Assert.StartsWith("/operator/", response.Headers.Location?.OriginalString, StringComparison.Ordinal);
            Assert.DoesNotContain("evil", response.Headers.Location?.OriginalString, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void KeysAreHashedAsSha256Lines_AndComparedByHash()
    {
        var key = OperatorKeys.Generate();
        Assert.StartsWith("op_", key, StringComparison.Ordinal);
        var line = OperatorKeys.HashLine(key);
        Assert.True(OperatorKeys.IsHashLine(line));
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key))), line["sha256:".Length..]);
        Assert.False(OperatorKeys.IsHashLine("sha256:abc"));
        Assert.False(OperatorKeys.IsHashLine(key));
    }

    [Fact]
    public async Task TheCli_PrintsANewKeyAndItsHashLine()
    {
        using var output = new StringWriter();
        Assert.Equal(0, await Coordinator.Silo.Operator.OperatorKeyCommands.RunAsync(["new"], output));
        var text = output.ToString();
        var key = text.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).Single(word => word.StartsWith("op_", StringComparison.Ordinal));
        Assert.Contains($"Operator__KeyHashes__0={OperatorKeys.HashLine(key)}", text, StringComparison.Ordinal);
        using var usage = new StringWriter();
        Assert.Equal(2, await Coordinator.Silo.Operator.OperatorKeyCommands.RunAsync(["old"], usage));
    }
}

/// <summary>A node without operator keys: every operator surface is off (404), whatever the request carries.</summary>
public class OperatorOffTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    [Theory]
    [InlineData("GET", "cluster")]
    [InlineData("GET", "dashboard/")]
    [InlineData("GET", "signin")]
    [InlineData("POST", "signin")]
    [InlineData("GET", "payouts")]
    [InlineData("POST", "accounts/1/disable")]
    [InlineData("GET", "metrics")]
    public async Task EverySurface_Is404(string method, string path)
    {
        using var http = OperatorHost.Client(fixture.Host);
        using var response = await OperatorHost.SendAsync(http, new HttpMethod(method), path, OperatorKeys.Generate());
        var body = await ApiClient.ExpectAsync(response, HttpStatusCode.NotFound);
        Assert.Equal("not_found", body.GetProperty("error").GetString());
        Assert.Contains("Operator:KeyHashes", body.GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}

/// <summary>Failed operator authentication is limited per client address, per clock minute.</summary>
public sealed class OperatorFailureLimitTests : IAsyncLifetime
{
    private readonly string _key = OperatorKeys.Generate();
    private readonly ManualTimeProvider _clock = new(new DateTimeOffset(2026, 1, 1, 12, 0, 10, TimeSpan.Zero));
    private GridHost _host = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _host = await GridHost.StartAsync(time: _clock, settings: OperatorHost.Settings(_key, new Dictionary<string, string?> { ["Operator:FailedAttemptsPerMinute"] = "3" }));
        _http = OperatorHost.Client(_host);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task AfterTheLimit_EveryOperatorRequestFromTheAddress_Is429_UntilTheMinuteEnds()
    {
        for (var i = 0; i < 3; i++)
        {
            using var wrong = await OperatorHost.SendAsync(_http, HttpMethod.Get, "cluster", OperatorKeys.Generate());
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        }
        using var blocked = await OperatorHost.SendAsync(_http, HttpMethod.Get, "cluster", _key);
        var body = await ApiClient.ExpectAsync(blocked, HttpStatusCode.TooManyRequests);
        Assert.Equal("rate_limited", body.GetProperty("error").GetString());
        Assert.Equal(TimeSpan.FromSeconds(50), blocked.Headers.RetryAfter?.Delta);
        using (var form = new FormUrlEncodedContent([new("key", _key)]))
        using (var signIn = await _http.PostAsync("signin", form))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, signIn.StatusCode);
        }
        // A request that makes no attempt is counted nowhere, and the Grid API is not affected.
        var client = await _host.NewAccountAsync();
        await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK);

        _clock.Advance(TimeSpan.FromSeconds(50));
        using var after = await OperatorHost.SendAsync(_http, HttpMethod.Get, "cluster", _key);
        await ApiClient.ExpectAsync(after, HttpStatusCode.OK);
    }
}
