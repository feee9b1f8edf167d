using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Carries wake-ups between nodes over PostgreSQL LISTEN/NOTIFY on one channel.
/// Outgoing: the wake keys of new work, coalesced while a NOTIFY is in flight (one NOTIFY can carry many jobs).
/// Incoming: one dedicated listening connection per node; after it reconnects (a database restart) every parked
/// poll here is woken once, since notifications sent while it was away are lost.
/// Payload: <c>nodeId</c>, then one line per group of jobs with the same keys: <c>count TAB key SPACE key…</c>.
/// </summary>
public sealed partial class NodeNotifications(
    NpgsqlDataSource dataSource, WorkSignals signals, WaiterRegistry registry, ILogger<NodeNotifications> logger) : BackgroundService
{
    public const string Channel = "grid_work";

    // PostgreSQL's limit is 8000 bytes per payload.
    private const int MaxPayloadBytes = 7900;

    /// <summary>This node's id, so it can ignore its own notifications.</summary>
    public string NodeId { get; } = Guid.NewGuid().ToString("N")[..12];

    private long _sent;

    /// <summary>How many NOTIFYs this node has sent (each can carry the wakes of many jobs).</summary>
    public long NotificationsSent => Interlocked.Read(ref _sent);

    /// <summary>Completes each time the listener has (re)subscribed; tests and health use it.</summary>
    public bool Listening { get; private set; }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(SendLoopAsync(stoppingToken), ListenLoopAsync(stoppingToken));

    private async Task SendLoopAsync(CancellationToken stoppingToken)
    {
        var reader = signals.Outgoing;
        var groups = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                groups.Clear();
                while (reader.TryRead(out var keys))
                {
                    var group = string.Join(' ', keys);
                    groups[group] = groups.GetValueOrDefault(group) + 1;
                }
                foreach (var payload in Payloads(groups))
                {
                    try
                    {
                        // A NOTIFY gets a transaction id and holds a database-wide lock until its commit is flushed;
                        // with synchronous_commit on, wakes would queue behind each other's fsync. Committed jobs are
                        // durable already and a wake is only a hint, so this transaction does not wait for the flush.
                        await using var command = dataSource.CreateCommand(
                            "SELECT set_config('synchronous_commit', 'off', true), pg_notify(@channel, @payload)");
                        command.Parameters.AddWithValue("channel", Channel);
                        command.Parameters.AddWithValue("payload", payload);
                        await command.ExecuteNonQueryAsync(stoppingToken);
                        Interlocked.Increment(ref _sent);
                    }
                    catch (Exception exception) when (exception is NpgsqlException or TimeoutException)
                    {
                        // The jobs are safe in the table; other nodes' polls find them on their next claim.
                        LogNotifyFailed(logger, exception.Message);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private IEnumerable<string> Payloads(Dictionary<string, int> groups)
    {
        var builder = new StringBuilder(NodeId);
        foreach (var (group, count) in groups)
        {
            var line = $"\n{count}\t{group}";
            if (builder.Length + line.Length > MaxPayloadBytes && builder.Length > NodeId.Length)
            {
                yield return builder.ToString();
                builder.Clear().Append(NodeId);
            }
            builder.Append(line);
        }
        if (builder.Length > NodeId.Length) yield return builder.ToString();
    }

    private async Task ListenLoopAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(250);
        var everConnected = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, e) => OnNotification(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }
                Listening = true;
                delay = TimeSpan.FromMilliseconds(250);
                if (everConnected)
                {
                    var woken = registry.WakeAll();
                    LogResubscribed(logger, woken);
                }
                everConnected = true;
                while (!stoppingToken.IsCancellationRequested)
                {
                    await connection.WaitAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                Listening = false;
                LogListenerLost(logger, exception.Message, delay.TotalMilliseconds);
                try
                {
                    await Task.Delay(delay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
            }
        }
        Listening = false;
    }

    private void OnNotification(string payload)
    {
        var lines = payload.Split('\n');
        if (lines[0] == NodeId) return;
        foreach (var line in lines.AsSpan(1))
        {
            var tab = line.IndexOf('\t', StringComparison.Ordinal);
            if (tab <= 0 || !int.TryParse(line.AsSpan(0, tab), out var count)) continue;
            var keys = line[(tab + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (var i = 0; i < count; i++)
            {
                if (!signals.WakeOneLocally(keys)) break;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not notify other nodes of new work: {Reason}")]
    private static partial void LogNotifyFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lost the cross-node listener ({Reason}); reconnecting in {DelayMs} ms")]
    private static partial void LogListenerLost(ILogger logger, string reason, double delayMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cross-node listener resubscribed; woke {Count} parked polls")]
    private static partial void LogResubscribed(ILogger logger, int count);
}
