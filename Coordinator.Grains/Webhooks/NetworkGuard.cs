using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Webhooks;

/// <summary>
/// The SSRF guard for webhook targets: only http(s), and no host that resolves to loopback, link-local
/// (169.254.0.0/16 holds cloud metadata), private, shared (CGNAT), unique-local, multicast or unspecified addresses,
/// unless configuration allows them. Checked at submit and again at connect time, after DNS resolution.
/// </summary>
public sealed class NetworkGuard(IOptions<WebhookOptions> options)
{
    private static readonly IPNetwork[] Forbidden =
    [
        IPNetwork.Parse("0.0.0.0/8"), IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("100.64.0.0/10"), IPNetwork.Parse("127.0.0.0/8"),
        IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.0.0.0/24"), IPNetwork.Parse("192.168.0.0/16"),
        IPNetwork.Parse("198.18.0.0/15"), IPNetwork.Parse("224.0.0.0/4"), IPNetwork.Parse("240.0.0.0/4"),
        IPNetwork.Parse("::/128"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("fc00::/7"), IPNetwork.Parse("fe80::/10"), IPNetwork.Parse("ff00::/8"),
    ];

    /// <summary>Why this address may not be a webhook target; null when it may.</summary>
    public string? Refuse(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        var settings = options.Value;
        if (settings.AllowPrivateNetworks) return null;
        if (settings.AllowedNetworks.Any(n => IPNetwork.TryParse(n, out var allowed) && allowed.Contains(address))) return null;
        return Forbidden.Any(n => n.Contains(address))
            ? $"{address} is a loopback, link-local, private or otherwise internal address"
            : null;
    }

    /// <summary>
    /// Checks a URL before it is accepted: the scheme, then every address its host resolves to now. Null when acceptable.
    /// A host that does not resolve (yet) is accepted: the check at send time still applies, and a passing DNS failure
    /// should not refuse a job.
    /// </summary>
    public async Task<string?> CheckUrlAsync(Uri url, CancellationToken cancellationToken = default)
    {
        if (url.Scheme != Uri.UriSchemeHttps && !(url.Scheme == Uri.UriSchemeHttp && options.Value.AllowHttp)) return "must use https";
        if (IPAddress.TryParse(url.DnsSafeHost, out var literal)) return Refuse(literal);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var addresses = await Dns.GetHostAddressesAsync(url.DnsSafeHost, timeout.Token);
            return addresses.Select(Refuse).FirstOrDefault(reason => reason is not null);
        }
        catch (Exception exception) when (exception is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>
    /// The connect step for webhook HTTP: resolves the host, refuses forbidden addresses, and connects only to an
    /// allowed one, so DNS that changes between the check and the request cannot reach the inside.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(string host, int port, CancellationToken cancellationToken)
    {
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
        var allowed = addresses.Where(a => Refuse(a) is null).ToArray();
        if (allowed.Length == 0)
        {
            throw new HttpRequestException($"refused to connect to {host}: " + (addresses.Length == 0 ? "it does not resolve" : Refuse(addresses[0])));
        }
#pragma warning disable CA2000 // the NetworkStream owns the socket once connected; the catch disposes it otherwise
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
#pragma warning restore CA2000
        try
        {
            await socket.ConnectAsync(allowed, port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
