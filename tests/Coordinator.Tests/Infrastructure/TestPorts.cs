using System.Net;
using System.Net.Sockets;

namespace Coordinator.Tests.Infrastructure;

/// <summary>
/// Ports for the servers the tests start (hosts, silo processes, Prism, s3rver). A port that the kernel picks for a
/// listener on port 0 comes from its ephemeral range (32768–60999 here), the range every outgoing connection also
/// draws its local port from: between the probe and the server's own bind, a test's database or HTTP connection can
/// take it ("address already in use"). These ports are handed out in turn from below that range instead, each once per
/// run, and each checked free on every address first.
/// </summary>
public static class TestPorts
{
    private const int First = 20_000;
    private const int Last = 32_000;
    private static int s_next = First + Random.Shared.Next(0, 4_000);

    public static int Next()
    {
        for (var attempt = 0; attempt < Last - First; attempt++)
        {
            var port = Interlocked.Increment(ref s_next);
            if (port >= Last)
            {
                Interlocked.CompareExchange(ref s_next, First, port);
                continue;
            }
            try
            {
                using var probe = new TcpListener(IPAddress.Any, port);
                probe.Start();
                return port;
            }
            catch (SocketException)
            {
                // Taken: try the next.
            }
        }
        throw new InvalidOperationException($"no free port between {First} and {Last}");
    }
}
