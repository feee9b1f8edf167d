using System.Collections.Concurrent;
using Coordinator.Grains.Jobs;
using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Workers;

/// <summary>A model a worker advertises.</summary>
public sealed record WorkerModel(string Name, bool ServesFamily);

public sealed record WorkerRegistration(string? Name, string? AgentVersion, string? Platform, IReadOnlyList<WorkerModel> Models, bool CatchAll);

/// <summary>A row of GET /models.</summary>
public sealed class GridModelRow
{
    public string Name { get; init; } = "";
    public string Family { get; init; } = "";
    public string DisplayName { get; init; } = "";
    public string? Description { get; init; }
    public int WorkerCount { get; init; }
    public int FamilyWorkerCount { get; init; }
    /// <summary>When a worker first advertised the model.</summary>
    public DateTime CreatedAt { get; init; }
}

/// <summary>Whether a job could be served now (<see cref="WorkerStore.AvailabilityAsync"/>).</summary>
public enum ModelAvailability
{
    /// <summary>No worker ever advertised the model (for a family job, any model of the family); for a catch-all job, never used.</summary>
    Unknown,
    /// <summary>Known to the grid, but no online worker would take the job.</summary>
    Offline,
    /// <summary>An online worker would take the job.</summary>
    Online,
}

/// <summary>Workers, their model lists, liveness, and the model registry.</summary>
public sealed class WorkerStore(NpgsqlDataSource dataSource, TimeProvider time, IOptions<DispatchOptions> options)
{
    /// <summary>How long a silo keeps an answer of <see cref="AvailabilityAsync"/>.</summary>
    public static readonly TimeSpan AvailabilityCacheDuration = TimeSpan.FromSeconds(5);

    private const int MaxCachedAnswers = 10_000;

    private readonly ConcurrentDictionary<(string ModelMatch, string? Model), (ModelAvailability Answer, DateTimeOffset Expires)> _availability = new();

