using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace Coordinator.Bench;

/// <summary>
/// Three nodes on one database under a steady load over HTTP, restarted one after the other as a rolling upgrade does:
/// SIGTERM, wait for the exit, start the replacement, wait for it to be healthy. Measures the dispatch during the roll
/// against the steady state before it: the longest time without any worker receiving a job, and the dispatch latency
/// (a job's submission sent to its receipt by a worker) of the jobs submitted in each phase. Production settings.
/// </summary>
public sealed class RollingBenchmark(BenchOptions options, BenchDatabase database, HttpClient http, Report report)
{
    private const string Model = "bench:1";

    public async Task RunAsync()
    {
        var steadySeconds = options.Quick ? 10 : 20;
        const int rate = 100, workers = 12, submitters = 4;
        var runs = new List<RollingResult>();
        var rows = new List<string[]>();
        for (var run = 0; run < options.Repeat; run++)
        {
            var result = await RunOnceAsync(run, steadySeconds, rate, workers, submitters);
            Console.WriteLine($"rolling run {run + 1}: {result}");
            runs.Add(result);
            rows.Add(Row($"run {run + 1}", result));
        }
        var median = new RollingResult(
            (long)LatencySummary.Median(runs.Select(r => (double)r.Submitted)), (long)LatencySummary.Median(runs.Select(r => (double)r.Lost)),
            (long)LatencySummary.Median(runs.Select(r => (double)r.Duplicated)), (long)LatencySummary.Median(runs.Select(r => (double)r.RunTwice)),
            LatencySummary.Median(runs.Select(r => r.SteadyGapMs)), LatencySummary.Median(runs.Select(r => r.RollingGapMs)),
            LatencySummary.MedianOf([.. runs.Select(r => r.Steady)]), LatencySummary.MedianOf([.. runs.Select(r => r.Rolling)]),
            LatencySummary.Median(runs.Select(r => r.RollSeconds)), LatencySummary.Median(runs.Select(r => r.StopSeconds)));
        rows.Add(Row("**median**", median));
        report.Set("service.rolling", new { runs, median });
        report.Table("Rolling restart of three nodes under load",
            ["run", "jobs submitted", "lost", "extra jobs", "started twice", "longest dispatch gap, steady", "longest dispatch gap, rolling",
                "dispatch p50 / p99, steady", "dispatch p50 / p99, rolling", "roll took", "SIGTERM to exit (median)"],
            rows,
            $"Three nodes on one database, {workers} workers and {submitters} submitters ({rate} jobs/s in all) over HTTP; {steadySeconds} s of steady load, " +
            "then each node in turn gets SIGTERM, exits, and is replaced by a new process that is waited for until healthy; then 5 s more. " +
            "Production settings (failure detector 5 s × 3, claim lease 15 s, poll window 30 s, no drain delay). Dispatch latency is from a job's " +
            "submission sent to its receipt by a worker, for the jobs submitted in each phase; the gap is the longest time in the phase without any " +
            "worker receiving a job (jobs were pending throughout: the submissions never stop). A resent submission carries the same Idempotency-Key.");
    }

    private static string[] Row(string name, RollingResult r) =>
    [
        name, Report.Num(r.Submitted), Report.Num(r.Lost), Report.Num(r.Duplicated), Report.Num(r.RunTwice), Report.Ms(r.SteadyGapMs), Report.Ms(r.RollingGapMs),
        $"{Report.Ms(r.Steady.P50)} / {Report.Ms(r.Steady.P99)}", $"{Report.Ms(r.Rolling.P50)} / {Report.Ms(r.Rolling.P99)}",
        Report.Num(r.RollSeconds, "F1") + " s", Report.Num(r.StopSeconds, "F1") + " s",
    ];

