using Coordinator.Grains.Duties;
using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Grains.Blobs;

/// <summary>
/// Removes blobs left unconfirmed for <see cref="BlobOptions.UnconfirmedLifetime"/>, objects first, then rows.
/// Every node runs it; rows are taken in <c>SKIP LOCKED</c> batches, so nodes share the work without doing any twice,
/// and a store that fails leaves its batch for the next pass.
/// </summary>
public sealed partial class BlobSweeper(NpgsqlDataSource dataSource, IBlobStore store, TimeProvider time, IOptions<BlobOptions> options, ILogger<BlobSweeper> logger)
{
    public const int BatchSize = 100;

    /// <summary>One pass; answers how many blobs it removed.</summary>
    public async Task<int> RunOnceAsync(CancellationToken cancellationToken = default)
    {
        var cutoff = time.GetUtcNow() - options.Value.UnconfirmedLifetime;
        var removed = 0;
        while (true)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var batch = (await connection.QueryAsync<(long Id, string ObjectKey)>(new CommandDefinition("""
                SELECT id, object_key FROM blobs
                WHERE status = 'pending' AND created_at < @cutoff
                ORDER BY created_at
                LIMIT @batchSize
                FOR UPDATE SKIP LOCKED
                """, new { cutoff, batchSize = BatchSize }, transaction, cancellationToken: cancellationToken))).AsList();
            if (batch.Count == 0) break;
            // The rows stay locked while their objects go, so a late confirm waits and then finds no blob.
            foreach (var blob in batch) await store.DeleteAsync(blob.ObjectKey, cancellationToken);
            removed += await connection.ExecuteAsync(new CommandDefinition(
                "DELETE FROM blobs WHERE id = ANY(@ids) AND status = 'pending'",
                new { ids = batch.Select(b => b.Id).ToArray() }, transaction, cancellationToken: cancellationToken));
            await transaction.CommitAsync(cancellationToken);
            if (batch.Count < BatchSize) break;
        }
        if (removed > 0) LogRemoved(logger, removed);
        return removed;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Removed {Count} blobs that were never confirmed")]
    private static partial void LogRemoved(ILogger logger, int count);
}

/// <summary>Runs <see cref="BlobSweeper"/> every <see cref="BlobOptions.SweepInterval"/> on every node (unless <c>Dispatch:RunDuties</c> is false).</summary>
public sealed class BlobSweepService(BlobSweeper sweeper, TimeProvider time, IOptions<BlobOptions> options, IOptions<DispatchOptions> dispatch, ILogger<BlobSweepService> logger)
    : PeriodicService(time, logger)
{
    protected override bool Enabled => dispatch.Value.RunDuties;

    protected override TimeSpan Interval => options.Value.SweepInterval;

    protected override string Name => "Blob sweep";

    protected override Task RunPassAsync(CancellationToken stoppingToken) => sweeper.RunOnceAsync(stoppingToken);
}