    /// <summary>
    /// Registers the worker behind a key. A named worker that exists under the account is updated in place;
    /// otherwise the key's own worker is updated, or a new worker is created. The key is bound to it.
    /// </summary>
    public async Task<long> RegisterAsync(long accountId, long keyId, WorkerRegistration registration, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var key = await connection.QuerySingleAsync<(long? WorkerId, string KeyName)>(new CommandDefinition(
            "SELECT worker_id, name FROM api_keys WHERE id = @keyId FOR UPDATE", new { keyId }, transaction, cancellationToken: cancellationToken));

        long workerId;
        if (registration.Name is null && key.WorkerId is { } boundWorker)
        {
            workerId = await connection.ExecuteScalarAsync<long>(new CommandDefinition("""
                UPDATE workers SET agent_version = COALESCE(@agentVersion, agent_version), platform = COALESCE(@platform, platform),
                    catch_all = @catchAll, last_seen_at = @now, online = true
                WHERE id = @boundWorker
                RETURNING id
                """, new { boundWorker, registration.AgentVersion, registration.Platform, registration.CatchAll, now }, transaction, cancellationToken: cancellationToken));
        }
        else
        {
            var name = registration.Name ?? key.KeyName;
            workerId = await connection.ExecuteScalarAsync<long>(new CommandDefinition("""
                INSERT INTO workers (account_id, name, agent_version, platform, catch_all, last_seen_at, online, created_at)
                VALUES (@accountId, @name, @agentVersion, @platform, @catchAll, @now, true, @now)
                ON CONFLICT (account_id, name) DO UPDATE SET
                    agent_version = COALESCE(EXCLUDED.agent_version, workers.agent_version),
                    platform = COALESCE(EXCLUDED.platform, workers.platform),
                    catch_all = EXCLUDED.catch_all, last_seen_at = EXCLUDED.last_seen_at, online = true
                RETURNING id
                """, new { accountId, name, registration.AgentVersion, registration.Platform, registration.CatchAll, now }, transaction, cancellationToken: cancellationToken));
            await connection.ExecuteAsync(new CommandDefinition(
                "UPDATE api_keys SET worker_id = @workerId WHERE id = @keyId", new { workerId, keyId }, transaction, cancellationToken: cancellationToken));
        }

        await ReplaceModelsAsync(connection, transaction, workerId, registration.Models, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        _availability.Clear();
        return workerId;
    }

    /// <summary>
    /// Registers an AITBC miner: the worker that has this <paramref name="minerId"/>, or the account's worker of that name,
    /// or a new one, takes the miner id and these models, and the key is bound to it. Null when another account's worker
    /// has the miner id (miner ids are unique in the grid: a receipt's provider names one worker).
    /// </summary>
    public async Task<long?> RegisterMinerAsync(long accountId, long keyId, string minerId, IReadOnlyList<WorkerModel> models, string? platform,
        CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition("SELECT 1 FROM api_keys WHERE id = @keyId FOR UPDATE", new { keyId }, transaction, cancellationToken: cancellationToken));
        var owner = await connection.QuerySingleOrDefaultAsync<(long Id, long AccountId)?>(new CommandDefinition(
            "SELECT id, account_id FROM workers WHERE miner_id = @minerId FOR UPDATE", new { minerId }, transaction, cancellationToken: cancellationToken));
        if (owner is { } taken && taken.AccountId != accountId) return null;

        long workerId;
        try
        {
            workerId = owner is { } mine
                ? await connection.ExecuteScalarAsync<long>(new CommandDefinition("""
                    UPDATE workers SET platform = COALESCE(@platform, platform), last_seen_at = @now, online = true WHERE id = @id RETURNING id
                    """, new { mine.Id, platform, now }, transaction, cancellationToken: cancellationToken))
                : await connection.ExecuteScalarAsync<long>(new CommandDefinition("""
                    INSERT INTO workers (account_id, name, platform, miner_id, last_seen_at, online, created_at)
                    VALUES (@accountId, @minerId, @platform, @minerId, @now, true, @now)
                    ON CONFLICT (account_id, name) DO UPDATE SET
                        platform = COALESCE(EXCLUDED.platform, workers.platform), miner_id = EXCLUDED.miner_id,
                        last_seen_at = EXCLUDED.last_seen_at, online = true
                    RETURNING id
                    """, new { accountId, minerId, platform, now }, transaction, cancellationToken: cancellationToken));
        }
        catch (PostgresException exception) when (exception.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            return null; // another account registered the miner id in the same moment
        }
        await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE api_keys SET worker_id = @workerId WHERE id = @keyId", new { workerId, keyId }, transaction, cancellationToken: cancellationToken));
        await ReplaceModelsAsync(connection, transaction, workerId, models, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        _availability.Clear();
        return workerId;
    }

    /// <summary>Replaces the worker's model list and adds any new model to the registry. Answers the number of models.</summary>
    public async Task<int> UpdateModelsAsync(long workerId, IReadOnlyList<WorkerModel> models, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await ReplaceModelsAsync(connection, transaction, workerId, models, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        _availability.Clear();
        return models.Count;
    }

    private async Task ReplaceModelsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, long workerId, IReadOnlyList<WorkerModel> models, CancellationToken cancellationToken)
    {
        var distinct = models.GroupBy(m => m.Name, StringComparer.Ordinal).Select(g => g.Last()).ToList();
        var names = distinct.Select(m => m.Name).ToArray();
        var families = distinct.Select(m => ModelNames.FamilyOf(m.Name)).ToArray();
        await connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO models (name, family, display_name, created_at)
            SELECT name, family, display_name, @now FROM unnest(@names::text[], @families::text[], @displayNames::text[]) AS m(name, family, display_name)
            ON CONFLICT (name) DO NOTHING
            """, new { names, families, displayNames = names.Select(ModelNames.DisplayNameOf).ToArray(), now = time.GetUtcNow() },
            transaction, cancellationToken: cancellationToken));
        await connection.ExecuteAsync(new CommandDefinition("""
            DELETE FROM worker_models WHERE worker_id = @workerId;
            INSERT INTO worker_models (worker_id, model, family, serves_family)
            SELECT @workerId, name, family, serves_family FROM unnest(@names::text[], @families::text[], @servesFamily::boolean[]) AS m(name, family, serves_family);
            """, new { workerId, names, families, servesFamily = distinct.Select(m => m.ServesFamily).ToArray() },
            transaction, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Marks the worker as seen now (and online). Its grain decides how often (see <see cref="WorkerGrain"/>). Concurrent
    /// calls share one statement: thousands of workers polling at once after a restart would otherwise take a connection
    /// each.
    /// </summary>
    public Task HeartbeatAsync(long workerId) => Heartbeats.RunAsync(workerId);

    private Batcher<long, bool>? _heartbeats;

    private Batcher<long, bool> Heartbeats =>
        LazyInitializer.EnsureInitialized(ref _heartbeats, () => new(HeartbeatBatchAsync, JobStore.MaxBatch, JobStore.BatchesInFlight));

    private async Task<IReadOnlyList<bool>> HeartbeatBatchAsync(IReadOnlyList<long> workerIds)
    {
        var ids = workerIds.Distinct().ToArray();
        var now = time.GetUtcNow();
        // A batch locks several worker rows; the offline sweep takes them in another order and may deadlock with it.
        await JobStore.RetryOnDeadlockAsync(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return await connection.ExecuteAsync("UPDATE workers SET last_seen_at = @now, online = true WHERE id = ANY(@ids)", new { ids, now });
        });
        return workerIds.Select(_ => true).ToList();
    }

    /// <summary>What the worker registered: used when a poll declares no capabilities of its own.</summary>
    public async Task<Capabilities> RegisteredCapabilitiesAsync(long workerId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.QueryAsync<(string Model, string Family, bool ServesFamily, bool CatchAll)>(new CommandDefinition("""
            SELECT wm.model, wm.family, wm.serves_family, w.catch_all
            FROM workers w LEFT JOIN worker_models wm ON wm.worker_id = w.id
            WHERE w.id = @workerId
            """, new { workerId }, cancellationToken: cancellationToken))).AsList();
        var models = rows.Where(r => r.Model is not null).Select(r => r.Model).ToList();
        var families = rows.Where(r => r.Model is not null && r.ServesFamily).Select(r => r.Family).Distinct().ToList();
        return new Capabilities(models, families, rows.Count > 0 && rows[0].CatchAll);
    }

    /// <summary>Models with at least one online worker, most served first.</summary>
    public async Task<IReadOnlyList<GridModelRow>> ListModelsAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<GridModelRow>(new CommandDefinition("""
            WITH live AS (
                SELECT wm.worker_id, wm.model, wm.family
                FROM worker_models wm JOIN workers w ON w.id = wm.worker_id
                WHERE w.online AND w.last_seen_at >= @cutoff
            ), per_model AS (
                SELECT model, count(DISTINCT worker_id)::int AS worker_count FROM live GROUP BY model
            ), per_family AS (
                SELECT family, count(DISTINCT worker_id)::int AS family_worker_count FROM live GROUP BY family
            )
            SELECT m.name, m.family, m.display_name, m.description, pm.worker_count, pf.family_worker_count, m.created_at
            FROM per_model pm
            JOIN models m ON m.name = pm.model
            JOIN per_family pf ON pf.family = m.family
            ORDER BY pm.worker_count DESC, m.name
            """, new { cutoff = time.GetUtcNow() - options.Value.OfflineAfter }, cancellationToken: cancellationToken));
        return rows.AsList();
    }

    /// <summary>
    /// Whether an online worker registered what a job of this match and model needs, by the dispatch rule: the model
    /// itself (<c>exact</c>); the model, or a model of its family with <c>serves_family</c> (<c>family</c>);
    /// <c>catch_all</c> (<c>any</c>). When none is online, whether the grid ever knew the model. A poll may declare other
    /// models than its worker registered; the registration is what the table knows.
    /// </summary>
    /// <remarks>
    /// Every submission asks, so a silo keeps an answer for <see cref="AvailabilityCacheDuration"/>: a worker that comes
    /// online or goes offline through another silo is seen that much later (going offline takes the offline window of
    /// silence anyway). A registration or a change of models through this silo forgets every answer at once.
    /// </remarks>
    public async Task<ModelAvailability> AvailabilityAsync(string modelMatch, string? model, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var key = (modelMatch, model);
        if (_availability.TryGetValue(key, out var cached) && cached.Expires > now) return cached.Answer;

        // One statement per match, not one with flags: a generic plan could not drop the branches it does not need.
        var sql = modelMatch switch
        {
            ModelMatch.Any => """
                SELECT CASE WHEN EXISTS (SELECT 1 FROM workers WHERE catch_all AND online AND last_seen_at >= @cutoff) THEN 2
                            WHEN EXISTS (SELECT 1 FROM workers WHERE catch_all) THEN 1 ELSE 0 END
                """,
            ModelMatch.Family => """
                SELECT CASE WHEN EXISTS (SELECT 1 FROM worker_models wm JOIN workers w ON w.id = wm.worker_id
                                         WHERE wm.model = @model AND w.online AND w.last_seen_at >= @cutoff)
                              OR EXISTS (SELECT 1 FROM worker_models wm JOIN workers w ON w.id = wm.worker_id
                                         WHERE wm.family = @family AND wm.serves_family AND w.online AND w.last_seen_at >= @cutoff) THEN 2
                            WHEN EXISTS (SELECT 1 FROM models WHERE name = @model OR family = @family) THEN 1 ELSE 0 END
                """,
            _ => """
                SELECT CASE WHEN EXISTS (SELECT 1 FROM worker_models wm JOIN workers w ON w.id = wm.worker_id
                                         WHERE wm.model = @model AND w.online AND w.last_seen_at >= @cutoff) THEN 2
                            WHEN EXISTS (SELECT 1 FROM models WHERE name = @model) THEN 1 ELSE 0 END
                """,
        };
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var answer = (ModelAvailability)await connection.ExecuteScalarAsync<int>(new CommandDefinition(sql,
            new { model, family = model is null ? null : ModelNames.FamilyOf(model), cutoff = now - options.Value.OfflineAfter },
            cancellationToken: cancellationToken));
        if (_availability.Count > MaxCachedAnswers) _availability.Clear();
        _availability[key] = (answer, now + AvailabilityCacheDuration);
        return answer;
    }
}
