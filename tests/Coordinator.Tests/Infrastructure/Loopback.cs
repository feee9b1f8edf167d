using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Tests.Infrastructure;

/// <summary>The tests' small HTTP servers (fakes of third parties, receivers, probes): a slim app on a free loopback port.</summary>
public static class Loopback
{
    /// <summary>A slim app builder that listens on 127.0.0.1, on a port the system picks.</summary>
    public static WebApplicationBuilder CreateBuilder(WebApplicationOptions? options = null)
    {
        var builder = WebApplication.CreateSlimBuilder(options ?? new WebApplicationOptions());
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        return builder;
    }

    /// <summary>The started app's address, as Kestrel reports it (<c>http://127.0.0.1:port</c>).</summary>
    public static string AddressOf(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
}
