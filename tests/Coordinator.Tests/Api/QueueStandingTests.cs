using System.Net;
using System.Text.Json;
using Coordinator.Grains.Dispatch;
using Coordinator.Tests.Infrastructure;
using Dapper;

namespace Coordinator.Tests.Api;

/// <summary>
/// Where a pending job stands (issue #16): <c>queue_position</c>, <c>eta_seconds</c> and <c>warnings</c> on
/// <c>GET /jobs/{id}</c>, <c>warnings</c> on <c>POST /jobs</c>, and the queue depth and rate of <c>GET /models</c>. The fake clock
/// makes the rates exact: nothing moves it but the tests.
/// </summary>
public class QueueStandingTests(ClockHostFixture fixture) : IClassFixture<ClockHostFixture>
{
    private const string NoOnlineWorker = "no online worker serves this model";

    private GridHost Host => fixture.Host;

    private static long PositionOf(JsonElement job) => job.GetProperty("queue_position").GetInt64();

    [Fact]
    public async Task Position_CountsTheJobsAheadByPriorityThenAge()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var low = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p", priority = -1 });
        var first = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        var urgent = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p", priority = 5 });
        var second = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });

        Assert.Equal(0, PositionOf(await client.GetJobAsync(urgent)));
        Assert.Equal(1, PositionOf(await client.GetJobAsync(first)));
        Assert.Equal(2, PositionOf(await client.GetJobAsync(second)));
        Assert.Equal(3, PositionOf(await client.GetJobAsync(low)));
    }

    [Fact]
    public async Task Position_IsZeroAtTheHead_AndCountsOnlyJobsTheSameWorkersWouldTakeFirst()
    {
        var client = await Host.NewAccountAsync();
        var family = ApiClient.Unique("f");
        // Another account's jobs of the model count: the workers serve everyone.
        var other = await Host.NewAccountAsync();
        var head = await client.SubmitAsync(new { model = $"{family}:8b", model_match = "exact", prompt = "p" });
        Assert.Equal(0, PositionOf(await client.GetJobAsync(head)));

        // Not ahead of an exact job of 8b: a job of another model, of another model of the family, or a catch-all job.
        await client.SubmitAsync(new { model = ApiClient.Unique() + ":8b", model_match = "exact", prompt = "p", priority = 9 });
        await client.SubmitAsync(new { model = $"{family}:70b", model_match = "family", prompt = "p", priority = 9 });
        await client.SubmitAsync(new { prompt = "p", priority = 9 });
        // Ahead of it: a family job of 8b (a worker of 8b takes it), another account's exact job of 8b.
        var familyOf8b = await other.SubmitAsync(new { model = $"{family}:8b", model_match = "family", prompt = "p", priority = 9 });
        await other.SubmitAsync(new { model = $"{family}:8b", model_match = "exact", prompt = "p", priority = 9 });
        Assert.Equal(2, PositionOf(await client.GetJobAsync(head)));

        // A family job of 8b has the family's jobs ahead too (the 70b family job), each job counted once.
        var familyJob = await client.SubmitAsync(new { model = $"{family}:8b", model_match = "family", prompt = "p", priority = 9 });
        Assert.Equal(3, PositionOf(await client.GetJobAsync(familyJob)));
        Assert.Equal(1, PositionOf(await other.GetJobAsync(familyOf8b)));
    }

    [Fact]
    public async Task Position_AboveTheBound_IsAnEstimateAboveIt()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var ahead = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        const int Backlog = 2_500;
        await InsertBacklogAsync(ahead, Backlog - 1, priority: 0);
        var job = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });

        var position = PositionOf(await client.GetJobAsync(job));
        Assert.InRange(position, QueueCounts.ExactUpTo + 1, Backlog * 11 / 10);
        Assert.InRange(position, Backlog * 9 / 10, Backlog * 11 / 10);
        // A job ahead of the backlog still counts exactly.
        Assert.Equal(0, PositionOf(await client.GetJobAsync(ahead)));

        // An estimate is kept a moment: jobs that jumped ahead show once it has passed.
        await InsertBacklogAsync(ahead, 2_000, priority: 5);
        Assert.Equal(position, PositionOf(await client.GetJobAsync(job)));
        fixture.Clock.Advance(QueueCounts.EstimateCacheDuration + TimeSpan.FromSeconds(1));
        Assert.InRange(PositionOf(await client.GetJobAsync(job)), (Backlog + 2_000) * 9 / 10, (Backlog + 2_000) * 11 / 10);
    }

    [Fact]
    public async Task Position_OfAnotherJobAtThatPriority_ReusesTheLevelsAboveIt_ForAMoment()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var urgent = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p", priority = 1 });
        await InsertBacklogAsync(urgent, 2_500, priority: 1);
        var first = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });
        await InsertBacklogAsync(first, 300, priority: 0);
        var second = await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" });

        Assert.InRange(PositionOf(await client.GetJobAsync(first)), 2_501 * 9 / 10, 2_501 * 11 / 10);
        // Jobs that jump ahead of both: the second job's estimate reuses the first's count of the level above.
        await InsertBacklogAsync(urgent, 1_000, priority: 1);
        Assert.InRange(PositionOf(await client.GetJobAsync(second)), 2_802 * 9 / 10, 2_802 * 11 / 10);
        fixture.Clock.Advance(QueueCounts.EstimateCacheDuration + TimeSpan.FromSeconds(1));
        Assert.InRange(PositionOf(await client.GetJobAsync(second)), 3_802 * 9 / 10, 3_802 * 11 / 10);
    }

    /// <summary>Jobs like <paramref name="like"/>'s, written straight into the table (the count reads the dispatch index, not the dispatcher).</summary>
    private async Task InsertBacklogAsync(long like, int count, int priority)
    {
        await using var connection = await Host.OpenConnectionAsync();
        await connection.ExecuteAsync("""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
            SELECT account_id, 'pending', model, family, 'exact', 'backlog', @priority, 60, now() FROM jobs, generate_series(1, @count) WHERE id = @like
            """, new { like, count, priority });
    }

    [Fact]
    public async Task Eta_IsNullWithoutThroughput_AndFollowsTheRateOnceWorkersTakeJobs()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var ids = new List<long>();
        for (var i = 0; i < 4; i++) ids.Add(await client.SubmitAsync(new { model, model_match = "exact", prompt = "p" }));
        var waiting = await client.GetJobAsync(ids[3]);
        Assert.Equal(JsonValueKind.Null, waiting.GetProperty("eta_seconds").ValueKind);

        var (worker, _) = await client.NewWorkerAsync("w", model);
        Assert.Equal(ids[0], (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());
        Assert.Equal(ids[1], (await worker.PollAsync($"models[]={model}"))!.Value.GetProperty("job_id").GetInt64());

        // Two jobs out within the first bucket of the window (10 s of 5 min): 0.2 a second; one job ahead, so (1 + 1) / 0.2.
        var standing = await client.GetJobAsync(ids[3]);
        Assert.Equal(1, PositionOf(standing));
        Assert.Equal(10, standing.GetProperty("eta_seconds").GetInt64());
        // A minute later the same two jobs are a slower rate: 2 / 60 s.
        fixture.Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(60, (await client.GetJobAsync(ids[3])).GetProperty("eta_seconds").GetInt64());
        // Past the window, nothing recent to go on.
        fixture.Clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(JsonValueKind.Null, (await client.GetJobAsync(ids[3])).GetProperty("eta_seconds").ValueKind);
    }

    [Fact]
    public async Task Warning_AtSubmissionAndLater_WhileNoOnlineWorkerServesTheModel()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var created = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { model, model_match = "exact", prompt = "p" }), HttpStatusCode.Created);
        Assert.Equal([NoOnlineWorker], created.GetProperty("warnings").EnumerateArray().Select(w => w.GetString()));
        // A submission reads nothing more than it did: its place in the queue is GET /jobs/{id}'s.
        Assert.False(created.TryGetProperty("queue_position", out _));
        var id = created.GetProperty("job_id").GetInt64();
        Assert.Equal([NoOnlineWorker], (await client.GetJobAsync(id)).GetProperty("warnings").EnumerateArray().Select(w => w.GetString()));

        // A registration through this silo forgets the cached answer at once.
        await client.NewWorkerAsync("w", model);
        Assert.Empty((await client.GetJobAsync(id)).GetProperty("warnings").EnumerateArray());
        var next = await ApiClient.ExpectAsync(await client.PostAsync("jobs", new { model, model_match = "exact", prompt = "p" }), HttpStatusCode.Created);
        Assert.Empty(next.GetProperty("warnings").EnumerateArray());
    }

    [Fact]
    public async Task OnlyPendingJobs_CarryWhereTheyStand()
    {
        var client = await Host.NewAccountAsync();
        var (worker, id, _) = await client.SubmitAndClaimAsync();
        var claimed = await client.GetJobAsync(id);
        Assert.False(claimed.TryGetProperty("queue_position", out _));
        Assert.False(claimed.TryGetProperty("eta_seconds", out _));
        Assert.False(claimed.TryGetProperty("warnings", out _));

        var pending = await client.SubmitAsync(new { model = ApiClient.Unique(), prompt = "p" });
        var listed = (await ApiClient.ExpectAsync(await client.GetAsync("jobs"), HttpStatusCode.OK)).EnumerateArray()
            .Single(job => job.GetProperty("job_id").GetInt64() == pending);
        Assert.False(listed.TryGetProperty("queue_position", out _));
        Assert.False(listed.TryGetProperty("eta_seconds", out _));
        _ = worker;
    }

    [Fact]
    public async Task Models_ShowQueueDepthAndJobsPerMinute()
    {
        var client = await Host.NewAccountAsync();
        var model = ApiClient.Unique() + ":8b";
        var (worker, _) = await client.NewWorkerAsync("w", model);
        for (var i = 0; i < 4; i++) await client.SubmitAsync(new { model, model_match = i == 0 ? "exact" : "family", prompt = "p" });
        await worker.PollAsync($"models[]={model}");

        var listed = (await ApiClient.ExpectAsync(await client.GetAsync("models"), HttpStatusCode.OK)).EnumerateArray()
            .Single(m => m.GetProperty("name").GetString() == model);
        Assert.Equal(3, listed.GetProperty("queue_depth").GetInt64());
        // One job out within the window's first bucket (10 s): 6 a minute.
        Assert.Equal(6, listed.GetProperty("jobs_per_minute").GetDouble());
    }
}
