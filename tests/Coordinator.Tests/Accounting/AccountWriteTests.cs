using Coordinator.Grains;
using Coordinator.Grains.Accounting;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Coordinator.Tests.Accounting;

/// <summary>
/// An account grain's counts reach <c>quota_usage</c> once: a write its timer started that is still waiting on the
/// database when the grain deactivates (its silo stops) is not written a second time by the deactivation.
/// </summary>
public class AccountWriteTests
{
    [Fact]
    public async Task AWriteStillInFlightWhenTheSiloStops_IsAddedOnce()
    {
        var clock = new ManualTimeProvider();
        GridHost? host = null;
        Task? stopping = null;
        string connectionString;
        long accountId;
        try
        {
#pragma warning disable CA2000 // Disposed by the stop the test starts, or in the finally block.
            host = await GridHost.StartAsync(time: clock);
#pragma warning restore CA2000
            connectionString = host.ConnectionString;
            await using var blocker = new NpgsqlConnection(connectionString);
            (accountId, _) = await host.NewAccountOnPlanWithIdAsync(null, null);
            await host.Grains.GetGrain<IAccountGrain>(accountId).CountAsync(0, 5);

            // An uncommitted row of the account's day: the grain's upsert waits on it.
            await blocker.OpenAsync();
            await using var hold = await blocker.BeginTransactionAsync();
            await using (var insert = new NpgsqlCommand(
                "INSERT INTO quota_usage (account_id, day, shard, requests, tokens) VALUES (@account, @day, 0, 0, 0)", blocker, hold))
            {
                insert.Parameters.AddWithValue("account", accountId);
                insert.Parameters.AddWithValue("day", host.Get<Quotas>().Today);
                await insert.ExecuteNonQueryAsync();
            }

            // The timer's write starts and waits on the row.
            clock.Advance(host.Get<IOptions<AccountingOptions>>().Value.CounterWriteInterval);
            await Eventually.TrueAsync(async () => await WaitingOnLocksAsync(connectionString) >= 1, "the timer's write waits on the row");

            // The silo stops meanwhile: the grain deactivates and writes what it still holds unwritten. If that write ran
            // beside the timer's, it would wait on the row too: it gets the chance to.
            stopping = host.DisposeAsync().AsTask();
            host = null;
            try
            {
                await Eventually.TrueAsync(async () => await WaitingOnLocksAsync(connectionString) >= 2, "a second write waits on the row", timeoutMs: 3_000);
            }
            catch (Xunit.Sdk.TrueException)
            {
                // Only one write waits.
            }
            await hold.RollbackAsync();
            await stopping;
        }
        finally
        {
            if (host is not null) await host.DisposeAsync();
        }

        Assert.Equal(5, await TokensAsync(connectionString, accountId));
    }

    /// <summary>Statements on quota_usage waiting on a lock.</summary>
    private static Task<long> WaitingOnLocksAsync(string connectionString) =>
        Cluster.GracefulStopTests.ScalarAsync(connectionString,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%quota_usage%'");

    private static Task<long> TokensAsync(string connectionString, long accountId) =>
        Cluster.GracefulStopTests.ScalarAsync(connectionString, $"SELECT coalesce(sum(tokens), 0)::bigint FROM quota_usage WHERE account_id = {accountId}");
}
