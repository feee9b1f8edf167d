using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Coordinator.Grains.Accounting;

/// <summary>
/// How a silo counts requests and tokens on the accounts' grains. For an account whose plan has a daily limit each count
/// is a call that is awaited, so that the limit it reaches is enforced (the account's jobs held) before the claim or the
/// result is answered. For an account without limits the counts are only a record: the silo remembers for
/// <see cref="UnlimitedFor"/> that the plan has none, adds them up, and sends them to the account's grain once every
/// <see cref="SendInterval"/>, so that claims and results of such accounts make no grain call at all. What is unsent when
/// the silo stops is sent as the silo's stop begins (its <see cref="ServiceLifecycleStage.Active"/> stage), while grains can
/// still be called. Counts that arrive after that (results that reach a job on this silo while it stops) are no longer
/// sent to grains, whose calls may fail by then: they are added straight to the account's row of the day
/// (<see cref="Quotas.AddAsync"/>) when the host stops this service, which is after the silo has stopped (the host stops
/// the services registered after it first, and the silo is one of them). The row's counts are additive, so the account's
/// grain, wherever it is active, keeps writing its own on top.
/// <para>
/// A batch whose call failed as the grain's silo stopped or died is sent again, under the same id, with the next batches
/// (<see cref="IAccountGrain.CountBatchAsync"/>): the call may have been refused before it ran, or counted with its answer
/// lost, and the grain counts each id once. One still unsent when this silo has stopped is dropped, not written to the
/// row: it may have been counted already, and a quota that counts a little less is the safer error.
/// </para>
/// </summary>
public sealed partial class QuotaCounting(IGrainFactory grains, Quotas quotas, TimeProvider time, ILogger<QuotaCounting> logger)
    : IHostedService, ILifecycleParticipant<ISiloLifecycle>, IAsyncDisposable
{
    /// <summary>How long an answer that the plan has no limit is trusted: a plan that gains one is enforced that much later at the most.</summary>
    public static readonly TimeSpan UnlimitedFor = TimeSpan.FromMinutes(1);

    /// <summary>How often the counts of accounts without limits are sent to their grains.</summary>
    public static readonly TimeSpan SendInterval = TimeSpan.FromSeconds(1);

    private const int MaxRemembered = 100_000;

    private readonly ConcurrentDictionary<long, DateTimeOffset> _unlimitedUntil = new();
    private readonly ConcurrentDictionary<long, Unsent> _unsent = new();
    // Batches whose call failed, to send again under the same id.
    private readonly ConcurrentQueue<Batch> _failed = new();
    private ITimer? _timer;
    // Set as the silo's stop begins: from then on batched counts wait for the host's stop, which writes them to the table.
    private volatile bool _siloStopping;

    /// <summary>One request of the account: its job was claimed.</summary>
    public Task CountRequestAsync(long accountId) => CountAsync(accountId, 1, 0);

    /// <summary>Tokens of a result the account's job reported.</summary>
    public Task CountTokensAsync(long accountId, long tokens) => CountAsync(accountId, 0, tokens);

    private Task CountAsync(long accountId, int requests, long tokens)
    {
        if (_unlimitedUntil.TryGetValue(accountId, out var until) && until > time.GetUtcNow())
        {
            Keep(accountId, requests, tokens);
            return Task.CompletedTask;
        }
        return SendAsync(accountId, requests, tokens);
    }

    private async Task SendAsync(long accountId, int requests, long tokens)
    {
        try
        {
            Learned(accountId, await grains.GetGrain<IAccountGrain>(accountId).CountAsync(requests, tokens));
        }
        catch (Exception exception)
        {
            // A count lost with a failing call: the quota is reached that much later.
            LogCountFailed(logger, accountId, exception.Message);
        }
    }

    private async Task SendAsync(Batch batch)
    {
        try
        {
            Learned(batch.AccountId, await grains.GetGrain<IAccountGrain>(batch.AccountId).CountBatchAsync(batch.Id, batch.Requests, batch.Tokens));
        }
        catch (Exception exception) when (GrainCallFailures.IsTransient(exception))
        {
            // Refused, or counted with its answer lost (the grain's silo stopped or died): sent again with the next
            // batches, under the same id, to the grain's next activation.
            _failed.Enqueue(batch);
        }
        catch (Exception exception)
        {
            LogCountFailed(logger, batch.AccountId, exception.Message);
        }
    }

    private void Learned(long accountId, bool limited)
    {
        if (limited) _unlimitedUntil.TryRemove(accountId, out _);
        else if (_unlimitedUntil.Count < MaxRemembered || _unlimitedUntil.ContainsKey(accountId)) _unlimitedUntil[accountId] = time.GetUtcNow() + UnlimitedFor;
        else _unlimitedUntil.Clear(); // forget in bulk: each is learned again at its next count
    }

    private void Keep(long accountId, int requests, long tokens)
    {
        var unsent = _unsent.GetOrAdd(accountId, static _ => new Unsent());
        Interlocked.Add(ref unsent.Requests, requests);
        Interlocked.Add(ref unsent.Tokens, tokens);
    }

    /// <summary>Sends what accounts without limits have counted since the last time, and the batches whose call failed, to their grains.</summary>
    private Task SendUnsentAsync() => Task.WhenAll(TakeFailed().Concat(TakeUnsent()).Select(SendAsync));

    /// <summary>
    /// Adds what accounts without limits have counted and not sent straight to their rows of the day. Batches whose call
    /// failed are dropped: each may have been counted by its grain.
    /// </summary>
    private async Task WriteUnsentAsync()
    {
        foreach (var batch in TakeFailed()) LogBatchDropped(logger, batch.AccountId, batch.Requests, batch.Tokens);
        foreach (var batch in TakeUnsent())
        {
            try
            {
                await quotas.AddAsync(batch.AccountId, quotas.Today, batch.Requests, batch.Tokens);
            }
            catch (Exception exception)
            {
                LogCountFailed(logger, batch.AccountId, exception.Message);
            }
        }
    }

    private List<Batch> TakeUnsent()
    {
        var taken = new List<Batch>();
        foreach (var (accountId, unsent) in _unsent)
        {
            var requests = (int)Interlocked.Exchange(ref unsent.Requests, 0);
            var tokens = Interlocked.Exchange(ref unsent.Tokens, 0);
            if (requests == 0 && tokens == 0) _unsent.TryRemove(KeyValuePair.Create(accountId, unsent));
            else taken.Add(new Batch(Guid.NewGuid(), accountId, requests, tokens));
        }
        return taken;
    }

    private List<Batch> TakeFailed()
    {
        var taken = new List<Batch>();
        while (_failed.TryDequeue(out var batch)) taken.Add(batch);
        return taken;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _timer = time.CreateTimer(_ =>
        {
            if (!_siloStopping) _ = SendUnsentAsync();
        }, null, SendInterval, SendInterval);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_timer is not null) await _timer.DisposeAsync();
        // After the silo (or without one): no grain call is sure to arrive now, and the table takes additions from anyone.
        await WriteUnsentAsync();
    }

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(QuotaCounting), ServiceLifecycleStage.Active, _ => Task.CompletedTask, async _ =>
        {
            _siloStopping = true;
            await SendUnsentAsync();
        });

    public async ValueTask DisposeAsync()
    {
        if (_timer is not null) await _timer.DisposeAsync();
    }

    private sealed record Batch(Guid Id, long AccountId, int Requests, long Tokens);

    private sealed class Unsent
    {
        public long Requests;
        public long Tokens;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "A batch of quota counts of account {AccountId} ({Requests} requests, {Tokens} tokens) whose call failed is dropped as this silo stops: it may have been counted")]
    private static partial void LogBatchDropped(ILogger logger, long accountId, int requests, long tokens);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not count on the quota of account {AccountId}: {Reason}")]
    private static partial void LogCountFailed(ILogger logger, long accountId, string reason);
}
