using System.Buffers;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using Dapper;
using Microsoft.AspNetCore.DataProtection;
using Npgsql;

namespace Coordinator.Grains.Lightning.Macaroons;

/// <summary>A root key that signs session macaroons, and its id (which every macaroon it signs names in its identifier).</summary>
public sealed record MacaroonRootKey(string KeyId, byte[] Key);

/// <summary>
/// The grid's macaroon root keys (<c>lightning_macaroon_keys</c>), shared by every silo so that a macaroon minted on one
/// verifies on all. Kept as <see cref="Receipts.ReceiptSigningKeys"/> keeps the receipt keys: a key is written only
/// protected with the grid's Data Protection key ring (itself in PostgreSQL, so every silo can unprotect it), never in
/// clear; the active key is made once for the whole grid, and silos racing to make it all end with the one that won.
/// There is no rotation yet; the key id in each macaroon's identifier is what lets one be added without breaking
/// macaroons already out (a rotation would also have to refresh the active key cached here).
/// </summary>
public sealed class MacaroonRootKeys(NpgsqlDataSource dataSource, IDataProtectionProvider protection, TimeProvider time)
{
    /// <summary>The Data Protection purpose of the root keys: changing it makes every stored key unreadable.</summary>
    internal const string ProtectorPurpose = "Coordinator.Lightning.MacaroonRootKey.v1";

    /// <summary>Random bytes in a root key: HMAC-SHA256's block-sized key strength.</summary>
    private const int KeyLength = 32;

    private static readonly SearchValues<char> LowercaseHexDigits = SearchValues.Create("0123456789abcdef");

    private readonly IDataProtector _protector = protection.CreateProtector(ProtectorPurpose);

    // Keys never change once made, so each is read (and unprotected) once per silo.
    private readonly ConcurrentDictionary<string, MacaroonRootKey> _byId = new(StringComparer.Ordinal);
    private MacaroonRootKey? _active;

    /// <summary>
    /// The key that signs new macaroons, making the grid's first if there is none. Concurrent callers on any silo get the
    /// same key: the unique index on the active key lets one insert win, and every caller reads the winner.
    /// </summary>
    public async ValueTask<MacaroonRootKey> ActiveAsync(CancellationToken cancellationToken = default)
    {
        if (_active is { } cached) return cached;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await ReadActiveAsync(connection, cancellationToken);
        if (row is null)
        {
            var key = RandomNumberGenerator.GetBytes(KeyLength);
            await connection.ExecuteAsync(new CommandDefinition("""
                INSERT INTO lightning_macaroon_keys (key_id, root_key, created_at) VALUES (@keyId, @rootKey, @now)
                ON CONFLICT DO NOTHING
                """, new { keyId = NewKeyId(), rootKey = Convert.ToBase64String(_protector.Protect(key)), now = time.GetUtcNow() },
                cancellationToken: cancellationToken));
            CryptographicOperations.ZeroMemory(key);
            row = await ReadActiveAsync(connection, cancellationToken)
                ?? throw new InvalidOperationException("No active macaroon root key after making one: was it retired at the same moment? Try again.");
        }
        _active = Remember(row.Value.KeyId, row.Value.RootKey);
        return _active;
    }

    /// <summary>The key with id <paramref name="keyId"/>, active or not; null if the grid never had it.</summary>
    public async ValueTask<MacaroonRootKey?> FindAsync(string keyId, CancellationToken cancellationToken = default)
    {
        if (_byId.TryGetValue(keyId, out var cached)) return cached;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rootKey = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(
            "SELECT root_key FROM lightning_macaroon_keys WHERE key_id = @keyId", new { keyId }, cancellationToken: cancellationToken));
        return rootKey is null ? null : Remember(keyId, rootKey);
    }

    /// <summary>Whether <paramref name="keyId"/> has the form of the ids made here (so that no other string costs a database read).</summary>
    internal static bool IsKeyId(ReadOnlySpan<char> keyId) => keyId.Length == 16 && !keyId.ContainsAnyExcept(LowercaseHexDigits);

    private static string NewKeyId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    private MacaroonRootKey Remember(string keyId, string protectedKey) =>
        _byId.GetOrAdd(keyId, id => new MacaroonRootKey(id, _protector.Unprotect(Convert.FromBase64String(protectedKey))));

    private static async Task<(string KeyId, string RootKey)?> ReadActiveAsync(NpgsqlConnection connection, CancellationToken cancellationToken) =>
        await connection.QuerySingleOrDefaultAsync<(string KeyId, string RootKey)?>(new CommandDefinition(
            "SELECT key_id, root_key FROM lightning_macaroon_keys WHERE retired_at IS NULL", cancellationToken: cancellationToken));
}
