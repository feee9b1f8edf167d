using System.Net;
using System.Text.Json;
using Coordinator.Api.Lightning;
using Coordinator.Grains.Lightning;
using Coordinator.Grains.Lightning.Payments;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Internal;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary><c>POST /api/dev/stub/pay/{paymentHash}</c>: present only for the stub outside Production, and what it does there.</summary>
public sealed class StubPaymentsApiTests(LightningDatabase database) : IClassFixture<LightningDatabase>
{
    [Theory]
    [InlineData("Development", null, true)]
    [InlineData("Staging", null, true)]
    [InlineData("Production", null, false)]
    [InlineData("Development", "https://lnbits.example.com", false)]
    [InlineData("Production", "https://lnbits.example.com", false)]
    public void ShouldMap_OnlyTheStub_OutsideProduction(string environment, string? lnbitsUrl, bool expected)
    {
        var host = new HostingEnvironment { EnvironmentName = environment };
        Assert.Equal(expected, LightningStubRoutes.ShouldMap(host, new LightningOptions { LnbitsUrl = lnbitsUrl }));
    }

    [Fact]
    public async Task InProduction_TheRouteIsAbsent_EvenInStubMode()
    {
        await using var app = await StartAsync(Environments.Production, new Dictionary<string, string?>());
        using var client = new HttpClient { BaseAddress = Address(app) };
        var invoice = await app.Services.GetRequiredService<ILightningNode>().CreateInvoiceAsync(10, "eval", CancellationToken.None);

        var response = await client.PostAsync($"/api/dev/stub/pay/{invoice.PaymentHash}", null);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Empty(await response.Content.ReadAsStringAsync());
        Assert.DoesNotContain(Patterns(app), pattern => pattern.Contains("dev/stub"));
        Assert.False(await app.Services.GetRequiredService<ILightningNode>().IsPaidAsync(invoice.PaymentHash, CancellationToken.None));
    }

    [Fact]
    public async Task WithLnbitsConfigured_TheRouteIsAbsent_EvenInDevelopment()
    {
        await using var app = await StartAsync(Environments.Development, new Dictionary<string, string?>
        {
            ["Lightning:LnbitsUrl"] = "http://127.0.0.1:9", ["Lightning:InvoiceKey"] = "i", ["Lightning:AdminKey"] = "a",
        });

        Assert.DoesNotContain(Patterns(app), pattern => pattern.Contains("dev/stub"));
    }

    [Fact]
    public async Task InDevelopment_ThePayerRoute_MarksTheStubInvoicePaid()
    {
        await using var app = await StartAsync(Environments.Development, new Dictionary<string, string?>());
        using var client = new HttpClient { BaseAddress = Address(app) };
        var node = app.Services.GetRequiredService<ILightningNode>();
        var invoice = await node.CreateInvoiceAsync(10, "eval", CancellationToken.None);

        var response = await client.PostAsync($"/api/dev/stub/pay/{invoice.PaymentHash}", null);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.True(body.RootElement.GetProperty("ok").GetBoolean());
        Assert.Equal(invoice.PaymentHash, body.RootElement.GetProperty("paymentHash").GetString());
        Assert.True(await node.IsPaidAsync(invoice.PaymentHash, CancellationToken.None));
        Assert.Contains(LightningStubRoutes.PayPattern, Patterns(app));
    }

    [Fact]
    public async Task InDevelopment_AnUnknownHash_Is404WithTheAgentApisError()
    {
        await using var app = await StartAsync(Environments.Development, new Dictionary<string, string?>());
        using var client = new HttpClient { BaseAddress = Address(app) };

        var response = await client.PostAsync($"/api/dev/stub/pay/{new string('0', 64)}", null);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(["error"], body.RootElement.EnumerateObject().Select(p => p.Name));
        Assert.Equal("no stub invoice has this payment hash", body.RootElement.GetProperty("error").GetString());
    }

    private async Task<WebApplication> StartAsync(string environment, Dictionary<string, string?> settings)
    {
        var builder = Loopback.CreateBuilder(new WebApplicationOptions { EnvironmentName = environment });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddSingleton(_ => database.NewDataSource());
        builder.Services.AddLightningPayments(builder.Configuration);
        var app = builder.Build();
        app.MapLightningStubRoutes();
        await app.StartAsync();
        return app;
    }

    private static Uri Address(WebApplication app) =>
        new(Loopback.AddressOf(app));

    private static IEnumerable<string> Patterns(WebApplication app) =>
        app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().Select(e => e.RoutePattern.RawText ?? "");
}
