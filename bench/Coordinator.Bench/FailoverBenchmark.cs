using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace Coordinator.Bench;

/// <summary>
/// Three nodes on one database under a steady load over HTTP; one is killed with SIGKILL. Submitters resend a
/// submission whose answer was lost to another node with the same Idempotency-Key; workers move to another node when
/// theirs is gone. The nodes run with production settings (failure detector, claim lease, offline window).
/// </summary>
public sealed class FailoverBenchmark(BenchOptions options, BenchDatabase database, HttpClient http, Report report)
{
    private const string Model = "bench:1";

    public async Task RunAsync()
    {
        var seconds = options.Quick ? 20 : 40;
        const int rate = 200, workers = 16, submitters = 4;
        var rows = new List<string[]>();
        foreach (var build in options.Baseline is { } baseline ? new[] { options.Ours, baseline } : [options.Ours])
        {
            var result = await RunOnceAsync(build, seconds, rate, workers, submitters);
            Console.WriteLine($"failover {build.Name}: {result}");
            report.Set(build == options.Ours ? "service.failover" : "service.failover.baseline", result);
            rows.Add([build.Name, Report.Num(result.Submitted), Report.Num(result.JobsInTable), Report.Num(result.Duplicated), Report.Num(result.RunTwice),
                Report.Num(result.Lost), Report.Ms(result.LongestDispatchGapMs), Report.Ms(result.LastCompletedAfterKillMs)]);
        }
        report.Table("Killing one of three nodes under load",
            ["build", "jobs submitted", "jobs in the table", "extra jobs from resent submissions", "jobs started twice", "jobs lost", "longest gap in dispatch after the kill", "last job completed after the kill"],
            rows,
            $"Three nodes on one database, {workers} workers and {submitters} submitters ({rate} jobs/s in all) over HTTP for {seconds} s; node 2 is killed with SIGKILL a third of the way in. " +
            "Production settings: failure detector 5 s × 3 probes, claim lease 15 s, offline after 90 s. A resent submission carries the same Idempotency-Key (pg-engine ignores the header). " +
            "The gap is the longest time without any worker receiving a job, from the kill until the submissions end; the last column is from the kill to the last job's result.");
    }

    private async Task<FailoverResult> RunOnceAsync(CoordinatorBuild build, int seconds, int rate, int workerCount, int submitterCount)
    {
        var db = await database.CreateAsync($"svc_failover{build.DatabaseSuffix}");
        var nodes = new List<NodeProcess>();
        try
        {
            for (var i = 0; i < 3; i++) nodes.Add(await NodeProcess.StartAsync(build.Dll, db, http, cpus: null));
            var (accountId, key) = await nodes[0].Grid.SignUpAsync("failover");
            await database.ExecAsync(db, $"""
                INSERT INTO plans (id, name, daily_requests, daily_tokens) VALUES ('bench-unlimited', 'bench-unlimited', NULL, NULL) ON CONFLICT (id) DO NOTHING;
                UPDATE accounts SET plan = 'bench-unlimited' WHERE id = {accountId};
                """);
            var workerKeys = new List<string>();
            for (var i = 0; i < workerCount; i++) workerKeys.Add(await nodes[i % 3].Grid.NewWorkerAsync(key, $"f{i}-{Guid.NewGuid():N}", Model));

            var dead = new bool[3];
            var dispatched = new ConcurrentQueue<long>();
            var starts = new ConcurrentDictionary<long, int>();
            using var stopWorkers = new CancellationTokenSource();
            var clock = Stopwatch.StartNew();
            var loops = workerKeys.Select((worker, i) => WorkAsync(nodes, dead, i % 3, worker, dispatched, starts, stopWorkers.Token)).ToList();

            var submitted = 0;
            long killedAt = 0;
            var perSubmitter = rate * seconds / submitterCount;
            var interval = TimeSpan.FromSeconds((double)submitterCount / rate);
            var submitting = Enumerable.Range(0, submitterCount).Select(async s =>
            {
                var node = s % 3;
                for (var i = 0; i < perSubmitter; i++)
                {
                    var due = interval * (i + 1);
                    if (clock.Elapsed < due) await Task.Delay(due - clock.Elapsed);
                    // A resent submission is the same request: same body, same key.
                    var idempotencyKey = Guid.NewGuid().ToString();
                    var prompt = $"{s}-{i}";
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
                            // The node is gone, or the answer was lost with its connection: resend, elsewhere.
                            node = NextLive(dead, node);
                        }
                    }
                }
            }).ToList();

