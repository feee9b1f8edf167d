using Coordinator.Api.Lightning;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Demo;

/// <summary>
/// The client address the demo limit is kept by, through real HTTP on loopback: <c>X-Forwarded-For</c> counts only from
/// the proxies <c>Network:TrustedProxies</c> lists, and never otherwise (not even from loopback, which ASP.NET trusts by default).
/// </summary>
public sealed class ClientAddressesTests
{
    [Fact]
    public async Task WithNoTrustedProxies_XForwardedForIsIgnored()
    {
        await using var app = await StartAsync(new Dictionary<string, string?>());
        Assert.Equal("127.0.0.1", await ClientAddressAsync(app, "203.0.113.7"));
        Assert.Equal("127.0.0.1", await ClientAddressAsync(app, null));
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.0/8")]
    [InlineData("10.0.0.1, 127.0.0.1")]
    [InlineData("2001:DB8::/32, 127.0.0.1/32")]
    public async Task FromATrustedProxy_TheClientIsTheForwardedAddress(string trusted)
    {
        await using var app = await StartAsync(new Dictionary<string, string?> { ["Network:TrustedProxies"] = trusted });
        Assert.Equal("203.0.113.7", await ClientAddressAsync(app, "203.0.113.7"));
        Assert.Equal("127.0.0.1", await ClientAddressAsync(app, null));
    }

    [Fact]
    public async Task FromAProxyNotListed_XForwardedForIsIgnored()
    {
        await using var app = await StartAsync(new Dictionary<string, string?> { ["Network:TrustedProxies:0"] = "10.0.0.1", ["Network:TrustedProxies:1"] = "192.168.0.0/16" });
        Assert.Equal("127.0.0.1", await ClientAddressAsync(app, "203.0.113.7"));
    }

    [Fact]
    public async Task AddressesAClientWroteItself_AreNotBelieved()
    {
        // The client sends "X-Forwarded-For: 198.51.100.1" to pose as another; the trusted proxy appends what it saw.
        await using var app = await StartAsync(new Dictionary<string, string?> { ["Network:TrustedProxies:0"] = "127.0.0.1" });
        Assert.Equal("203.0.113.7", await ClientAddressAsync(app, "198.51.100.1, 203.0.113.7"));
        // Through two trusted hops the client is the first address that is not a trusted proxy.
        Assert.Equal("203.0.113.7", await ClientAddressAsync(app, "198.51.100.1, 203.0.113.7, 127.0.0.1"));
    }

    [Theory]
    [InlineData("not-an-address")]
    [InlineData("10.0.0.1/8")] // bits set after the prefix
    [InlineData("10.0.0.0/33")]
    [InlineData("10.0.0.0/")]
    public void AMalformedEntry_StopsTheStartUp(string entry)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Network:TrustedProxies:0"] = entry }).Build();
        var error = Assert.Throws<InvalidOperationException>(() => new ServiceCollection().AddTrustedProxies(configuration));
        Assert.Contains($"'{entry}'", error.Message, StringComparison.Ordinal);
    }

    private static async Task<WebApplication> StartAsync(Dictionary<string, string?> settings)
    {
        var builder = Loopback.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddTrustedProxies(builder.Configuration);
        var app = builder.Build();
        app.UseTrustedProxies();
        app.MapGet("/client", (HttpContext context) => context.ClientAddress());
        await app.StartAsync();
        return app;
    }

    private static async Task<string> ClientAddressAsync(WebApplication app, string? forwardedFor)
    {
        var address = Loopback.AddressOf(app);
        using var http = new HttpClient { BaseAddress = new Uri(address) };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/client");
        if (forwardedFor is not null) request.Headers.Add("X-Forwarded-For", forwardedFor);
        using var response = await http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync();
    }
}
