using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;
using static Coordinator.Tests.Cluster.SiloCrashTests;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// Three silo processes on one database under a steady load of submissions and worker polls over HTTP, restarted one
/// after the other the way a rolling upgrade does (SIGTERM, wait for the exit, start the replacement, wait for it to be
/// healthy): no job is lost or run twice, and no poll waits longer than its window.
/// </summary>
[Collection(Alone.Name)]
public sealed class RollingRestartTests
{
    private const int Workers = 6;
    private const int Submitters = 3;
    private static readonly TimeSpan PollWindow = TimeSpan.FromSeconds(10);

    /// <summary>
    /// What a poll may take beyond its window on this busy machine: the HTTP round trip and the process's scheduling. It
    /// is a bound on correctness (a poll parked on a stopping silo would otherwise wait out its whole window again
    /// elsewhere), not a performance figure.
    /// </summary>
    private static readonly TimeSpan PollTolerance = TimeSpan.FromSeconds(3);

    /// <summary>The pause between one submitter's jobs: a steady load, not a flood that would starve the silos' start-up.</summary>
    private static readonly TimeSpan SubmitPace = TimeSpan.FromMilliseconds(20);

    private static readonly Dictionary<string, string> Settings = new()
    {
        ["Dispatch__LongPollTimeout"] = "00:00:10",
        ["Dispatch__ClaimLease"] = "00:00:03",
    };