            await Task.Delay(TimeSpan.FromSeconds(seconds / 3.0));
            killedAt = Stopwatch.GetTimestamp();
            dead[1] = true;
            await nodes[1].DisposeAsync(); // SIGKILL
            await Task.WhenAll(submitting);
            var submittingEnded = Stopwatch.GetTimestamp();

            var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 120;
            long completed;
            while ((completed = await database.ScalarAsync(db, "SELECT count(*) FROM jobs WHERE status = 'completed'")) < submitted && Stopwatch.GetTimestamp() < deadline)
            {
                await Task.Delay(100);
            }
            var lastCompletedMs = await database.ScalarAsync(db,
                $"SELECT (extract(epoch FROM max(completed_at)) * 1000)::bigint FROM jobs WHERE status = 'completed'");
            var killedAtWallMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (long)Stopwatch.GetElapsedTime(killedAt).TotalMilliseconds;
            await stopWorkers.CancelAsync();
            await Task.WhenAll(loops);

            var inTable = await database.ScalarAsync(db, "SELECT count(*) FROM jobs");
            var times = dispatched.Where(t => t >= killedAt && t <= submittingEnded).Order().ToList();
            times.Insert(0, killedAt);
            var gap = times.Zip(times.Skip(1), (a, b) => (b - a) * 1000.0 / Stopwatch.Frequency).DefaultIfEmpty(double.NaN).Max();
            return new FailoverResult(submitted, inTable, inTable - submitted, starts.Count(s => s.Value > 1),
                submitted - Math.Min(completed, submitted), gap, lastCompletedMs - killedAtWallMs);
        }
        finally
        {
            foreach (var node in nodes) await node.DisposeAsync();
        }
    }

    private static async Task WorkAsync(List<NodeProcess> nodes, bool[] dead, int first, string worker,
        ConcurrentQueue<long> dispatched, ConcurrentDictionary<long, int> starts, CancellationToken stop)
    {
        var node = first;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                if (await nodes[node].Grid.PollAsync(worker, Model, stop) is not { } job) continue;
                dispatched.Enqueue(job.ReceivedAt);
                while (true)
                {
                    try
                    {
                        await nodes[node].Grid.StartAsync(worker, job.JobId);
                        break;
                    }
                    catch (HttpRequestException exception) when (exception.StatusCode == HttpStatusCode.ServiceUnavailable && !stop.IsCancellationRequested)
                    {
                        // As grid-worker does: a 503 is sent again.
                        await Task.Delay(RetryAfterUnavailable, stop);
                    }
                }
                starts.AddOrUpdate(job.JobId, 1, (_, n) => n + 1);
                while (true)
                {
                    try
                    {
                        await nodes[node].Grid.ResultAsync(worker, job.JobId);
                        break;
                    }
                    catch (HttpRequestException exception) when (dead[node] || exception.StatusCode == HttpStatusCode.ServiceUnavailable)
                    {
                        if (dead[node]) node = NextLive(dead, node);
                        else await Task.Delay(RetryAfterUnavailable, stop);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            catch (Exception)
            {
                // A node gone (connection refused or reset), or a start refused after its claim was given back.
                if (dead[node]) node = NextLive(dead, node);
            }
        }
    }

    /// <summary>How long a worker waits before sending a call again that a node answered 503.</summary>
    private static readonly TimeSpan RetryAfterUnavailable = TimeSpan.FromMilliseconds(50);

    private static int NextLive(bool[] dead, int node)
    {
        for (var step = 1; step <= dead.Length; step++)
        {
            if (!dead[(node + step) % dead.Length]) return (node + step) % dead.Length;
        }
        return node;
    }

    private sealed record FailoverResult(long Submitted, long JobsInTable, long Duplicated, long RunTwice, long Lost,
        double LongestDispatchGapMs, double LastCompletedAfterKillMs)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"submitted {Submitted}, in table {JobsInTable}, duplicated {Duplicated}, run twice {RunTwice}, lost {Lost}, longest dispatch gap {LongestDispatchGapMs:F0} ms, last completed {LastCompletedAfterKillMs:F0} ms after the kill");
    }
}
