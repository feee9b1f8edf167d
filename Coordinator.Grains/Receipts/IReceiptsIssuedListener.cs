namespace Coordinator.Grains.Receipts;

/// <summary>A receipt that was just issued: its id and the job it covers.</summary>
public sealed record IssuedReceipt(string ReceiptId, long JobId);

/// <summary>
/// Hears of receipts once the transaction that issued them has committed (the ledger's cue to seal). One-way: it is called
/// on the completing caller's path, so it must return at once (hand the work off) and a failure in it fails nothing but
/// itself. The ledger is the grid's listener (<c>LedgerReceiptsListener</c>).
/// </summary>
public interface IReceiptsIssuedListener
{
    void ReceiptsIssued(IReadOnlyList<IssuedReceipt> receipts);
}
