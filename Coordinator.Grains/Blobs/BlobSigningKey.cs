using System.Security.Cryptography;
using Dapper;
using Npgsql;

namespace Coordinator.Grains.Blobs;

/// <summary>
/// The HMAC key of the local-disk store's URLs. It lives in PostgreSQL (<c>blob_signing_key</c>) so that a URL
/// signed by one node is accepted by all; the first node that needs it creates it. Cached for the node's lifetime.
/// </summary>
public sealed class BlobSigningKey(NpgsqlDataSource dataSource)
{
    private byte[]? _key;

    public async ValueTask<byte[]> GetAsync(CancellationToken cancellationToken = default)
    {
        if (_key is { } cached) return cached;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Two nodes racing both insert; one wins, and both read the winner's key.
        _key = await connection.QuerySingleAsync<byte[]>(new CommandDefinition("""
            INSERT INTO blob_signing_key (id, key) VALUES (1, @candidate) ON CONFLICT (id) DO NOTHING;
            SELECT key FROM blob_signing_key WHERE id = 1;
            """, new { candidate = RandomNumberGenerator.GetBytes(32) }, cancellationToken: cancellationToken));
        return _key;
    }
}
