using System.Net;
using Coordinator.Tests.Infrastructure;
using static Coordinator.Tests.Lightning.Sessions.AgentApi;

namespace Coordinator.Tests.Lightning.Sessions;

/// <summary>
/// <c>GET /api/demo</c> on two silos that trust loopback as a proxy: 5 requests per client address an hour across both,
/// counted before validation, and the <c>X-RateLimit-*</c> headers on every answer. Each test is a client address of its own.
/// </summary>
public class DemoTests(TwoAgentNodesFixture nodes) : IClassFixture<TwoAgentNodesFixture>
{
    [Fact]
    public async Task FiveRequestsAcrossTwoSilos_AreServed_ThenThe429Comes_WithTheLimitsHeadersOnEveryAnswer()
    {
        var address = NewAddress();
        var before = DateTimeOffset.UtcNow;
        var resets = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            using var response = await DemoAsync(nodes.Either(i), $"request={Uri.EscapeDataString($"hello {i}")}", address);
            var body = await ExpectAsync(response, HttpStatusCode.OK);
            Assert.Equal(["result"], body.EnumerateObject().Select(p => p.Name));
            Assert.Equal($"done: hello {i}", body.GetProperty("result").GetString());
            var (limit, remaining, reset) = Headers(response);
            Assert.Equal((5, 4 - i), (limit, remaining));
            resets.Add(reset);
        }
        Assert.Single(resets.Distinct());
        Assert.InRange(resets[0], before.AddHours(1).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds() + 1);

        for (var i = 0; i < 2; i++)
        {
            using var limited = await DemoAsync(nodes.Either(i), "request=more", address);
            Assert.Contains("5 requests per hour", await ErrorAsync(limited, HttpStatusCode.TooManyRequests), StringComparison.Ordinal);
            Assert.Equal((5, 0, resets[0]), Headers(limited));
        }
        // Another address has its own count.
        using var other = await DemoAsync(nodes.ClientB, "request=mine", NewAddress());
        await ExpectAsync(other, HttpStatusCode.OK);
        Assert.Equal(4, Headers(other).Remaining);
    }

    [Fact]
    public async Task ARequestCounts_BeforeItsParameterIsChecked_And400sCarryTheHeaders()
    {
        var address = NewAddress();
        var queries = new[] { "", "request=", "request=%20%20", "request=a&request=b", "request=" + new string('x', MaxRequestBytes + 1) };
        for (var i = 0; i < queries.Length; i++)
        {
            using var response = await DemoAsync(nodes.Either(i), queries[i], address);
            await ErrorAsync(response, HttpStatusCode.BadRequest);
            Assert.Equal(4 - i, Headers(response).Remaining);
        }
        using var limited = await DemoAsync(nodes.ClientA, "request=valid", address);
        await ErrorAsync(limited, HttpStatusCode.TooManyRequests);
    }

    [Fact]
    public async Task AFailedWork_Is500_WithTheHeaders()
    {
        using var response = await DemoAsync(nodes.ClientB, "request=please%20fail", NewAddress());
        Assert.Contains("the backend broke", await ErrorAsync(response, HttpStatusCode.InternalServerError), StringComparison.Ordinal);
        Assert.Equal((5, 4), (Headers(response).Limit, Headers(response).Remaining));
    }

    [Fact]
    public async Task WithoutTrustedProxies_XForwardedForIsIgnored_AndEveryoneBehindTheSocketSharesOneCount()
    {
        await using var plain = await GridHost.StartAsync();
        using var client = Client(plain);
        for (var i = 0; i < 5; i++)
        {
            // No request parameter: a 400, counted all the same, and no worker needed.
            using var response = await DemoAsync(client, "", NewAddress());
            await ErrorAsync(response, HttpStatusCode.BadRequest);
            Assert.Equal(4 - i, Headers(response).Remaining);
        }
        using var limited = await DemoAsync(client, "request=hi", NewAddress());
        await ErrorAsync(limited, HttpStatusCode.TooManyRequests);
    }

    private static int _addresses;

    /// <summary>A client address of its own, from TEST-NET-3 (203.0.113.0/24); each fixture has a fresh database.</summary>
    private static string NewAddress() => $"203.0.113.{Interlocked.Increment(ref _addresses)}";

    private static async Task<HttpResponseMessage> DemoAsync(HttpClient client, string query, string forwardedFor)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "demo" + (query.Length > 0 ? "?" + query : ""));
        request.Headers.Add("X-Forwarded-For", forwardedFor);
        return await client.SendAsync(request);
    }

    private static (int Limit, int Remaining, long Reset) Headers(HttpResponseMessage response) => (
        int.Parse(response.Headers.GetValues("X-RateLimit-Limit").Single(), System.Globalization.CultureInfo.InvariantCulture),
        int.Parse(response.Headers.GetValues("X-RateLimit-Remaining").Single(), System.Globalization.CultureInfo.InvariantCulture),
        long.Parse(response.Headers.GetValues("X-RateLimit-Reset").Single(), System.Globalization.CultureInfo.InvariantCulture));
}
