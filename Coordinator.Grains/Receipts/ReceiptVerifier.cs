using System.Collections.Concurrent;
using NSec.Cryptography;

namespace Coordinator.Grains.Receipts;

/// <summary>
/// Verifies receipts against every key the grid has had, active or retired (<see cref="ReceiptSigningKeys"/>). Public
/// keys never change once made, so each is read from the table once, the first time a receipt names it, and kept.
/// </summary>
public sealed class ReceiptVerifier(ReceiptSigningKeys keys) : IReceiptVerifier
{
    private readonly ConcurrentDictionary<string, PublicKey> _known = new(StringComparer.Ordinal);

    /// <summary>Null when the receipt's signature is valid and made by one of the grid's keys; otherwise why not (see <see cref="ReceiptSignatures.Verify(string, Func{string, byte[]})"/>).</summary>
    public async ValueTask<string?> VerifyAsync(string receiptJson, CancellationToken cancellationToken = default)
    {
        string? unknown = null;
        var verdict = ReceiptSignatures.Verify(receiptJson, keyId =>
        {
            if (_known.TryGetValue(keyId, out var key)) return key;
            unknown = keyId;
            return null;
        });
        if (unknown is null) return verdict;
        if (await keys.PublicKeyAsync(unknown, cancellationToken) is not { } raw
            || !PublicKey.TryImport(SignatureAlgorithm.Ed25519, raw, KeyBlobFormat.RawPublicKey, out var publicKey)
            || publicKey is null)
        {
            return verdict;
        }
        _known.TryAdd(unknown, publicKey);
        return ReceiptSignatures.Verify(receiptJson, keyId => _known.GetValueOrDefault(keyId));
    }
}
