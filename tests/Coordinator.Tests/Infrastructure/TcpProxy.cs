using System.Net;
using System.Net.Sockets;

namespace Coordinator.Tests.Infrastructure;

/// <summary>
/// A loopback TCP relay in front of PostgreSQL that a test can cut (every connection dropped, new ones refused)
/// and restore on the same port: a database outage without stopping the shared server.
/// </summary>
public sealed class TcpProxy : IAsyncDisposable
{
    private readonly IPEndPoint _target;
    private readonly List<TcpClient> _connections = [];
    private TcpListener? _listener;
    private CancellationTokenSource _cancel = new();

    public TcpProxy(IPEndPoint target, int port = 0)
    {
        _target = target;
        Port = port;
    }

    public int Port { get; private set; }

    public void Start()
    {
        _cancel = new CancellationTokenSource();
        _listener = new TcpListener(IPAddress.Loopback, Port);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = AcceptLoopAsync(_listener, _cancel.Token);
    }

    /// <summary>Drops every relayed connection and stops listening: clients get resets, then connection refused.</summary>
    public void Cut()
    {
        _listener?.Stop();
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                // Reset rather than close politely, as a dying server would. A pump may have closed this one already.
                try
                {
                    if (connection.Client is { } socket) socket.LingerState = new LingerOption(true, 0);
                }
                catch (ObjectDisposedException)
                {
                }
                connection.Dispose();
            }
            _connections.Clear();
        }
        _cancel.Cancel();
    }

    private async Task AcceptLoopAsync(TcpListener listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await listener.AcceptTcpClientAsync(cancellationToken);
            }
            catch (Exception)
            {
                return;
            }
            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(_target, cancellationToken);
            }
            catch (Exception)
            {
                inbound.Dispose();
                outbound.Dispose();
                continue;
            }
            lock (_connections)
            {
                _connections.Add(inbound);
                _connections.Add(outbound);
            }
            _ = PumpAsync(inbound, outbound, cancellationToken);
            _ = PumpAsync(outbound, inbound, cancellationToken);
        }
    }

    private static async Task PumpAsync(TcpClient from, TcpClient to, CancellationToken cancellationToken)
    {
        try
        {
            await from.GetStream().CopyToAsync(to.GetStream(), cancellationToken);
        }
        catch (Exception)
        {
        }
        from.Dispose();
        to.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Cut();
        _cancel.Dispose();
        return ValueTask.CompletedTask;
    }
}
