using System.Net;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Lightning;

/// <summary>
/// The client's IP address, for limits kept per client (the free demo's). Behind a reverse proxy every request comes
/// from the proxy; the client is then in <c>X-Forwarded-For</c>, which anybody can send, so it is believed only from the
/// proxies the operator lists in <c>Network:TrustedProxies</c> (addresses and CIDR networks, as a list or one
/// comma-separated string). With none listed, forwarded headers are ignored entirely: ASP.NET Core's middleware would
/// otherwise trust loopback by default, and with its lists emptied it would trust everyone.
/// </summary>
public static class ClientAddresses
{
    public const string Section = "Network:TrustedProxies";

    /// <summary>
    /// Reads <c>Network:TrustedProxies</c> into the forwarded-headers settings (<c>X-Forwarded-For</c> only). A malformed
    /// entry stops the start-up with a message that names it.
    /// </summary>
    public static IServiceCollection AddTrustedProxies(this IServiceCollection services, IConfiguration configuration)
    {
        var (proxies, networks) = Parse(configuration.GetSection(Section));
        services.Configure<ForwardedHeadersOptions>(options =>
        {
            options.ForwardedHeaders = ForwardedHeaders.XForwardedFor;
            options.KnownProxies.Clear();
            options.KnownIPNetworks.Clear();
            foreach (var proxy in proxies) options.KnownProxies.Add(proxy);
            foreach (var network in networks) options.KnownIPNetworks.Add(network);
            // Walk X-Forwarded-For from the right through every trusted hop (a chain of proxies), and stop at the first
            // address that is not one: that is the client, whatever it wrote further left.
            options.ForwardLimit = null;
        });
        return services;
    }

    /// <summary>Applies <c>X-Forwarded-For</c> from trusted proxies; adds nothing when none are configured. Call it before anything that reads the client address.</summary>
    public static IApplicationBuilder UseTrustedProxies(this IApplicationBuilder app)
    {
        var options = app.ApplicationServices.GetRequiredService<IOptions<ForwardedHeadersOptions>>().Value;
        return options.KnownProxies.Count == 0 && options.KnownIPNetworks.Count == 0 ? app : app.UseForwardedHeaders();
    }

    /// <summary>
    /// The client's IP address as text (an IPv4 client on a dual-stack socket as plain IPv4), after trusted proxies'
    /// <c>X-Forwarded-For</c>; <c>unknown</c> when the server knows none (an in-memory test server), so such requests
    /// share one limit rather than escape it.
    /// </summary>
    public static string ClientAddress(this HttpContext context) => context.Connection.RemoteIpAddress switch
    {
        null => "unknown",
        { IsIPv4MappedToIPv6: true } mapped => mapped.MapToIPv4().ToString(),
        var address => address.ToString(),
    };

    private static (List<IPAddress> Proxies, List<System.Net.IPNetwork> Networks) Parse(IConfigurationSection section)
    {
        // A list (Network:TrustedProxies:0, :1 …) or one string (Network__TrustedProxies="10.0.0.1, 10.1.0.0/16").
        var entries = section.Value is { } single
            ? single.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            : section.GetChildren().Select(child => child.Value?.Trim()).OfType<string>().Where(value => value.Length > 0);
        var proxies = new List<IPAddress>();
        var networks = new List<System.Net.IPNetwork>();
        foreach (var entry in entries)
        {
            var slash = entry.IndexOf('/', StringComparison.Ordinal);
            // 10.0.0.1/8 would be read as 10.0.0.0/8: refused, since the operator may have meant 10.0.0.1 alone.
            if (slash > 0 && System.Net.IPNetwork.TryParse(entry, out var network) && IPAddress.TryParse(entry.AsSpan(0, slash), out var first) && first.Equals(network.BaseAddress)) networks.Add(network);
            else if (slash < 0 && IPAddress.TryParse(entry, out var proxy)) proxies.Add(proxy);
            else throw new InvalidOperationException(
                $"{Section} has '{entry}', which is neither an IP address nor a CIDR network (such as 10.0.0.0/8, with no bits set after the prefix). Fix or remove it.");
        }
        return (proxies, networks);
    }
}
