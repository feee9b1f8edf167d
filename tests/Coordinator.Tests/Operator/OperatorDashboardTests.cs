using System.Net;
using Coordinator.Api.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

/// <summary>The Orleans Dashboard under /operator/dashboard, behind operator authentication.</summary>
public class OperatorDashboardTests(OperatorHostFixture fixture) : IClassFixture<OperatorHostFixture>
{
    [Theory]
    [InlineData("dashboard/")]
    [InlineData("dashboard/DashboardCounters")]
    [InlineData("dashboard/ClusterStats")]
    public async Task WithoutOperatorAuth_IsRefused(string path)
    {
        using var anonymous = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, path, bearer: null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        var client = await fixture.Host.NewAccountAsync();
        using var withAccountKey = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, path, client.Key);
        Assert.Equal(HttpStatusCode.Forbidden, withAccountKey.StatusCode);
    }

    [Fact]
    public async Task WithTheOperatorKey_ThePageAndItsDataApiAnswer()
    {
        using var page = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, "dashboard/", fixture.OperatorKey);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("index.min.js", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var script = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, "dashboard/index.min.js", fixture.OperatorKey);
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);

        // The dashboard's grain collects counters once it is up: wait for a silo in its answer.
        await Eventually.TrueAsync(async () =>
        {
            using var counters = await OperatorHost.SendAsync(fixture.Operator, HttpMethod.Get, "dashboard/DashboardCounters", fixture.OperatorKey);
            if (counters.StatusCode != HttpStatusCode.OK) return false;
            using var json = System.Text.Json.JsonDocument.Parse(await counters.Content.ReadAsStringAsync());
            return json.RootElement.TryGetProperty("totalActiveHostCount", out var hosts) && hosts.GetInt32() >= 1;
        }, "the dashboard's counters list this silo", timeoutMs: 30_000);
    }

    [Fact]
    public async Task ABrowserSignsIn_ThenGetsTheDashboardWithItsCookie()
    {
        using (var request = new HttpRequestMessage(HttpMethod.Get, "dashboard/"))
        {
            request.Headers.Add("Accept", "text/html");
            using var redirect = await fixture.Operator.SendAsync(request);
            Assert.Equal(HttpStatusCode.Redirect, redirect.StatusCode);
            Assert.Equal("/operator/signin?return=%2Foperator%2Fdashboard%2F", redirect.Headers.Location?.OriginalString);
        }
        using var form = new FormUrlEncodedContent([new("key", fixture.OperatorKey), new("return", "/operator/dashboard/")]);
        using var signIn = await fixture.Operator.PostAsync("signin", form);
        Assert.Equal(HttpStatusCode.Redirect, signIn.StatusCode);
        Assert.Equal("/operator/dashboard/", signIn.Headers.Location?.OriginalString);
        var cookie = signIn.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith(OperatorGate.CookieName + "=", StringComparison.Ordinal)).Split(';')[0];

        using var page = await OperatorHost.GetWithCookieAsync(fixture.Operator, "dashboard/", cookie, "text/html");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        using var data = await OperatorHost.GetWithCookieAsync(fixture.Operator, "dashboard/ClusterStats", cookie);
        Assert.Equal(HttpStatusCode.OK, data.StatusCode);

        using var signOut = new HttpRequestMessage(HttpMethod.Post, "signout");
        signOut.Headers.Add("Cookie", cookie);
        using var signedOut = await fixture.Operator.SendAsync(signOut);
        Assert.Equal(HttpStatusCode.Redirect, signedOut.StatusCode);
        Assert.Contains(signedOut.Headers.GetValues("Set-Cookie"), c => c.StartsWith(OperatorGate.CookieName + "=;", StringComparison.Ordinal));
    }
}

/// <summary>The Prometheus scrape endpoint on the main port under /operator needs operator auth; its own port does not.</summary>
public sealed class OperatorMetricsTests : IAsyncLifetime
{
    private readonly string _key = OperatorKeys.Generate();
    private readonly int _metricsPort = GridHost.FreeTcpPort();
    private GridHost _host = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _host = await GridHost.StartAsync(settings: OperatorHost.Settings(_key, new Dictionary<string, string?>
        {
            ["Telemetry:Prometheus:Enabled"] = "true",
            ["Telemetry:Prometheus:Port"] = _metricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Telemetry:Prometheus:OperatorPath"] = "/operator/metrics",
        }));
        _http = OperatorHost.Client(_host);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task OnTheMainPort_TheScrapeNeedsTheOperatorKey()
    {
        using var anonymous = await OperatorHost.SendAsync(_http, HttpMethod.Get, "metrics", bearer: null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        using var wrong = await OperatorHost.SendAsync(_http, HttpMethod.Get, "metrics", OperatorKeys.Generate());
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);

        using var scrape = await OperatorHost.SendAsync(_http, HttpMethod.Get, "metrics", _key);
        Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
        Assert.Contains("# TYPE", await scrape.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // The open path stays only on the operator port.
        using var main = new HttpClient { BaseAddress = new Uri(_host.BaseAddress, "/") };
        Assert.Equal(HttpStatusCode.NotFound, (await main.GetAsync("metrics")).StatusCode);
        using var own = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{_metricsPort}/") };
        Assert.Equal(HttpStatusCode.OK, (await own.GetAsync("metrics")).StatusCode);
    }
}