    private async Task<RollingResult> RunOnceAsync(int run, int steadySeconds, int rate, int workerCount, int submitterCount)
    {
        var db = await database.CreateAsync($"svc_rolling{run}");
        var nodes = new List<NodeProcess>();
        var stopped = new List<NodeProcess>();
        try
        {
            for (var i = 0; i < 3; i++) nodes.Add(await NodeProcess.StartAsync(options.Ours.Dll, db, http, cpus: null));
            var (accountId, key) = await nodes[0].Grid.SignUpAsync("rolling");
            await database.ExecAsync(db, $"""
                INSERT INTO plans (id, name, daily_requests, daily_tokens) VALUES ('bench-unlimited', 'bench-unlimited', NULL, NULL) ON CONFLICT (id) DO NOTHING;
                UPDATE accounts SET plan = 'bench-unlimited' WHERE id = {accountId};
                """);
            var workerKeys = new List<string>();
            for (var i = 0; i < workerCount; i++) workerKeys.Add(await nodes[i % 3].Grid.NewWorkerAsync(key, $"r{i}-{Guid.NewGuid():N}", Model));

            // Per job: when its submission was sent (the prompt carries it) and when a worker received it.
            var received = new ConcurrentQueue<(long SentAt, long ReceivedAt, long JobId)>();
            var starts = new ConcurrentDictionary<long, int>();
            using var stopWorkers = new CancellationTokenSource();
            using var stopSubmitting = new CancellationTokenSource();
            // Released once per result a node accepts: the end of the run waits on these, not on a poll of the table.
            using var resultsAccepted = new SemaphoreSlim(0);
            var loops = workerKeys.Select((worker, i) => WorkAsync(nodes, i % 3, worker, received, starts, resultsAccepted, stopWorkers.Token)).ToList();

            var submitted = 0;
            var clock = Stopwatch.StartNew();
            var interval = TimeSpan.FromSeconds((double)submitterCount / rate);
            var submitting = Enumerable.Range(0, submitterCount).Select(async s =>
            {
                var node = s % 3;
                for (var i = 0; !stopSubmitting.IsCancellationRequested; i++)
                {
                    var due = interval * (i + 1);
                    if (clock.Elapsed < due) await Task.Delay(due - clock.Elapsed);
                    var idempotencyKey = Guid.NewGuid().ToString();
                    var prompt = Stopwatch.GetTimestamp().ToString(CultureInfo.InvariantCulture);
                    while (true)
                    {
                        try
                        {
                            await nodes[node].Grid.SubmitAsync(key, Model, prompt: prompt, idempotencyKey: idempotencyKey);
                            Interlocked.Increment(ref submitted);
                            break;
                        }
                        catch (HttpRequestException)
                        {
                            // The node is stopping or gone (or answered 503): resend, with the same key, to the next one.
                            node = (node + 1) % nodes.Count;
                        }
                    }
                }
            }).ToList();

            await Task.Delay(TimeSpan.FromSeconds(steadySeconds));
            var rollStarted = Stopwatch.GetTimestamp();
            var stopTimes = new List<double>();
            for (var i = 0; i < nodes.Count; i++)
            {
                var old = nodes[i];
                Console.WriteLine($"rolling run {run + 1}: {DateTime.UtcNow:HH:mm:ss.fff} SIGTERM node {i} (pid {old.Pid})");
                var (exitCode, took) = await old.TerminateAsync(TimeSpan.FromSeconds(60));
                Console.WriteLine($"rolling run {run + 1}: {DateTime.UtcNow:HH:mm:ss.fff} node {i} exited");
                if (exitCode != 0) throw new InvalidOperationException($"node {i} exited {exitCode} after SIGTERM");
                stopTimes.Add(took.TotalSeconds);
                stopped.Add(old);
                nodes[i] = await NodeProcess.StartAsync(options.Ours.Dll, db, http, cpus: null);
                Console.WriteLine($"rolling run {run + 1}: {DateTime.UtcNow:HH:mm:ss.fff} node {i} replaced by pid {nodes[i].Pid}, healthy");
            }
            var rollEnded = Stopwatch.GetTimestamp();
            await Task.Delay(TimeSpan.FromSeconds(5));
            await stopSubmitting.CancelAsync();
            await Task.WhenAll(submitting);

            var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 120;
            for (var accepted = 0; accepted < submitted; accepted++)
            {
                var left = TimeSpan.FromSeconds((double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
                if (left <= TimeSpan.Zero || !await resultsAccepted.WaitAsync(left)) break;
            }
            var completed = await database.ScalarAsync(db, "SELECT count(*) FROM jobs WHERE status = 'completed'");
            await stopWorkers.CancelAsync();
            await Task.WhenAll(loops);
            var inTable = await database.ScalarAsync(db, "SELECT count(*) FROM jobs");

            var warm = rollStarted - Stopwatch.Frequency * (steadySeconds / 2);
            var all = received.Select(j => (j.SentAt, j.ReceivedAt)).ToList();
            // Wall clock of a Stopwatch timestamp, to match the nodes' logs.
            var wallAt = DateTime.UtcNow - TimeSpan.FromSeconds(Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency);
            string Wall(long t) => (wallAt + TimeSpan.FromSeconds(t / (double)Stopwatch.Frequency)).ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture);
            foreach (var slow in received.Where(j => j.ReceivedAt - j.SentAt > Stopwatch.Frequency * 3).OrderBy(j => j.SentAt))
            {
                Console.WriteLine($"rolling run {run + 1}: slow job {slow.JobId}: sent {Wall(slow.SentAt)}, received {Wall(slow.ReceivedAt)}");
            }
            var times = all.Select(j => j.ReceivedAt).Where(t => t >= rollStarted && t <= rollEnded).Order().ToList();
            for (var g = 1; g < times.Count; g++)
            {
                if (times[g] - times[g - 1] > Stopwatch.Frequency * 3) Console.WriteLine($"rolling run {run + 1}: gap from {Wall(times[g - 1])} to {Wall(times[g])}");
            }
            var steady = Summarise(all.Where(j => j.SentAt >= warm && j.SentAt < rollStarted));
            var rolling = Summarise(all.Where(j => j.SentAt >= rollStarted && j.SentAt < rollEnded));
            var receipts = all.Select(j => j.ReceivedAt).Order().ToList();
            return new RollingResult(submitted, submitted - Math.Min(completed, submitted), inTable - submitted, starts.Count(s => s.Value > 1),
                LongestGap(receipts, warm, rollStarted), LongestGap(receipts, rollStarted, rollEnded), steady, rolling,
                (rollEnded - rollStarted) / (double)Stopwatch.Frequency, LatencySummary.Median(stopTimes));
        }
        finally
        {
            foreach (var node in nodes.Concat(stopped)) await node.DisposeAsync();
        }
    }

    private static LatencySummary Summarise(IEnumerable<(long SentAt, long ReceivedAt)> jobs)
    {
        var latencies = new Latencies();
        foreach (var (sentAt, receivedAt) in jobs) latencies.Add((receivedAt - sentAt) * 1000.0 / Stopwatch.Frequency);
        return latencies.Summarise();
    }

    /// <summary>The longest time between <paramref name="from"/> and <paramref name="to"/> in which no worker received a job.</summary>
    private static double LongestGap(List<long> receipts, long from, long to)
    {
        var times = receipts.Where(t => t >= from && t <= to).Prepend(from).Append(to).ToList();
        return times.Zip(times.Skip(1), (a, b) => (b - a) * 1000.0 / Stopwatch.Frequency).Max();
    }

    private static async Task WorkAsync(List<NodeProcess> nodes, int first, string worker,
        ConcurrentQueue<(long, long, long)> received, ConcurrentDictionary<long, int> starts, SemaphoreSlim resultsAccepted, CancellationToken stop)
    {
        var node = first;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                if (await nodes[node].Grid.PollAsync(worker, Model, stop) is not { } job) continue;
                received.Enqueue((long.Parse(job.Prompt, CultureInfo.InvariantCulture), job.ReceivedAt, job.JobId));
                await UntilAnsweredAsync(nodes, () => node, n => node = n, n => nodes[n].Grid.StartAsync(worker, job.JobId), stop);
                starts.AddOrUpdate(job.JobId, 1, (_, n) => n + 1);
                await UntilAnsweredAsync(nodes, () => node, n => node = n, n => nodes[n].Grid.ResultAsync(worker, job.JobId), stop);
                resultsAccepted.Release();
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            catch (Exception exception) when (exception is HttpRequestException { StatusCode: null } or System.Net.Sockets.SocketException)
            {
                // The node is stopping or gone: poll the next one. (A connection the node closed as it was made can surface
                // as a bare SocketException from HttpClient.)
                node = (node + 1) % nodes.Count;
            }
            catch (Exception exception) when (exception is HttpRequestException or InvalidOperationException)
            {
                // A start or result refused (its claim went back meanwhile): the job is someone else's now.
            }
        }
    }

