using System.Collections.Concurrent;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Accounts;

/// <summary>Who is calling: the key, its account, and the worker the key is bound to (if any).</summary>
public sealed record Caller(long KeyId, long AccountId, long? WorkerId, bool AccountDisabled);

public sealed record CreatedAccount(long AccountId, string ApiKey);

public sealed record CreatedKey(long Id, string Name, string Prefix, string Key, DateTime CreatedAt);

public sealed class KeyRow
{
    public long Id { get; init; }
    public string Name { get; init; } = "";
    public string Prefix { get; init; } = "";
    public long? WorkerId { get; init; }
    public DateTime CreatedAt { get; init; }
    public DateTime? LastUsedAt { get; init; }
}

/// <summary>Accounts and their API keys. Keys are looked up by hash and cached briefly per node.</summary>
public sealed class AccountStore(NpgsqlDataSource dataSource, TimeProvider time, IOptions<AccountOptions> options)
{
    private const int MaxCachedKeys = 100_000;
    private static readonly TimeSpan LastUsedWriteInterval = TimeSpan.FromMinutes(1);

    private readonly ConcurrentDictionary<string, (Caller Caller, DateTimeOffset Expires)> _cache = new(StringComparer.Ordinal);

    public async Task<CreatedAccount> CreateAccountAsync(string name, CancellationToken cancellationToken = default)
    {
        var key = ApiKeys.Generate();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var accountId = await connection.ExecuteScalarAsync<long>(new CommandDefinition("""
            WITH account AS (
                INSERT INTO accounts (name, created_at) VALUES (@name, @now) RETURNING id
            )
            INSERT INTO api_keys (account_id, name, prefix, key_hash, created_at)
            SELECT id, 'default', @prefix, @hash, @now FROM account
            RETURNING account_id
            """, new { name, prefix = ApiKeys.VisiblePrefix(key), hash = ApiKeys.Hash(key), now = time.GetUtcNow() },
            cancellationToken: cancellationToken));
        return new CreatedAccount(accountId, key);
    }

    public async Task<CreatedKey> CreateKeyAsync(long accountId, string name, CancellationToken cancellationToken = default) =>
        (await CreateKeyAsync(accountId, name, workerId: null, cancellationToken))!;

    /// <summary>
    /// Creates a key. With <paramref name="workerId"/> (one of the account's workers) the key is bound to that worker
    /// from the start, e.g. a new key for a worker whose old key is about to be revoked; null when there is no such worker.
    /// </summary>
    public async Task<CreatedKey?> CreateKeyAsync(long accountId, string name, long? workerId, CancellationToken cancellationToken = default)
    {
        var key = ApiKeys.Generate();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<KeyRow>(new CommandDefinition("""
            INSERT INTO api_keys (account_id, name, prefix, key_hash, worker_id, created_at)
            SELECT @accountId, @name, @prefix, @hash, w.id, @now
            FROM (SELECT NULL::bigint AS id WHERE @workerId::bigint IS NULL
                  UNION ALL
                  SELECT id FROM workers WHERE id = @workerId AND account_id = @accountId) w
            RETURNING id, name, prefix, worker_id, created_at, last_used_at
            """, new { accountId, name, workerId, prefix = ApiKeys.VisiblePrefix(key), hash = ApiKeys.Hash(key), now = time.GetUtcNow() },
            cancellationToken: cancellationToken));
        return row is null ? null : new CreatedKey(row.Id, row.Name, row.Prefix, key, row.CreatedAt);
    }

    public async Task<IReadOnlyList<KeyRow>> ListKeysAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<KeyRow>(new CommandDefinition("""
            SELECT id, name, prefix, worker_id, created_at, last_used_at
            FROM api_keys
            WHERE account_id = @accountId AND revoked_at IS NULL
            ORDER BY id
            """, new { accountId }, cancellationToken: cancellationToken));
        return rows.AsList();
    }

    /// <summary>Revokes one of the account's keys. False when the account has no such active key.</summary>
    public async Task<bool> RevokeKeyAsync(long accountId, long keyId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var hash = await connection.QuerySingleOrDefaultAsync<byte[]>(new CommandDefinition("""
            UPDATE api_keys SET revoked_at = @now
            WHERE id = @keyId AND account_id = @accountId AND revoked_at IS NULL
            RETURNING key_hash
            """, new { keyId, accountId, now = time.GetUtcNow() }, cancellationToken: cancellationToken));
        if (hash is null) return false;
        // This node forgets the key at once; the others within KeyCacheDuration.
        _cache.TryRemove(Convert.ToHexString(hash), out _);
        return true;
    }

    /// <summary>
    /// Resolves a bearer key. Answers from the node's cache for up to <see cref="AccountOptions.KeyCacheDuration"/>;
    /// <paramref name="refresh"/> skips the cache (a key bound to a worker on another node a moment ago).
    /// </summary>
    public async Task<Caller?> AuthenticateAsync(string key, bool refresh = false, CancellationToken cancellationToken = default)
    {
        if (!ApiKeys.LooksLikeKey(key)) return null;
        var hash = ApiKeys.Hash(key);
        var cacheKey = Convert.ToHexString(hash);
        var now = time.GetUtcNow();
        if (!refresh && _cache.TryGetValue(cacheKey, out var cached) && cached.Expires > now) return cached.Caller;

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<(long KeyId, long AccountId, long? WorkerId, bool Disabled, DateTime? LastUsedAt)>(
            new CommandDefinition("""
                SELECT k.id, k.account_id, k.worker_id, a.disabled, k.last_used_at
                FROM api_keys k JOIN accounts a ON a.id = k.account_id
                WHERE k.key_hash = @hash AND k.revoked_at IS NULL
                """, new { hash }, cancellationToken: cancellationToken));
        if (row.KeyId == 0)
        {
            _cache.TryRemove(cacheKey, out _);
            return null;
        }
        if (row.LastUsedAt is null || now.UtcDateTime - row.LastUsedAt.Value > LastUsedWriteInterval)
        {
            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE api_keys SET last_used_at = @now WHERE id = @id", new { id = row.KeyId, now }, cancellationToken: cancellationToken));
        }

        var caller = new Caller(row.KeyId, row.AccountId, row.WorkerId, row.Disabled);
        if (_cache.Count > MaxCachedKeys) _cache.Clear();
        _cache[cacheKey] = (caller, now + options.Value.KeyCacheDuration);
        return caller;
    }

    /// <summary>
    /// Drops every key of an account from this node's cache, after an operator disabled or enabled it here; the other
    /// nodes see the change within <see cref="AccountOptions.KeyCacheDuration"/>.
    /// </summary>
    public void ForgetAccount(long accountId)
    {
        foreach (var (hash, entry) in _cache)
        {
            if (entry.Caller.AccountId == accountId) _cache.TryRemove(hash, out _);
        }
    }

    /// <summary>Drops a key from this node's cache, after it was bound to a worker here.</summary>
    public void Forget(string key) => _cache.TryRemove(Convert.ToHexString(ApiKeys.Hash(key)), out _);
}
