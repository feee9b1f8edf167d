using Coordinator.Grains.Duties;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;

namespace Coordinator.Grains.Ledger;

/// <summary>The cluster's one sealer of ledger blocks (<see cref="LedgerSealer"/>), so that the chain never forks.</summary>
public interface ILedgerGrain : IGrainWithIntegerKey
{
    /// <summary>The one key of the singleton.</summary>
    const long Key = 0;

    /// <summary>
    /// <paramref name="count"/> receipts were committed (called once a batch of them is): once
    /// <see cref="LedgerOptions.MaxReceiptsPerBlock"/> have been told of since the last seal, the grain seals at once
    /// instead of waiting for its timer. One-way: the issuer does not wait for a seal.
    /// </summary>
    [OneWay]
    Task ReceiptsIssuedAsync(int count);

    /// <summary>Activates the grain if it is not active (its timer then seals every <see cref="LedgerOptions.SealInterval"/>); answers what it did so far.</summary>
    Task<LedgerStatus> EnsureRunningAsync();

    /// <summary>Seals every receipt unsealed now, in blocks of at most <see cref="LedgerOptions.MaxReceiptsPerBlock"/>, and answers the blocks it sealed.</summary>
    Task<IReadOnlyList<LedgerBlock>> SealNowAsync();
}

/// <summary>Where the ledger's sealer runs and what it sealed there since its activation.</summary>
[GenerateSerializer, Immutable]
public sealed record LedgerStatus([property: Id(0)] string Silo, [property: Id(1)] long BlocksSealed, [property: Id(2)] long FailedSeals);

/// <summary>
/// Seals the receipts committed since the last block, every <see cref="LedgerOptions.SealInterval"/> on its grain timer
/// (the injected clock, so tests move it) or as soon as a block's worth has been reported by
/// <see cref="ILedgerGrain.ReceiptsIssuedAsync"/>. Orleans keeps one activation of the key in the cluster; for the
/// moment of membership churn when two may overlap, <see cref="LedgerSealer"/>'s primary key on the height keeps the chain
/// linear. Not reentrant: one seal at a time per activation.
/// </summary>
public sealed partial class LedgerGrain(LedgerSealer sealer, IOptions<LedgerOptions> options, ILogger<LedgerGrain> logger) : Grain, ILedgerGrain
{
    // Receipts reported since the last seal: only a trigger, never what is sealed (that is whatever is unsealed in the table).
    private long _reported;
    private long _blocksSealed;
    private long _failedSeals;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var interval = options.Value.SealInterval;
        // KeepAlive: never collected while idle; after its silo dies, any silo's LedgerKeeper activates it elsewhere.
        this.RegisterGrainTimer(SealOnTimerAsync, new GrainTimerCreationOptions(interval, interval) { KeepAlive = true });
        LogActivated(logger, RuntimeIdentity);
        return Task.CompletedTask;
    }

    public async Task ReceiptsIssuedAsync(int count)
    {
        _reported += count;
        if (_reported < options.Value.MaxReceiptsPerBlock) return;
        try
        {
            await SealPendingAsync(CancellationToken.None);
        }
        catch (Exception exception)
        {
            // The timer seals them later; nobody waits on a one-way call.
            _failedSeals++;
            LogSealFailed(logger, exception.Message);
        }
    }

    public Task<LedgerStatus> EnsureRunningAsync() => Task.FromResult(new LedgerStatus(RuntimeIdentity, _blocksSealed, _failedSeals));

    public Task<IReadOnlyList<LedgerBlock>> SealNowAsync() => SealPendingAsync(CancellationToken.None);

    private async Task SealOnTimerAsync(CancellationToken cancellationToken)
    {
        try
        {
            await SealPendingAsync(cancellationToken);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            // The next tick tries again; a database that is down shows up here once per interval.
            _failedSeals++;
            LogSealFailed(logger, exception.Message);
        }
    }

    private async Task<IReadOnlyList<LedgerBlock>> SealPendingAsync(CancellationToken cancellationToken)
    {
        var max = options.Value.MaxReceiptsPerBlock;
        var blocks = new List<LedgerBlock>();
        _reported = 0;
        // A full block may leave more behind; a block short of full took everything unsealed when it was read.
        while (await sealer.SealNextAsync(max, cancellationToken) is { } block)
        {
            blocks.Add(block);
            _blocksSealed++;
            if (block.ReceiptCount < max) break;
        }
        return blocks;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "The ledger is sealed on silo {Silo}")]
    private static partial void LogActivated(ILogger logger, string silo);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sealing a ledger block failed, will try again: {Reason}")]
    private static partial void LogSealFailed(ILogger logger, string reason);
}

/// <summary>
/// On every silo: makes sure the ledger grain is active somewhere, every <see cref="LedgerOptions.SealInterval"/>, so
/// that unsealed receipts never wait for ever: not when no new receipt comes to wake the grain, and not after the silo
/// it ran on died (it comes back on a survivor within an interval of the death being declared). Off where the duty loop
/// is off (<see cref="DispatchOptions.RunDuties"/>: tests seal by hand).
/// </summary>
public sealed class LedgerKeeper(
    IGrainFactory grains, TimeProvider time, IOptions<LedgerOptions> options, IOptions<DispatchOptions> dispatch, ILogger<LedgerKeeper> logger)
    : PeriodicService(time, logger)
{
    protected override bool Enabled => dispatch.Value.RunDuties;

    protected override TimeSpan Interval => options.Value.SealInterval;

    protected override string Name => "Ledger keeper";

    protected override Task RunPassAsync(CancellationToken stoppingToken) =>
        grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).EnsureRunningAsync().WaitAsync(stoppingToken);
}
