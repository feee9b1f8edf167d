using System.Text.Json.Nodes;
using NSec.Cryptography;

namespace Coordinator.Grains.Receipts;

/// <summary>
/// Signs receipts with the grid's active key (<see cref="ReceiptSigningKeys"/>), made on first use if the grid has none.
/// The key is cached and its id checked again at most every <see cref="RefreshInterval"/>, so that a rotation made on any
/// silo is followed within that time; until then this silo signs with the key it had, which stays valid for verifying.
/// </summary>
public sealed class ReceiptSigner(ReceiptSigningKeys keys, TimeProvider time) : IReceiptSigner, IDisposable
{
    /// <summary>How long the cached active key is used before asking the table again.</summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _refresh = new(1, 1);
    private volatile ActiveKey? _active;

    public async ValueTask<SignedReceipt> SignAsync(JsonObject receipt, CancellationToken cancellationToken = default)
    {
        var active = _active;
        if (active is null || time.GetUtcNow() >= active.CheckedAt + RefreshInterval) active = await RefreshAsync(cancellationToken);
        return ReceiptSignatures.Sign(receipt, active.Key);
    }

    private async Task<ActiveKey> RefreshAsync(CancellationToken cancellationToken)
    {
        await _refresh.WaitAsync(cancellationToken);
        try
        {
            var now = time.GetUtcNow();
            if (_active is { } current && now < current.CheckedAt + RefreshInterval) return current;
            if (_active is { } known && await keys.ActiveKeyIdAsync(cancellationToken) == known.KeyId)
            {
                _active = known with { CheckedAt = now };
                return _active;
            }
            // A key replaced here is not disposed: a signature in progress may still be using it. Rotations are rare.
            var (keyId, key) = await keys.GetOrCreateActiveAsync(cancellationToken);
            _active = new ActiveKey(keyId, key, now);
            return _active;
        }
        finally
        {
            _refresh.Release();
        }
    }

    public void Dispose()
    {
        _active?.Key.Dispose();
        _refresh.Dispose();
    }

    private sealed record ActiveKey(string KeyId, Key Key, DateTimeOffset CheckedAt);
}
