using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Npgsql;
using static Coordinator.Tests.Cluster.SiloCrashTests;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// A silo process stopped with SIGTERM while two silos share a database: it stops taking polls and reports not ready at
/// once, finishes the requests in flight, hands its grains over, leaves the cluster and exits 0.
/// </summary>
[Collection(Alone.Name)]
public sealed class GracefulStopTests
{
    /// <summary>Orleans' <c>SiloStatus.Dead</c>, as the membership table stores it.</summary>
    private const int Dead = 6;

    private static readonly Dictionary<string, string> Settings = new()
    {
        // A parked poll would hold the stop for its whole window if the silo did not answer it at once.
        ["Dispatch__LongPollTimeout"] = "00:00:30",
        // Long enough to look at the stopping silo while it still accepts connections.
        ["Shutdown__DrainDelay"] = "00:00:04",
        // Orleans' production failure detection (a silo that vanished is declared dead after 10 s or more), so that
        // the other silo routing to the grains of the stopped one at once shows that it left the cluster itself.
        ["Cluster__ProbeTimeout"] = "00:00:05",
        ["Cluster__MissedProbesLimit"] = "3",
        ["Cluster__TableRefreshTimeout"] = "00:01:00",
    };

    [Fact]
    public async Task SigTerm_AnswersPollsAtOnce_ReportsNotReady_FinishesInFlightRequests_AndLeavesTheCluster()
    {
        var database = await TestDatabase.CreateAsync();
        await using var stopping = await SiloProcess.StartAsync(database, Settings);
        await using var staying = await SiloProcess.StartAsync(database, Settings);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var key = await NewUnlimitedAccountAsync(http, staying, database);
        var model = ApiClient.Unique();
        var uploader = await NewWorkerKeyAsync(http, stopping, key, model);
        var holder = await NewWorkerKeyAsync(http, stopping, key, model);
        var parked = await NewWorkerKeyAsync(http, stopping, key, model);

        // Two jobs, claimed and started through the silo that will stop: their worker and job grains live there.
        var uploaded = await SubmitAsync(http, staying, key, model);
        var uploadedJob = await ClaimAndStartAsync(http, stopping, uploader, model);
        var held = await SubmitAsync(http, staying, key, model);
        var heldJob = await ClaimAndStartAsync(http, stopping, holder, model);
        Assert.Equal(uploaded, uploadedJob);
        Assert.Equal(held, heldJob);

        // A poll parked on the silo, and a result upload in flight on it (its body half sent).
        var parkedPoll = PollAsync(http, stopping, parked, model);
        while (await ParkedPollsAsync(stopping) < 1) await Task.Delay(20);
        using var uploadHttp = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var body = new HalfThenRestContent(JsonSerializer.SerializeToUtf8Bytes(new { output = "done", output_tokens = 3, duration_ms = 5 }));
        using var uploadRequest = Request(stopping, uploader, HttpMethod.Post, $"worker/jobs/{uploaded}/result", null);
        uploadRequest.Content = body;
        var upload = uploadHttp.SendAsync(uploadRequest);
        await body.FirstHalfSent;

        stopping.Terminate();

        // The parked poll answers 204 at once, long before its window, while the silo still runs.
        using (var answer = await parkedPoll)
        {
            Assert.Equal(HttpStatusCode.NoContent, answer.StatusCode);
            Assert.False(stopping.HasExited, "the parked poll was answered only when its silo exited");
        }

        // While it drains: not ready, still alive, and a new poll is answered 204 at once instead of waiting for a job.
        var ready = await ReadinessAsync(stopping);
        while (ready.Status == HttpStatusCode.OK) ready = await ReadinessAsync(stopping);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.Status);
        Assert.Equal("stopping", ready.Body!.Value.GetProperty("status").GetString());
        using var fresh = FreshClient();
        using (var liveness = await fresh.GetAsync(new Uri(stopping.BaseAddress, "/api/healthz")))
        {
            Assert.Equal(HttpStatusCode.OK, liveness.StatusCode);
        }
        _ = await SubmitAsync(http, staying, key, model);
        using (var late = await SendAsync(fresh, stopping, parked, HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.NoContent, late.StatusCode);
        }
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await ReadinessAsync(stopping)).Status);

        // Then it stops listening, but waits for the upload in flight: it completes there.
        while ((await ReadinessAsync(stopping)).Status is not null) await Task.Delay(20);
        Assert.False(stopping.HasExited, "the silo exited with a request in flight");
        body.SendRest();
        using (var uploadAnswer = await upload)
        {
            var answer = await uploadAnswer.Content.ReadAsStringAsync();
            Assert.True(uploadAnswer.StatusCode == HttpStatusCode.OK, $"the upload in flight got {(int)uploadAnswer.StatusCode} {answer}");
        }

        using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await stopping.WaitForExitAsync(exit.Token);
        Assert.True(stopping.ExitCode == 0, $"the silo exited {stopping.ExitCode}:\n{stopping.Log}");
        Assert.Equal(Dead, await MembershipStatusAsync(database, stopping.SiloPort));

        // The job held by a worker of the stopped silo is not lost: its result reaches the other silo, whose grains take
        // over at once (the first call is answered; with the stopped silo still in its view it would be 503 or hang).
        using (var result = await SendAsync(http, staying, holder, HttpMethod.Post, $"worker/jobs/{held}/result",
                   new { output = "done", output_tokens = 3, duration_ms = 5 }, CancellationToken.None))
        {
            Assert.True(result.StatusCode == HttpStatusCode.OK, $"the result on the other silo got {(int)result.StatusCode} {await result.Content.ReadAsStringAsync()}");
        }
        // And the silo left serves the job submitted while the other one drained.
        using (var next = await SendAsync(http, staying, parked, HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        }

        // Each result counted once: the job row (which carries its usage and the worker's credits), and the account's
        // token count, which its grain keeps in memory and writes as it deactivates: the stop lost none of it.
        Assert.Equal(2, await CountAsync(database, $"id IN ({uploaded}, {held}) AND status = 'completed' AND credits IS NOT NULL AND output_tokens = 3"));
        var tokens = await QuotaTokensAsync(database);
        while (tokens < 6)
        {
            Assert.False(exit.IsCancellationRequested, $"the account counted {tokens} tokens of 6");
            await Task.Delay(50);
            tokens = await QuotaTokensAsync(database);
        }
        Assert.Equal(6, tokens);
    }

    /// <summary>The tokens counted against the quotas of every account in the database (the test's only account).</summary>
    internal static async Task<long> QuotaTokensAsync(string database) =>
        await ScalarAsync(database, "SELECT coalesce(sum(tokens), 0)::bigint FROM quota_usage");

    private static async Task<long> SubmitAsync(HttpClient http, SiloProcess silo, string key, string model)
    {
        using var response = await SendAsync(http, silo, key, HttpMethod.Post, "jobs", new { model, model_match = "exact", prompt = "hi" }, CancellationToken.None);
        return (await ApiClient.ExpectAsync(response, HttpStatusCode.Created)).GetProperty("job_id").GetInt64();
    }

    private static async Task<long> ClaimAndStartAsync(HttpClient http, SiloProcess silo, string worker, string model)
    {
        using var poll = await SendAsync(http, silo, worker, HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, CancellationToken.None);
        var id = (await ApiClient.ExpectAsync(poll, HttpStatusCode.OK)).GetProperty("job_id").GetInt64();
        using var start = await SendAsync(http, silo, worker, HttpMethod.Patch, $"worker/jobs/{id}/start", null, CancellationToken.None);
        await ApiClient.ExpectAsync(start, HttpStatusCode.OK);
        return id;
    }

    private static async Task<HttpResponseMessage> PollAsync(HttpClient http, SiloProcess silo, string worker, string model) =>
        await SendAsync(http, silo, worker, HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, CancellationToken.None);

    internal static async Task<int> ParkedPollsAsync(SiloProcess silo)
    {
        var (_, body) = await ReadinessAsync(silo);
        return body?.GetProperty("parked_polls").GetInt32() ?? 0;
    }

    /// <summary><c>/api/v1/health</c> on a new connection: its status and body, or nulls when the silo no longer accepts connections.</summary>
    private static async Task<(HttpStatusCode? Status, JsonElement? Body)> ReadinessAsync(SiloProcess silo)
    {
        using var http = FreshClient();
        try
        {
            using var response = await http.GetAsync(new Uri(silo.BaseAddress, "health"));
            return (response.StatusCode, await response.Content.ReadFromJsonAsync<JsonElement>());
        }
        catch (HttpRequestException)
        {
            return (null, null);
        }
    }

    /// <summary>A client with a connection of its own, so that what it sees is what a new caller (a load balancer's probe) sees.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "the client disposes its handler")]
    private static HttpClient FreshClient() => new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = TimeSpan.FromSeconds(10) };

    private static async Task<int> MembershipStatusAsync(string database, int siloPort)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT status FROM orleans_membership WHERE port = @port ORDER BY generation DESC LIMIT 1", connection);
        command.Parameters.AddWithValue("port", siloPort);
        return (int)(await command.ExecuteScalarAsync())!;
    }

    internal static async Task<long> ScalarAsync(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>A JSON body sent in two halves: the first at once, the rest when the test says so.</summary>
    private sealed class HalfThenRestContent(byte[] bytes) : HttpContent
    {
        private readonly TaskCompletionSource _firstHalfSent = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _sendRest = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task FirstHalfSent => _firstHalfSent.Task;

        public void SendRest() => _sendRest.TrySetResult();

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var half = bytes.Length / 2;
            await stream.WriteAsync(bytes.AsMemory(0, half));
            await stream.FlushAsync();
            _firstHalfSent.TrySetResult();
            await _sendRest.Task;
            await stream.WriteAsync(bytes.AsMemory(half));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = bytes.Length;
            return true;
        }

        protected override void Dispose(bool disposing)
        {
            _sendRest.TrySetResult();
            base.Dispose(disposing);
        }
    }
}