    [Fact]
    public async Task RestartingEverySiloInTurnUnderLoad_LosesNoJob_RunsNoneTwice_AndNoPollOutlastsItsWindow()
    {
        var database = await TestDatabase.CreateAsync();
        var silos = (await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => SiloProcess.StartAsync(database, Settings)))).ToList();
        var replaced = new List<SiloProcess>();
        try
        {
            using var http = new HttpClient { Timeout = PollWindow * 2 };
            var key = await NewUnlimitedAccountAsync(http, silos[0], database);
            var model = ApiClient.Unique();
            var workerKeys = new List<string>();
            for (var i = 0; i < Workers; i++) workerKeys.Add(await NewWorkerKeyAsync(http, silos[i % 3], key, model));

            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(240));
            using var stopSubmitting = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
            var starts = new ConcurrentDictionary<long, int>();
            var results = new ConcurrentDictionary<long, int>();
            var polls = new ConcurrentBag<TimeSpan>();
            var submitted = new ConcurrentBag<long>();
            var workers = workerKeys.Select((workerKey, i) => WorkAsync(http, silos, i % 3, workerKey, model, starts, results, polls, stop.Token)).ToList();
            var submitters = Enumerable.Range(0, Submitters)
                .Select(i => SubmitUntilStoppedAsync(http, silos, i % 3, key, model, submitted, stopSubmitting.Token)).ToList();

            for (var i = 0; i < silos.Count; i++)
            {
                // Some work through the cluster as it is, then replace silo i.
                var before = results.Count;
                while (results.Count < before + 50) await Task.Delay(10, stop.Token);
                var old = silos[i];
                old.Terminate();
                await old.WaitForExitAsync(stop.Token);
                Assert.True(old.ExitCode == 0, $"silo {i} exited {old.ExitCode}:\n{old.Log}");
                silos[i] = await SiloProcess.StartAsync(database, Settings);
                replaced.Add(old);
            }
            var last = results.Count;
            while (results.Count < last + 50) await Task.Delay(10, stop.Token);
            await stopSubmitting.CancelAsync();
            await Task.WhenAll(submitters);

            var jobs = submitted.Distinct().Count();
            while (await CountAsync(database, "status = 'completed'") < jobs)
            {
                Assert.False(stop.IsCancellationRequested, $"not every job completed: {await DescribeAsync(database)}");
                await Task.Delay(50);
            }
            // A completion commits before its worker hears the answer: let the last answers arrive before the workers stop
            // (bounded; a result that was refused never arrives, and the assertion below names it).
            using (var answered = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                while (results.Count < jobs && !answered.IsCancellationRequested) await Task.Delay(50, CancellationToken.None);
            }
            await stop.CancelAsync();
            await Task.WhenAll(workers);

            // Every submission made one job, and every job completed exactly once: one start, one accepted result, one
            // usage row, one credit.
            Assert.Equal(submitted.Count, jobs);
            Assert.Equal(jobs, await CountAsync(database, "true"));
            Assert.Equal(jobs, await CountAsync(database, "status = 'completed'"));
            // The job row carries its usage and the worker's credits; the account's tokens (one per result) are counted
            // in its grain's memory and written as it deactivates.
            Assert.Equal(jobs, await CountAsync(database, "status = 'completed' AND credits IS NOT NULL AND output_tokens = 1"));
            var tokens = await GracefulStopTests.QuotaTokensAsync(database);
            using (var written = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                while (tokens < jobs && !written.IsCancellationRequested)
                {
                    await Task.Delay(50, CancellationToken.None);
                    tokens = await GracefulStopTests.QuotaTokensAsync(database);
                }
            }
            // Never counted twice. A stopping silo sends what it holds as its stop begins and writes what arrives later to
            // the account's row, and a batch whose call failed is sent again under its id, which the grain counts once
            // (QuotaCounting): exact in the runs looked at, but a batch still failing when its silo has stopped is dropped,
            // and a count whose call fails otherwise (a timeout under load) is lost, so a few may miss.
            Assert.InRange(tokens, jobs - jobs / 50, jobs);
            Assert.Equal(jobs, results.Count);
            Assert.All(starts, start => Assert.True(start.Value == 1, $"job {start.Key} was started {start.Value} times"));
            Assert.All(results, result => Assert.True(result.Value == 1, $"job {result.Key} had {result.Value} results accepted"));
            var longest = polls.Max();
            Assert.True(longest <= PollWindow + PollTolerance, $"a poll waited {longest.TotalSeconds:0.0} s, longer than its {PollWindow.TotalSeconds:0} s window");
        }
        finally
        {
            foreach (var silo in silos.Concat(replaced)) await silo.DisposeAsync();
        }
    }

    /// <summary>A worker's loop over HTTP: poll, start, report, timing each poll; on a silo that is gone, the next one.</summary>
    private static async Task WorkAsync(HttpClient http, List<SiloProcess> silos, int first, string key, string model,
        ConcurrentDictionary<long, int> starts, ConcurrentDictionary<long, int> results, ConcurrentBag<TimeSpan> polls, CancellationToken stop)
    {
        var silo = new Cursor(first);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var polled = Stopwatch.StartNew();
                HttpResponseMessage poll;
                try
                {
                    poll = await SendAsync(http, silos[silo.Index], key, HttpMethod.Get, $"worker/jobs/next?models[]={model}", null, stop);
                }
                finally
                {
                    polls.Add(polled.Elapsed);
                }
                using (poll)
                {
                    if (poll.StatusCode == HttpStatusCode.NoContent && poll.Headers.ConnectionClose == true)
                    {
                        // Its silo is stopping: poll another.
                        silo.Index = (silo.Index + 1) % silos.Count;
                        continue;
                    }
                    if (poll.StatusCode != HttpStatusCode.OK) continue;
                    var id = (await poll.Content.ReadFromJsonAsync<JsonElement>(stop)).GetProperty("job_id").GetInt64();
                    await StartAndReportAsync(http, silos, silo, key, id, starts, results, stop);
                }
            }
            catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException && !stop.IsCancellationRequested)
            {
                silo.Index = (silo.Index + 1) % silos.Count;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
        }
    }

    /// <summary>Submits jobs at a steady pace until stopped, each resent with its idempotency key to another silo when its silo is gone.</summary>
    private static async Task SubmitUntilStoppedAsync(HttpClient http, List<SiloProcess> silos, int first, string key, string model,
        ConcurrentBag<long> submitted, CancellationToken stop)
    {
        var silo = first;
        for (var i = 0; !stop.IsCancellationRequested; i++)
        {
            var idempotencyKey = Guid.NewGuid().ToString("N");
            // Once begun, a submission is resent until it is answered, even after the stop: none is left half known.
            while (true)
            {
                try
                {
                    using var request = Request(silos[silo], key, HttpMethod.Post, "jobs", new { model, model_match = "exact", prompt = $"job {i}" });
                    request.Headers.Add("Idempotency-Key", idempotencyKey);
                    using var response = await http.SendAsync(request, CancellationToken.None);
                    if (response.StatusCode == HttpStatusCode.Created)
                    {
                        submitted.Add((await response.Content.ReadFromJsonAsync<JsonElement>(CancellationToken.None)).GetProperty("job_id").GetInt64());
                        break;
                    }
                    Assert.True((int)response.StatusCode >= 500, $"submission refused: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(CancellationToken.None)}");
                }
                catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
                {
                }
                silo = (silo + 1) % silos.Count;
            }
            try
            {
                await Task.Delay(SubmitPace, stop);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}