    /// <summary>Sends a worker's call until a node answers it: a refused connection moves to the next node, a 503 is sent again, as grid-worker does.</summary>
    private static async Task UntilAnsweredAsync(List<NodeProcess> nodes, Func<int> node, Action<int> move, Func<int, Task> call, CancellationToken stop)
    {
        while (true)
        {
            try
            {
                await call(node());
                return;
            }
            catch (Exception exception) when (exception is HttpRequestException { StatusCode: null } or System.Net.Sockets.SocketException && !stop.IsCancellationRequested)
            {
                move((node() + 1) % nodes.Count);
            }
            catch (HttpRequestException exception) when (exception.StatusCode == HttpStatusCode.ServiceUnavailable && !stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), stop);
            }
        }
    }

    private sealed record RollingResult(long Submitted, long Lost, long Duplicated, long RunTwice, double SteadyGapMs, double RollingGapMs,
        LatencySummary Steady, LatencySummary Rolling, double RollSeconds, double StopSeconds)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"submitted {Submitted}, lost {Lost}, duplicated {Duplicated}, run twice {RunTwice}; longest dispatch gap {SteadyGapMs:F0} ms steady, {RollingGapMs:F0} ms rolling; " +
            $"dispatch steady {Steady}; rolling {Rolling}; roll {RollSeconds:F1} s, SIGTERM to exit {StopSeconds:F1} s");
    }
}
