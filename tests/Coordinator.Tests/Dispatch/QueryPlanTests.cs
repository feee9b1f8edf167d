using Coordinator.Tests.Infrastructure;
using Dapper;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// The planner settings of the grid's pooled sessions. Hot statements are planned once per connection (generic plans),
/// so a plan made while a table is nearly empty is the plan long after it has grown: it must read by key, not whole.
/// </summary>
public class QueryPlanTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    /// <summary>A session of the grid's own data source: its planner settings are what these tests check.</summary>
    private Task<NpgsqlConnection> OpenGridSessionAsync() => fixture.Host.Get<NpgsqlDataSource>().OpenConnectionAsync().AsTask();

    [Fact]
    public async Task AKeyedUpdatePlannedWhileJobsIsNearlyEmpty_ReadsThePrimaryKey_NotTheWholeTable()
    {
        // This class has a database of its own: jobs holds a few rows, where reading the whole table is cheapest.
        var client = await fixture.Host.NewAccountAsync();
        for (var i = 0; i < 3; i++) await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "few" });
        await using var connection = await OpenGridSessionAsync();
        await connection.ExecuteAsync("ANALYZE jobs");
        Assert.True(await connection.QuerySingleAsync<long>("SELECT count(*) FROM jobs") < 100);

        // The shape of start and result: a batch of (job, worker) pairs joined to jobs.
        await connection.ExecuteAsync("""
            PREPARE keyed_update(bigint[], bigint[]) AS
            UPDATE jobs j SET started_at = now()
            FROM unnest($1, $2) AS u(job_id, worker_id)
            WHERE j.id = u.job_id AND j.worker_id = u.worker_id
            """);
        try
        {
            var plan = string.Join('\n', await connection.QueryAsync<string>("EXPLAIN EXECUTE keyed_update('{1}', '{1}')"));

            Assert.Contains("jobs_pkey", plan);
            Assert.DoesNotContain("Seq Scan on jobs", plan);
        }
        finally
        {
            await connection.ExecuteAsync("DEALLOCATE keyed_update");
        }
    }

    [Fact]
    public async Task AStatementLeftWithAWholeTableRead_IsNotCompiledWithJit()
    {
        // No index serves this filter, so the read stays, priced as ruled out: far above the server's JIT threshold.
        await using var connection = await OpenGridSessionAsync();
        var plan = string.Join('\n', await connection.QueryAsync<string>(
            "EXPLAIN UPDATE accounts SET quota_exhausted_on = NULL WHERE quota_exhausted_on < current_date - 1"));

        Assert.Contains("Seq Scan on accounts", plan);
        Assert.DoesNotContain("JIT", plan);
    }

    [Fact]
    public async Task TheTimeoutSweep_ReadsTheInFlightIndex_NotTheWholeTable()
    {
        // The jobs out with a worker are few; the sweep must find them through the index that holds only them.
        await using var connection = await OpenGridSessionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var plan = string.Join('\n', await connection.QueryAsync<string>(
            "EXPLAIN " + Coordinator.Grains.Duties.GridDuties.TimeOutSql, new { now = DateTimeOffset.UtcNow }, transaction));

        Assert.Matches(@"Index (Only )?Scan using jobs_in_flight on jobs", plan);
        Assert.DoesNotContain("Seq Scan on jobs", plan);
    }

    [Fact]
    public async Task TheClaimLeaseSweep_ReadsTheInFlightIndex_NotTheWholeTable()
    {
        // The claims are among the few jobs out with a worker: found through the index that holds only those.
        await using var connection = await OpenGridSessionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var plan = string.Join('\n', await connection.QueryAsync<string>(
            "EXPLAIN " + Coordinator.Grains.Duties.GridDuties.ExpireClaimsSql, new { claimedBefore = DateTimeOffset.UtcNow }, transaction));

        Assert.Matches(@"Index (Only )?Scan using jobs_in_flight on jobs", plan);
        Assert.DoesNotContain("Seq Scan on jobs", plan);
    }
}
