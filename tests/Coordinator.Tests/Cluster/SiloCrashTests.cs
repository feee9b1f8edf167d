using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using Npgsql;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// Three silo processes on one database under load; one is killed with SIGKILL. Submissions retry on another silo with
/// the same <c>Idempotency-Key</c>, workers move to another silo when theirs is gone.
/// </summary>
[Collection(Alone.Name)]
public sealed class SiloCrashTests
{
    private const int Jobs = 2000;
    private const int Workers = 16;
    private const int Submitters = 4;
    private static readonly TimeSpan OfflineAfter = TimeSpan.FromSeconds(6);

    /// <summary>How often the watcher reads the jobs table; the silos run on real time, so the watcher does too.</summary>
    private static readonly TimeSpan SampleInterval = TimeSpan.FromMilliseconds(250);

    private static readonly Dictionary<string, string> Settings = new()
    {
        ["Dispatch__LongPollTimeout"] = "00:00:02",
        ["Dispatch__OfflineAfter"] = OfflineAfter.ToString(),
        ["Dispatch__ClaimLease"] = "00:00:03",
        ["Dispatch__DutyInterval"] = "00:00:01",
        ["Dispatch__HeartbeatWriteInterval"] = "00:00:01",
    };

    [Fact]
    public async Task KillingASiloUnderLoad_LosesNoJob_AndRunsNoneTwice()
    {
        var database = await TestDatabase.CreateAsync();
        var silos = new List<SiloProcess>();
        try
        {
            for (var i = 0; i < 3; i++) silos.Add(await SiloProcess.StartAsync(database, Settings));
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
            var key = await NewUnlimitedAccountAsync(http, silos[0], database);
            var model = ApiClient.Unique();
            var workerKeys = new List<string>();
            for (var i = 0; i < Workers; i++) workerKeys.Add(await NewWorkerKeyAsync(http, silos[i % 3], key, model));

            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(240));
            var starts = new ConcurrentDictionary<long, int>();
            var results = new ConcurrentDictionary<long, int>();
            var workers = workerKeys.Select((workerKey, i) => WorkAsync(http, silos, i % 3, workerKey, model, starts, results, stop.Token)).ToList();
            var submitted = new ConcurrentBag<long>();
            var submitters = Enumerable.Range(0, Submitters)
                .Select(i => SubmitAsync(http, silos, i % 3, key, model, Jobs / Submitters, submitted, stop.Token)).ToList();
            var stuck = WatchForStuckJobsAsync(database, stop.Token);

            // Kill a silo while jobs are being submitted and run.
            while (results.Count < Jobs / 3) await Task.Delay(10, stop.Token);
            silos[1].Kill();

            await Task.WhenAll(submitters);
            while (await CountAsync(database, "status = 'completed'") < Jobs)
            {
                Assert.False(stop.IsCancellationRequested, $"not every job completed: {await DescribeAsync(database)}");
                await Task.Delay(50);
            }
            await stop.CancelAsync();
            await Task.WhenAll(workers);
            var seen = await stuck;
            Assert.True(seen.Count == 0, $"jobs were seen claimed or running for longer than the offline window ({seen.Count} samples): {string.Join("; ", seen.Distinct())}");

            // No submission retried on another silo made a second job, and every job completed exactly once.
            Assert.Equal(Jobs, submitted.Distinct().Count());
            Assert.Equal(Jobs, await CountAsync(database, "true"));
            Assert.Equal(Jobs, await CountAsync(database, "status = 'completed'"));
            Assert.All(starts, start => Assert.True(start.Value == 1, $"job {start.Key} was started {start.Value} times"));
            Assert.All(results, result => Assert.True(result.Value == 1, $"job {result.Key} had {result.Value} results accepted"));
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    /// <summary>A worker's loop: poll, start, report; on a dead silo, move to the next one.</summary>
    private static async Task WorkAsync(HttpClient http, List<SiloProcess> silos, int first, string key, string model,
        ConcurrentDictionary<long, int> starts, ConcurrentDictionary<long, int> results, CancellationToken stop)
    {
        var silo = new Cursor(first);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using var poll = await SendAsync(http, silos[silo.Index], key, HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, stop);
                if (poll.StatusCode != HttpStatusCode.OK) continue;
                var id = (await poll.Content.ReadFromJsonAsync<JsonElement>(stop)).GetProperty("job_id").GetInt64();
                await StartAndReportAsync(http, silos, silo, key, id, starts, results, stop);
            }
            catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException && !stop.IsCancellationRequested)
            {
                silo.Index = NextLive(silos, silo.Index);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
        }
    }

    /// <summary>The silo a worker talks to now.</summary>
    /// <summary>
    /// Starts a job the worker received and reports its result, each resent to the next silo until answered, counting
    /// the starts and the accepted results. A start whose answer was lost with its silo and that is then refused on
    /// resend (the job is already running) is not counted; the result will show whether it went through.
    /// </summary>
    internal static async Task StartAndReportAsync(HttpClient http, List<SiloProcess> silos, Cursor silo, string key, long id,
        ConcurrentDictionary<long, int> starts, ConcurrentDictionary<long, int> results, CancellationToken stop)
    {
        var start = await CallUntilAnsweredAsync(http, silos, silo, key, HttpMethod.Patch, $"worker/jobs/{id}/start", null, stop);
        if (start == Answer.Refused) return;
        starts.AddOrUpdate(id, 1, (_, n) => n + 1);
        if (await CallUntilAnsweredAsync(http, silos, silo, key, HttpMethod.Post, $"worker/jobs/{id}/result",
                new { output = "ok", output_tokens = 1, duration_ms = 1 }, stop) == Answer.Done)
        {
            results.AddOrUpdate(id, 1, (_, n) => n + 1);
        }
    }

    internal sealed class Cursor(int index)
    {
        public int Index { get; set; } = index;
    }

    internal enum Answer
    {
        Done,
        Refused,
        RefusedAfterResend,
    }

    /// <summary>
    /// Sends until some silo answers. A call lost with its silo is sent again to another, and so is one answered 503 (as
    /// grid-worker does): a silo answers 503 while the grain a call needs is on a silo that died and has not yet been
    /// declared dead.
    /// </summary>
    internal static async Task<Answer> CallUntilAnsweredAsync(HttpClient http, List<SiloProcess> silos, Cursor silo, string key, HttpMethod method,
        string path, object? body, CancellationToken stop)
    {
        var resent = false;
        while (true)
        {
            stop.ThrowIfCancellationRequested();
            try
            {
                using var response = await SendAsync(http, silos[silo.Index], key, method, path, body, stop);
                if (response.StatusCode != HttpStatusCode.ServiceUnavailable)
                {
                    return response.IsSuccessStatusCode ? Answer.Done : resent ? Answer.RefusedAfterResend : Answer.Refused;
                }
                await Task.Delay(RetryAfterUnavailable, stop);
            }
            catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException && !stop.IsCancellationRequested)
            {
                silo.Index = NextLive(silos, silo.Index);
            }
            resent = true;
        }
    }

    /// <summary>How long a worker waits before sending a call again that a silo answered 503.</summary>
    private static readonly TimeSpan RetryAfterUnavailable = TimeSpan.FromMilliseconds(50);

    /// <summary>Submits <paramref name="count"/> jobs, each with its own idempotency key, resent to another silo when its silo dies.</summary>
    private static async Task SubmitAsync(HttpClient http, List<SiloProcess> silos, int first, string key, string model, int count,
        ConcurrentBag<long> submitted, CancellationToken stop)
    {
        var silo = first;
        for (var i = 0; i < count; i++)
        {
            var idempotencyKey = Guid.NewGuid().ToString("N");
            while (true)
            {
                try
                {
                    using var request = Request(silos[silo], key, HttpMethod.Post, "jobs", new { model, model_match = "exact", prompt = $"job {i}" });
                    request.Headers.Add("Idempotency-Key", idempotencyKey);
                    using var response = await http.SendAsync(request, stop);
                    if (response.StatusCode == HttpStatusCode.Created)
                    {
                        submitted.Add((await response.Content.ReadFromJsonAsync<JsonElement>(stop)).GetProperty("job_id").GetInt64());
                        break;
                    }
                    Assert.True((int)response.StatusCode >= 500, $"submission refused: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(stop)}");
                }
                catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException && !stop.IsCancellationRequested)
                {
                }
                silo = NextLive(silos, silo);
            }
        }
    }

    /// <summary>
    /// Samples the jobs table: each time a job was seen claimed or running for longer than the offline window, as
    /// "job, status, worker, seconds since its claim, since its start".
    /// </summary>
    private static async Task<List<string>> WatchForStuckJobsAsync(string database, CancellationToken stop)
    {
        var stuck = new List<string>();
        while (!stop.IsCancellationRequested)
        {
            await using (var connection = new NpgsqlConnection(database))
            {
                await connection.OpenAsync(CancellationToken.None);
                await using var command = new NpgsqlCommand(
                    "SELECT format('job %s %s by worker %s, claimed %s s ago, started %s s ago', id, status, worker_id, " +
                    "round(extract(epoch FROM now() - claimed_at)::numeric, 1), round(extract(epoch FROM now() - started_at)::numeric, 1)) " +
                    $"FROM jobs WHERE status IN ('claimed', 'running') AND claimed_at < now() - interval '{OfflineAfter.TotalSeconds} seconds'", connection);
                await using var reader = await command.ExecuteReaderAsync(CancellationToken.None);
                while (await reader.ReadAsync(CancellationToken.None)) stuck.Add(reader.GetString(0));
            }
            await Task.Delay(SampleInterval, CancellationToken.None);
        }
        return stuck;
    }

    internal static int NextLive(List<SiloProcess> silos, int silo)
    {
        for (var step = 1; step <= silos.Count; step++)
        {
            var next = (silo + step) % silos.Count;
            if (!silos[next].HasExited) return next;
        }
        return silo;
    }

    internal static HttpRequestMessage Request(SiloProcess silo, string key, HttpMethod method, string path, object? body)
    {
        var request = new HttpRequestMessage(method, new Uri(silo.BaseAddress, path));
        request.Headers.Authorization = new("Bearer", key);
        if (body is not null) request.Content = JsonContent.Create(body);
        return request;
    }

    internal static async Task<HttpResponseMessage> SendAsync(HttpClient http, SiloProcess silo, string key, HttpMethod method, string path,
        object? body, CancellationToken stop)
    {
        using var request = Request(silo, key, method, path, body);
        return await http.SendAsync(request, stop);
    }

    internal static async Task<string> NewUnlimitedAccountAsync(HttpClient http, SiloProcess silo, string database)
    {
        using var response = await http.PostAsJsonAsync(new Uri(silo.BaseAddress, "accounts"), new { name = "crash" });
        var account = await ApiClient.ExpectAsync(response, HttpStatusCode.Created);
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            INSERT INTO plans (id, name) VALUES ('crash-unlimited', 'crash-unlimited') ON CONFLICT (id) DO NOTHING;
            UPDATE accounts SET plan = 'crash-unlimited' WHERE id = @id;
            """, connection);
        command.Parameters.AddWithValue("id", account.GetProperty("account_id").GetInt64());
        await command.ExecuteNonQueryAsync();
        return account.GetProperty("api_key").GetString()!;
    }

    internal static async Task<string> NewWorkerKeyAsync(HttpClient http, SiloProcess silo, string key, string model)
    {
        using var created = await SendAsync(http, silo, key, HttpMethod.Post, "keys", new { name = "w" }, CancellationToken.None);
        var workerKey = (await ApiClient.ExpectAsync(created, HttpStatusCode.Created)).GetProperty("key").GetString()!;
        using var registered = await SendAsync(http, silo, workerKey, HttpMethod.Post, "worker/register", new
        {
            name = "w-" + Guid.NewGuid().ToString("N")[..6],
            agent_version = "test",
            platform = "linux/amd64",
            models = new[] { new { name = model, serves_family = false } },
        }, CancellationToken.None);
        await ApiClient.ExpectAsync(registered, HttpStatusCode.Created);
        return workerKey;
    }

    internal static async Task<long> CountAsync(string database, string condition)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM jobs WHERE {condition}", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    internal static async Task<string> DescribeAsync(string database)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM jobs GROUP BY status) s", connection);
        return (string?)await command.ExecuteScalarAsync() ?? "no jobs";
    }
}

/// <summary>
/// Tests that load the machine with separate processes and measure the system under load run after the others, one at
/// a time, so that the rest of the suite's parallel classes do not starve them (and they do not starve the rest).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Alone
{
    public const string Name = "alone";
}
