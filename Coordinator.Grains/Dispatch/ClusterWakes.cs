using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// Carries wake-ups between silos through the family dispatchers (<see cref="IDispatcherGrain"/>).
/// Outgoing: work that found no parked poll on this silo, coalesced per family and keys while a call is in flight.
/// Incoming: this silo's parked polls as a grain observer, subscribed to the dispatcher of each family a poll here has
/// parked for. When membership reports a silo dead, dispatchers that lived there are gone with their subscriptions:
/// this silo subscribes again and wakes each of its parked polls once, so that a wake lost with them is not missed.
/// </summary>
public sealed partial class ClusterWakes(
    IGrainFactory grains, WorkSignals signals, WaiterRegistry registry, ILocalSiloDetails localSilo, IClusterMembershipService membership,
    IMeterFactory meters, ILogger<ClusterWakes> logger) : BackgroundService, ISiloPolls
{
    /// <summary>How often this silo renews its subscriptions, in case a dispatcher dropped it for a slow answer.</summary>
    private static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, Task> _subscriptions = new(StringComparer.Ordinal);
    private readonly Counter<long> _forwarded = meters.Create("Coordinator.Dispatch").CreateCounter<long>(
        "coordinator.dispatch.wakes_forwarded", unit: "{job}", description: "Jobs handed to the family dispatchers because no poll on this silo could take them.");
    private ISiloPolls? _self;

    /// <summary>This silo, as dispatchers and health name it.</summary>
    public string SiloId => localSilo.SiloAddress.ToString();

    /// <summary>Whether this silo is an active member of the cluster, so that wakes can reach it.</summary>
    public bool Active => membership.CurrentSnapshot.GetSiloStatus(localSilo.SiloAddress) == SiloStatus.Active;

    /// <summary>
    /// Makes sure that the dispatchers of every family among <paramref name="pollKeys"/> know this silo before the poll
    /// claims: a job submitted elsewhere after the claim's snapshot then reaches the poll. Complete at once after the
    /// first poll of a family here. A failed subscription is forgotten (the next poll tries again); the poll still
    /// claims and waits, and is woken by any job submitted on this silo.
    /// </summary>
    public Task EnsureSubscribedAsync(string[] pollKeys)
    {
        Task? pending = null;
        List<Task>? more = null;
        foreach (var key in pollKeys)
        {
            var task = _subscriptions.GetOrAdd(WakeKeys.FamilyOf(key), SubscribeAsync);
            if (task.IsCompletedSuccessfully) continue;
            if (pending is null) pending = task;
            else (more ??= [pending]).Add(task);
        }
        return more is not null ? Task.WhenAll(more) : pending ?? Task.CompletedTask;
    }

    public Task<int> WakeAsync(string[] keys, int count)
    {
        var woken = 0;
        while (woken < count && signals.WakeOneLocally(keys)) woken++;
        return Task.FromResult(woken);
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(SendLoopAsync(stoppingToken), RefreshLoopAsync(stoppingToken), WatchMembershipAsync(stoppingToken));

    private async Task SubscribeAsync(string family)
    {
        try
        {
            _self ??= grains.CreateObjectReference<ISiloPolls>(this);
            await grains.GetGrain<IDispatcherGrain>(family).SubscribeAsync(SiloId, _self);
        }
        catch (Exception exception)
        {
            _subscriptions.TryRemove(family, out _);
            LogSubscribeFailed(logger, family, exception.Message);
        }
    }

    private async Task ResubscribeAllAsync()
    {
        foreach (var family in _subscriptions.Keys.ToList()) await SubscribeAsync(family);
    }

    private async Task SendLoopAsync(CancellationToken stoppingToken)
    {
        var reader = signals.Outgoing;
        var groups = new Dictionary<string, (string[] Keys, int Count)>(StringComparer.Ordinal);
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                groups.Clear();
                while (reader.TryRead(out var keys))
                {
                    var group = string.Join(' ', keys);
                    groups[group] = (keys, groups.GetValueOrDefault(group).Count + 1);
                }
                await Task.WhenAll(groups.Values.Select(ForwardAsync));
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task ForwardAsync((string[] Keys, int Count) group)
    {
        try
        {
            _forwarded.Add(group.Count);
            await grains.GetGrain<IDispatcherGrain>(WakeKeys.FamilyOf(group.Keys[0])).WorkAvailableAsync(SiloId, group.Keys, group.Count);
        }
        catch (Exception exception)
        {
            // The jobs are safe in the table; polls on other silos find them when they next claim.
            LogForwardFailed(logger, exception.Message);
        }
    }

    private async Task RefreshLoopAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(RefreshInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken)) await ResubscribeAllAsync();
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task WatchMembershipAsync(CancellationToken stoppingToken)
    {
        var dead = new HashSet<SiloAddress>();
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var newlyDead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead && dead.Add(m.SiloAddress)).ToList();
                if (newlyDead.Count == 0 || _subscriptions.IsEmpty) continue;
                await ResubscribeAllAsync();
                var woken = registry.WakeAll();
                if (logger.IsEnabled(LogLevel.Information))
                {
                    var silos = string.Join(", ", newlyDead.Select(m => m.SiloAddress));
                    LogResubscribed(logger, silos, woken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not subscribe to the dispatcher of {Family}: {Reason}")]
    private static partial void LogSubscribeFailed(ILogger logger, string family, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not pass work to the other silos: {Reason}")]
    private static partial void LogForwardFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo(s) {Silos} died: subscribed again and woke {Count} parked polls")]
    private static partial void LogResubscribed(ILogger logger, string silos, int count);
}
