using Coordinator.Grains.Receipts;

namespace Coordinator.Grains.Ledger;

/// <summary>
/// Tells the ledger grain how many receipts this silo issued (one-way), so that a full block is sealed at once. Under
/// load completions come in many small batches: the counts are gathered and sent at most every
/// <see cref="SendInterval"/>, or as soon as <see cref="SendAt"/> are waiting, not once per batch. A count still gathered
/// when the load stops is sealed by the grain's interval.
/// </summary>
internal sealed class LedgerReceiptsListener(IGrainFactory grains, TimeProvider time) : IReceiptsIssuedListener
{
    /// <summary>How often at most the grain hears from this silo.</summary>
    public static readonly TimeSpan SendInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>Receipts waiting that are sent without waiting for the interval.</summary>
    public const int SendAt = 100;

    private long _waiting;
    private long _sentAt;

    public void ReceiptsIssued(IReadOnlyList<IssuedReceipt> receipts)
    {
        var waiting = Interlocked.Add(ref _waiting, receipts.Count);
        var now = time.GetTimestamp();
        if (waiting < SendAt && time.GetElapsedTime(Interlocked.Read(ref _sentAt), now) < SendInterval) return;
        Interlocked.Exchange(ref _sentAt, now);
        var count = Interlocked.Exchange(ref _waiting, 0);
        if (count > 0) _ = grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).ReceiptsIssuedAsync((int)Math.Min(count, int.MaxValue));
    }
}
