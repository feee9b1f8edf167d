using Coordinator.Grains.Receipts;

namespace Coordinator.Grains.Ledger;

/// <summary>Tells the ledger grain how many receipts a completion issued (one-way), so that a full block is sealed at once.</summary>
internal sealed class LedgerReceiptsListener(IGrainFactory grains) : IReceiptsIssuedListener
{
    public void ReceiptsIssued(IReadOnlyList<IssuedReceipt> receipts) =>
        _ = grains.GetGrain<ILedgerGrain>(ILedgerGrain.Key).ReceiptsIssuedAsync(receipts.Count);
}
