using System.Net;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Npgsql;

namespace Coordinator.Tests.Dispatch;

/// <summary>
/// Invariants of ARCHITECTURE.md that no other test states on its own: a 201 means the job is committed (1), and a
/// parked poll holds no database connection (6).
/// </summary>
public class InvariantTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private GridHost Host => fixture.Host;

    [Fact]
    public async Task A201_MeansTheJobIsCommitted_WhetherQueuedOrHandedOff()
    {
        var client = await Host.NewAccountOnPlanAsync(null, null);
        var (queued, handed) = (ApiClient.Unique(), ApiClient.Unique());
        var (worker, workerId) = await client.NewWorkerAsync("w", handed);
        await using var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();

        for (var i = 0; i < 20; i++)
        {
            // Alternately queued (no worker serves the model) and handed off (a poll parked on the dispatcher).
            var poll = i % 2 == 1 ? worker.PollAsync($"models[]={handed}") : null;
            if (poll is not null) await Host.ParkedAsync(handed);
            var model = poll is null ? queued : handed;
            var created = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { model, prompt = $"p{i}" }), HttpStatusCode.Created);
            var id = created.GetProperty("job_id").GetInt64();

            // Read at once from another session, which sees only what was committed.
            var row = await connection.QuerySingleOrDefaultAsync<(string Status, long? WorkerId)>(
                "SELECT status, worker_id FROM jobs WHERE id = @id", new { id });
            Assert.Equal(created.GetProperty("status").GetString(), row.Status);
            Assert.Equal(poll is null ? "pending" : "claimed", row.Status);
            if (poll is not null)
            {
                Assert.Equal(workerId, row.WorkerId);
                Assert.Equal(id, (await poll.WaitAsync(TimeSpan.FromSeconds(10)))!.Value.GetProperty("job_id").GetInt64());
            }
        }
    }

    [Fact]
    public async Task ParkedPolls_HoldNoDatabaseConnection()
    {
        const int polls = 50;
        await using var host = await GridHost.StartAsync();
        var client = await host.NewAccountAsync();
        var model = ApiClient.Unique();
        var workers = await Task.WhenAll(Enumerable.Range(0, polls).Select(async i => (await client.NewWorkerAsync($"w{i}", model)).Worker));
        using var stop = new CancellationTokenSource();
        var waiting = workers.Select(worker => worker.PollAsync($"models[]={model}", stop.Token)).ToList();
        await host.ParkedAsync(model, polls);

        // Every connection the silo holds is idle in its pool: none is in a query or a transaction for a waiting poll. (A
        // background statement of the silo, such as the webhook sender's pass, may be seen for a moment; a connection held
        // by a poll would be seen in every sample.)
        await using var connection = new NpgsqlConnection(host.ConnectionString);
        await connection.OpenAsync();
        var busy = new List<string>();
        await Eventually.TrueAsync(async () =>
        {
            busy = (await connection.QueryAsync<string>("""
                SELECT state || ': ' || left(query, 80) FROM pg_stat_activity
                WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'
                """)).AsList();
            return busy.Count == 0;
        }, "no connection is busy while the polls wait");
        Assert.Equal(polls, host.PollsWaiting);
        Assert.Equal(polls, (await host.DispatcherAsync(model)).ParkedPolls);

        await stop.CancelAsync();
        foreach (var poll in waiting) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => poll);
    }
}
