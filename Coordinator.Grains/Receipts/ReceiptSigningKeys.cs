using Dapper;
using Microsoft.AspNetCore.DataProtection;
using NSec.Cryptography;
using Npgsql;

namespace Coordinator.Grains.Receipts;

/// <summary>A receipt signing key as published: its id (the base64url public key), the public key, and when (UTC) it was made and retired.</summary>
public sealed record ReceiptKeyInfo(string KeyId, byte[] PublicKey, DateTime CreatedAt, DateTime? RetiredAt)
{
    /// <summary>Whether this is the key that signs new receipts (there is at most one).</summary>
    public bool Active => RetiredAt is null;
}

/// <summary>
/// The coordinator's Ed25519 receipt signing keys (<c>receipt_signing_keys</c>), shared by every silo. A private key is
/// written only protected with the grid's Data Protection key ring (itself in PostgreSQL, so every silo can unprotect
/// it), never in clear. The active key is made once for the whole grid: silos racing to make it all end with the one
/// that won. Rotation retires the active key and makes a new one in one transaction; retired keys stay, for verifying.
/// </summary>
public sealed class ReceiptSigningKeys(NpgsqlDataSource dataSource, IDataProtectionProvider protection, TimeProvider time)
{
    /// <summary>The Data Protection purpose of the private keys: changing it makes every stored key unreadable.</summary>
    internal const string ProtectorPurpose = "Coordinator.Receipts.SigningKey.v1";

    private readonly IDataProtector _protector = protection.CreateProtector(ProtectorPurpose);

    /// <summary>
    /// The active key's id and private key, making the grid's first key if there is none. Concurrent callers on any silo
    /// get the same key: the unique index on the active key lets one insert win, and every caller reads the winner.
    /// </summary>
    public async Task<(string KeyId, Key Key)> GetOrCreateActiveAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        if (await ReadActiveAsync(connection, cancellationToken) is { } active) return active;
        var (candidateId, publicKey, protectedKey) = NewKey();
        await connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO receipt_signing_keys (key_id, public_key, private_key, created_at) VALUES (@candidateId, @publicKey, @protectedKey, @now)
            ON CONFLICT DO NOTHING
            """, new { candidateId, publicKey, protectedKey, now = time.GetUtcNow() }, cancellationToken: cancellationToken));
        return await ReadActiveAsync(connection, cancellationToken)
            ?? throw new InvalidOperationException("No active receipt signing key after making one: was it retired at the same moment? Try again.");
    }

    /// <summary>The active key's id, or null if the grid has none yet. Cheap: one indexed read, nothing unprotected.</summary>
    public async Task<string?> ActiveKeyIdAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT key_id FROM receipt_signing_keys WHERE retired_at IS NULL", cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Retires the active key (if any) and makes a new active one, atomically: receipts signed from then on use the new
    /// key; the old one stays listed, retired, so that receipts it signed still verify. Concurrent rotations take turns.
    /// </summary>
    public async Task<ReceiptKeyInfo> RotateAsync(CancellationToken cancellationToken = default)
    {
        var (keyId, publicKey, protectedKey) = NewKey();
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // Writers take turns (readers do not wait): a second rotation retires the key the first made.
        await connection.ExecuteAsync(new CommandDefinition("""
            LOCK TABLE receipt_signing_keys IN EXCLUSIVE MODE;
            UPDATE receipt_signing_keys SET retired_at = @now WHERE retired_at IS NULL;
            INSERT INTO receipt_signing_keys (key_id, public_key, private_key, created_at) VALUES (@keyId, @publicKey, @protectedKey, @now);
            """, new { keyId, publicKey, protectedKey, now }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return new ReceiptKeyInfo(keyId, publicKey, now.UtcDateTime, null);
    }

    /// <summary>The public key of <paramref name="keyId"/>, active or retired; null if the grid never had that key.</summary>
    public async Task<byte[]?> PublicKeyAsync(string keyId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<byte[]>(new CommandDefinition(
            "SELECT public_key FROM receipt_signing_keys WHERE key_id = @keyId", new { keyId }, cancellationToken: cancellationToken));
    }

    /// <summary>Every key, what is published for verifying receipts: the retired ones oldest first, then the active one.</summary>
    public async Task<IReadOnlyList<ReceiptKeyInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return (await connection.QueryAsync<ReceiptKeyInfo>(new CommandDefinition(
            "SELECT key_id, public_key, created_at, retired_at FROM receipt_signing_keys ORDER BY retired_at IS NULL, created_at, key_id",
            cancellationToken: cancellationToken))).AsList();
    }

    private async Task<(string KeyId, Key Key)?> ReadActiveAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var row = await connection.QuerySingleOrDefaultAsync<(string KeyId, string PrivateKey)?>(new CommandDefinition(
            "SELECT key_id, private_key FROM receipt_signing_keys WHERE retired_at IS NULL", cancellationToken: cancellationToken));
        if (row is not { } active) return null;
        var seed = _protector.Unprotect(Convert.FromBase64String(active.PrivateKey));
        try
        {
            return (active.KeyId, Key.Import(SignatureAlgorithm.Ed25519, seed, KeyBlobFormat.RawPrivateKey));
        }
        finally
        {
            Array.Clear(seed);
        }
    }

    /// <summary>A fresh key pair: its id, public key and protected private key (base64 of the protected bytes).</summary>
    private (string KeyId, byte[] PublicKey, string ProtectedKey) NewKey()
    {
        using var key = Key.Create(SignatureAlgorithm.Ed25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        var seed = key.Export(KeyBlobFormat.RawPrivateKey);
        try
        {
            var publicKey = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
            return (ReceiptSignatures.KeyIdOf(publicKey), publicKey, Convert.ToBase64String(_protector.Protect(seed)));
        }
        finally
        {
            Array.Clear(seed);
        }
    }
}
