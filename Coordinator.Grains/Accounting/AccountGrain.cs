using Coordinator.Grains.Dispatch;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Accounting;

/// <summary>Today's counts of an account against its plan.</summary>
[GenerateSerializer, Immutable]
public sealed record QuotaCounters(
    [property: Id(0)] DateOnly Day, [property: Id(1)] long Requests, [property: Id(2)] long Tokens, [property: Id(3)] bool Held);

/// <summary>
/// One account's daily quota (key: the account id): today's request and token counts in memory, compared with the
/// plan's limits as they grow, and the hold when a limit is reached.
/// </summary>
/// <remarks>Version 1 added <see cref="CountBatchAsync"/>.</remarks>
[Orleans.CodeGeneration.Version(1)]
public interface IAccountGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// Counts requests (a request counts when its job is claimed) and tokens (when a result is accepted); reaching a limit
    /// holds the account's pending jobs before this answers. Answers whether the account's plan has a daily limit at all.
    /// </summary>
    Task<bool> CountAsync(int requests, long tokens);

    /// <summary>
    /// Counts as <see cref="CountAsync"/> does, once per <paramref name="batch"/>: a silo sends its batched counts again
    /// when the call failed, and a call that failed may have been counted (its answer was lost as the grain's silo left).
    /// Batches are remembered by the activation (the last <see cref="AccountGrain.BatchesRemembered"/>), so a batch sent
    /// again within seconds is not counted twice.
    /// </summary>
    Task<bool> CountBatchAsync(Guid batch, int requests, long tokens);

    /// <summary>The account's plan changed (its holds were released): read the limits again and hold again if still over.</summary>
    Task PlanChangedAsync();

    Task<QuotaCounters> TodayAsync();
}

/// <summary>
/// Counts in memory, written to <c>quota_usage</c> every <see cref="AccountingOptions.CounterWriteInterval"/> and when
/// the grain deactivates, so that no claim or result locks a counter row. A new activation starts from the written
/// counts: a silo that dies loses at most one interval of counts, and a limit is then reached a little later. The UTC day
/// boundary starts the counts afresh; the duties release the holds of the day before (<see cref="Quotas.ReleaseAsync"/>).
/// </summary>
public sealed partial class AccountGrain(Quotas quotas, Dispatchers dispatchers, IOptions<AccountingOptions> options,
    ILogger<AccountGrain> logger) : Grain, IAccountGrain
{
    private QuotaState _plan = new();
    private DateOnly _day;
    private long _requests;
    private long _tokens;
    private long _unwrittenRequests;
    private long _unwrittenTokens;
    private bool _held;
    private readonly HashSet<Guid> _batches = [];
    private readonly Queue<Guid> _batchOrder = new();

    /// <summary>How many batch ids an activation remembers (a silo sends about one per second).</summary>
    public const int BatchesRemembered = 1000;

    private long AccountId => this.GetPrimaryKeyLong();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        await LoadAsync(quotas.Today);
        var interval = options.Value.CounterWriteInterval;
        this.RegisterGrainTimer(WriteAsync, new GrainTimerCreationOptions(interval, interval));
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) => WriteAsync(cancellationToken);

    public async Task<bool> CountAsync(int requests, long tokens)
    {
        await RollOverAsync();
        _requests += requests;
        _unwrittenRequests += requests;
        _tokens += tokens;
        _unwrittenTokens += tokens;
        await EnforceAsync();
        return Limited;
    }

    public Task<bool> CountBatchAsync(Guid batch, int requests, long tokens)
    {
        if (!_batches.Add(batch)) return Task.FromResult(Limited);
        _batchOrder.Enqueue(batch);
        if (_batchOrder.Count > BatchesRemembered) _batches.Remove(_batchOrder.Dequeue());
        return CountAsync(requests, tokens);
    }

    private bool Limited => _plan.DailyRequests is not null || _plan.DailyTokens is not null;

    public async Task PlanChangedAsync()
    {
        await WriteAsync(CancellationToken.None);
        await LoadAsync(quotas.Today);
        await EnforceAsync();
    }

    public async Task<QuotaCounters> TodayAsync()
    {
        await RollOverAsync();
        return new QuotaCounters(_day, _requests, _tokens, _held);
    }

    private async Task LoadAsync(DateOnly day)
    {
        _plan = await quotas.LoadAsync(AccountId, day);
        _day = day;
        _requests = _plan.Requests + _unwrittenRequests;
        _tokens = _plan.Tokens + _unwrittenTokens;
        _held = _plan.Held;
    }

    // Counts belong to the UTC day they happen on: the first count of a new day writes the old day's and starts afresh.
    private async Task RollOverAsync()
    {
        var today = quotas.Today;
        if (today == _day) return;
        await WriteAsync(CancellationToken.None);
        await LoadAsync(today);
    }

    private async Task EnforceAsync()
    {
        if (_held) return;
        var reached = (_plan.DailyRequests is { } requestLimit && _requests >= requestLimit)
            || (_plan.DailyTokens is { } tokenLimit && _tokens >= tokenLimit);
        if (!reached) return;
        var keys = await quotas.HoldAsync(AccountId, _day);
        _held = true;
        LogHeld(logger, AccountId, _requests, _tokens);
        await dispatchers.DropAccountAsync(AccountId, keys);
    }

    private async Task WriteAsync(CancellationToken cancellationToken)
    {
        if (_unwrittenRequests == 0 && _unwrittenTokens == 0) return;
        var (requests, tokens) = (_unwrittenRequests, _unwrittenTokens);
        try
        {
            await quotas.AddAsync(AccountId, _day, requests, tokens);
            _unwrittenRequests -= requests;
            _unwrittenTokens -= tokens;
        }
        catch (Exception exception)
        {
            // Kept for the next write.
            LogWriteFailed(logger, AccountId, exception.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Account {AccountId} reached a daily limit ({Requests} requests, {Tokens} tokens): its pending jobs are held until the UTC day changes")]
    private static partial void LogHeld(ILogger logger, long accountId, long requests, long tokens);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not write the quota counts of account {AccountId}, will try again: {Reason}")]
    private static partial void LogWriteFailed(ILogger logger, long accountId, string reason);
}
