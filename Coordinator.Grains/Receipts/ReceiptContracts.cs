using System.Text.Json.Nodes;

namespace Coordinator.Grains.Receipts;

/// <summary>
/// Signs receipts with the coordinator's active Ed25519 key (created once, shared by every silo through the
/// <c>receipt_signing_keys</c> table, its private key protected with the grid's Data Protection key ring).
/// </summary>
public interface IReceiptSigner
{
    /// <summary>
    /// Adds <c>signature</c> (<c>{"alg": "Ed25519", "key_id", "sig"}</c>) to <paramref name="receipt"/>, computed over the
    /// canonical JSON of the receipt without it (keys sorted, no whitespace, nulls dropped, as Python's
    /// <c>json.dumps(…, sort_keys=True, separators=(",", ":"))</c> writes it), and answers the signed receipt's JSON text
    /// as it is to be stored and served, with the key that signed it.
    /// </summary>
    ValueTask<SignedReceipt> SignAsync(JsonObject receipt, CancellationToken cancellationToken = default);
}

/// <summary>A signed receipt: its JSON text, exactly as stored and served, and the key id that signed it.</summary>
public sealed record SignedReceipt(string Json, string KeyId);

/// <summary>Checks a receipt's signature against the coordinator's keys, the retired ones included.</summary>
public interface IReceiptVerifier
{
    /// <summary>Null when <paramref name="receiptJson"/> carries a valid signature by one of the coordinator's keys; otherwise why not.</summary>
    ValueTask<string?> VerifyAsync(string receiptJson, CancellationToken cancellationToken = default);
}
