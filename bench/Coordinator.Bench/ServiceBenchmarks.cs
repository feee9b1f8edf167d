using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;

namespace Coordinator.Bench;

/// <summary>
/// The service end to end: coordinator nodes as separate processes, HTTP clients and simulated workers speaking
/// the real protocol from this process.
/// </summary>
public sealed partial class ServiceBenchmarks(BenchOptions options, BenchDatabase database, HttpClient http, Report report)
{
    private const string Model = "bench:1";

    /// <summary>Dispatch latency: 1,000 sequential jobs, 50 parked workers; from POST /jobs to a worker's poll returning it.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task DispatchLatencyAsync()
    {
        var jobs = options.Quick ? 300 : 1000;
        var fromReturn = new PerBuild<LatencySummary>();
        var fromSend = new PerBuild<LatencySummary>();
        foreach (var (run, build) in EachBuild(Enumerable.Range(0, options.Repeat)))
        {
            await using var setup = await SingleNodeAsync(build, $"svc_dispatch_{run}", requestLimit: null);
            var (afterReturn, afterSend) = await SequentialDispatchAsync(setup.Node.Grid, setup.Node.Grid, setup.Key, parked: 50, jobs);
            fromReturn[build].Add(afterReturn);
            fromSend[build].Add(afterSend);
            Console.WriteLine($"dispatch run {run} {build.Name}: from POST returning {afterReturn}; from POST sent {afterSend}");
        }
        var r = LatencySummary.MedianOf(fromReturn[options.Ours]);
        var s = LatencySummary.MedianOf(fromSend[options.Ours]);
        report.Set("service.dispatch_latency", new { jobs, parked_workers = 50, runs = options.Repeat, from_post_returning = r, from_post_sent = s });
        report.Table("Dispatch latency (grid core)", ["measured from", "p50", "p95", "p99", "max", "target"],
        [
            ["POST /jobs returning → parked worker's poll returning the job", Report.Ms(r.P50), Report.Ms(r.P95), Report.Ms(r.P99), Report.Ms(r.Max),
                $"p50 ≤ 3 ms: {Report.Verdict(r.P50 <= 3)}; p99 ≤ 15 ms: {Report.Verdict(r.P99 <= 15)}"],
            ["POST /jobs sent → parked worker's poll returning the job", Report.Ms(s.P50), Report.Ms(s.P95), Report.Ms(s.P99), Report.Ms(s.Max), ""],
        ],
        $"{jobs} sequential jobs, 50 workers parked on one node; median of {options.Repeat} runs. A worker's poll often returns before the client has read its 201, so the first row can be negative.");
        if (options.Baseline is { } baseline)
        {
            var (br, bs) = (LatencySummary.MedianOf(fromReturn[baseline]), LatencySummary.MedianOf(fromSend[baseline]));
            CompareWithBaseline("Dispatch latency (grid core)", "service.dispatch_latency", new { from_post_returning = br, from_post_sent = bs },
                [.. LatencyFigures("from POST /jobs sent", s, bs), .. LatencyFigures("from POST /jobs returning", r, br)],
                $"The same scenario on each build, alternating, each on its own fresh database; median of {options.Repeat} runs each. A ratio of figures at or below zero says nothing (n/a).");
        }
    }

    /// <summary>Full lifecycle throughput (submit, claim, start, result over HTTP), with and without quota checks.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task LifecycleAsync()
    {
        var jobs = options.Quick ? 2000 : 10000;
        var unlimited = new PerBuild<LifecycleResult>();
        var limited = new PerBuild<LifecycleResult>();
        foreach (var (run, build) in EachBuild(Enumerable.Range(0, options.Repeat)))
        {
            // Alternate the order so that neither variant always runs on a warmer machine.
            foreach (var quota in run % 2 == 0 ? new[] { false, true } : [true, false])
            {
                await using var setup = await SingleNodeAsync(build, $"svc_lifecycle_{run}_{(quota ? "quota" : "free")}", requestLimit: quota ? 1_000_000_000 : null);
                var result = await LifecycleRunAsync([setup.Node], setup.Key, jobs, workers: 32, submitters: 16, setup.Database);
                (quota ? limited : unlimited)[build].Add(result);
                Console.WriteLine($"lifecycle run {run} {build.Name} quota={quota}: {result}");
            }
        }
        var u = LifecycleResult.MedianOf(unlimited[options.Ours]);
        var l = LifecycleResult.MedianOf(limited[options.Ours]);
        var overhead = 1 - l.JobsPerSecond / u.JobsPerSecond;
        report.Set("service.lifecycle", new { jobs, workers = 32, submitters = 16, runs = options.Repeat, no_quota = u, quota_checked = l, quota_overhead = overhead });
        report.Table("Full lifecycle throughput (submit → claim → start → result over HTTP)",
            ["account plan", "jobs/s", "SQL statements / job", "WAL bytes / job", "DB CPU ms / job", "node CPU ms / job", "target"],
        [
            ["no limits (quota checks skipped)", Report.Num(u.JobsPerSecond), Report.Num(u.StatementsPerJob, "F1"), Report.Num(u.WalBytesPerJob), Report.Num(u.DbCpuMsPerJob, "F2"), Report.Num(u.NodeCpuMsPerJob, "F2"),
                $"≥ 1,500 jobs/s: {Report.Verdict(u.JobsPerSecond >= 1500)}"],
            ["daily limits raised out of reach (every claim and result checks the quota)", Report.Num(l.JobsPerSecond), Report.Num(l.StatementsPerJob, "F1"), Report.Num(l.WalBytesPerJob), Report.Num(l.DbCpuMsPerJob, "F2"), Report.Num(l.NodeCpuMsPerJob, "F2"),
                $"quota overhead {overhead:P1} (≤ 10%: {Report.Verdict(overhead <= 0.10)})"],
        ],
        $"{jobs} jobs per run from one account, 32 simulated workers and 16 submitting clients on one node; median of {options.Repeat} runs per plan.");
        if (options.Baseline is { } baseline)
        {
            var (bu, bl) = (LifecycleResult.MedianOf(unlimited[baseline]), LifecycleResult.MedianOf(limited[baseline]));
            var baselineOverhead = 1 - bl.JobsPerSecond / bu.JobsPerSecond;
            CompareWithBaseline("Full lifecycle throughput", "service.lifecycle", new { no_quota = bu, quota_checked = bl, quota_overhead = baselineOverhead },
                [.. LifecycleFigures("no limits", u, bu), .. LifecycleFigures("limits out of reach", l, bl),
                    new("quota overhead", overhead, baselineOverhead, HigherIsBetter: false, v => v.ToString("P1", CultureInfo.InvariantCulture))],
                $"The same scenario on each build, alternating, each plan on its own fresh database; median of {options.Repeat} runs per build and plan.");
        }
    }

    /// <summary>Claim latency as the backlog grows: 1k, 100k and 1M pending jobs.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task BacklogAsync()
    {
        int[] sizes = options.Quick ? [1_000, 100_000] : [1_000, 100_000, 1_000_000];
        var rows = new List<string[]>();
        var results = new Dictionary<int, LatencySummary>();
        var baselineResults = new Dictionary<int, LatencySummary>();
        var claims = options.Quick ? 300 : 1000;
        foreach (var (size, build) in EachBuild(sizes))
        {
            // The backlog stays at about `size` while it is measured: the claims and the warm-up come on top.
            await using var setup = await SingleNodeAsync(build, $"svc_backlog_{size}", requestLimit: null);
            var accountId = await database.ScalarAsync(setup.Database, "SELECT max(id) FROM accounts");
            // Ten priorities, spread over the backlog, so the index order matters.
            await database.ExecAsync(setup.Database, $"""
                INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
                SELECT {accountId}, 'pending', '{Model}', 'bench', 'exact', 'backlog', g % 10, 600, now() FROM generate_series(1, {size + claims + 20}) g;
                ANALYZE jobs;
                """);
            var worker = await setup.Node.Grid.NewWorkerAsync(setup.Key, "claimer", Model);
            for (var i = 0; i < 20; i++) await setup.Node.Grid.PollAsync(worker, Model);  // warm up
            var latencies = new Latencies();
            for (var i = 0; i < claims; i++)
            {
                var start = Stopwatch.GetTimestamp();
                _ = await setup.Node.Grid.PollAsync(worker, Model) ?? throw new InvalidOperationException("the backlog ran dry");
                latencies.AddSince(start);
            }
            var measured = build == options.Ours ? results : baselineResults;
            measured[size] = latencies.Summarise();
            Console.WriteLine($"backlog {size} {build.Name}: {measured[size]}");
        }
        var smallest = results[sizes[0]];
        foreach (var size in sizes)
        {
            var r = results[size];
            rows.Add([size.ToString("N0", CultureInfo.InvariantCulture), Report.Ms(r.P50), Report.Ms(r.P95), Report.Ms(r.P99), $"{r.P50 / smallest.P50:F2}×",
                size == sizes[^1] && size >= 1_000_000 ? $"within 2× of 1k: {Report.Verdict(r.P50 <= 2 * smallest.P50)}" : ""]);
        }
        report.Set("service.backlog_claim_latency", results.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value));
        report.Table("Claim latency against backlog size", ["pending jobs", "p50", "p95", "p99", "p50 vs 1k", "target"], rows,
            "One worker polls sequentially; each poll claims at once (GET /worker/jobs/next over HTTP, including authentication). The backlog is one model with ten priorities, inserted with SQL and analysed.");
        if (options.Baseline is { } baseline)
        {
            CompareWithBaseline("Claim latency against backlog size", "service.backlog_claim_latency",
                baselineResults.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value),
                sizes.SelectMany(size => LatencyFigures($"{size.ToString("N0", CultureInfo.InvariantCulture)} pending", results[size], baselineResults[size])),
                "The same scenario on each build, alternating from one size to the next, each size on its own fresh database.");
        }
    }

    /// <summary>
    /// What a pending job's place in the queue costs (issue #16): <c>GET /jobs/{id}</c> of a pending job behind 100,000
    /// others (its <c>queue_position</c> an estimate, its <c>eta_seconds</c> from its dispatcher, its warnings) against the
    /// same GET of a completed job, which carries none of them. This build only: the baseline has no queue position.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "a using declaration; the analyzer does not follow it in async methods")]
    public async Task QueuePositionAsync()
    {
        var backlog = options.Quick ? 10_000 : 100_000;
        var gets = options.Quick ? 300 : 1000;
        await using var setup = await SingleNodeAsync(options.Ours, "svc_queue_position", requestLimit: null);
        var grid = setup.Node.Grid;
        // A completed job, and a worker online for the model (so the pending job's warnings are looked up and empty).
        var worker = await grid.NewWorkerAsync(setup.Key, "finisher", Model);
        var completed = await grid.SubmitAsync(setup.Key, Model);
        _ = await grid.PollAsync(worker, Model) ?? throw new InvalidOperationException("the completed job was not handed out");
        await grid.StartAsync(worker, completed);
        await grid.ResultAsync(worker, completed);
        var accountId = await database.ScalarAsync(setup.Database, "SELECT max(id) FROM accounts");
        // Ten priorities, as in the backlog scenario; the job measured comes last at the lowest, so all are ahead of it.
        await database.ExecAsync(setup.Database, $"""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
            SELECT {accountId}, 'pending', '{Model}', 'bench', 'exact', 'backlog', g % 10, 600, now() FROM generate_series(1, {backlog}) g;
            """);
        // What autovacuum does to a table that grew this much; until then the index-only reads visit the rows too.
        await database.ExecAsync(setup.Database, "VACUUM ANALYZE jobs");
        var pending = await grid.SubmitAsync(setup.Key, Model, priority: 0);
        // Jobs of their own behind the backlog, each asked for once: every GET computes its estimate afresh.
        var fresh = new List<long>();
        for (var i = 0; i < gets / 2; i++) fresh.Add(await grid.SubmitAsync(setup.Key, Model, priority: 0));
        var position = await grid.GetJobAsync(setup.Key, pending) ?? throw new InvalidOperationException("the pending job has no queue_position");
        if (await grid.GetJobAsync(setup.Key, completed) is not null) throw new InvalidOperationException("a completed job has a queue_position");

        var pendingRuns = new List<LatencySummary>();
        var completedRuns = new List<LatencySummary>();
        for (var run = 0; run < options.Repeat; run++)
        {
            // Alternating which goes first, so that drift over the run hits both.
            foreach (var (id, runs) in run % 2 == 0 ? new[] { (pending, pendingRuns), (completed, completedRuns) } : new[] { (completed, completedRuns), (pending, pendingRuns) })
            {
                for (var i = 0; i < 100; i++) await grid.GetJobAsync(setup.Key, id);  // warm up
                var latencies = new Latencies();
                for (var i = 0; i < gets; i++)
                {
                    var start = Stopwatch.GetTimestamp();
                    await grid.GetJobAsync(setup.Key, id);
                    latencies.AddSince(start);
                }
                runs.Add(latencies.Summarise());
                Console.WriteLine($"queue position, {(id == pending ? "pending" : "completed")} job, run {run + 1}: {runs[^1]}");
            }
        }
        var uncachedLatencies = new Latencies();
        foreach (var id in fresh)
        {
            var start = Stopwatch.GetTimestamp();
            await grid.GetJobAsync(setup.Key, id);
            uncachedLatencies.AddSince(start);
        }
        var u = uncachedLatencies.Summarise();
        Console.WriteLine($"queue position, first GET of each of {fresh.Count} pending jobs: {u}");
        // Cold: the first GET of a job when no job of its sets and priority was asked for within the 2 s a node keeps
        // the levels above it, so the whole statement runs.
        // Any request after a pause is slower (caches, a machine shared with others), so a GET of the completed job after
        // the same pause is its measure.
        var coldLatencies = new Latencies();
        var pausedCompletedLatencies = new Latencies();
        for (var i = 0; i < (options.Quick ? 5 : 20); i++)
        {
            var id = await grid.SubmitAsync(setup.Key, Model, priority: 0);
            foreach (var (asked, latencies) in i % 2 == 0 ? new[] { (id, coldLatencies), (completed, pausedCompletedLatencies) } : new[] { (completed, pausedCompletedLatencies), (id, coldLatencies) })
            {
                await Task.Delay(TimeSpan.FromSeconds(2.2));
                var start = Stopwatch.GetTimestamp();
                await grid.GetJobAsync(setup.Key, asked);
                latencies.AddSince(start);
            }
        }
        var k = coldLatencies.Summarise();
        var kc = pausedCompletedLatencies.Summarise();
        Console.WriteLine($"queue position, cold first GET of {k.Count} pending jobs: {k}; the completed job after the same pause: {kc}");
        var p = Median(pendingRuns);
        var c = Median(completedRuns);
        report.Set("service.queue_position", new { backlog, gets, runs = options.Repeat, queue_position = position, pending = p, pending_first_get = u, pending_cold = k, completed_after_pause = kc, completed = c, ratio = p.P50 / c.P50, ratio_first_get = u.P50 / c.P50, ratio_cold = k.P50 / kc.P50 });
        report.Table("Position and ETA cost (issue #16)", ["GET /jobs/{id} of", "p50", "p95", "p99", "max", "p50 vs completed", "target"],
        [
            [$"a pending job behind {backlog.ToString("N0", CultureInfo.InvariantCulture)} others (queue_position {position.ToString("N0", CultureInfo.InvariantCulture)}, eta_seconds, warnings)",
                Report.Ms(p.P50), Report.Ms(p.P95), Report.Ms(p.P99), Report.Ms(p.Max), $"{p.P50 / c.P50:F2}×", $"within 2×: {Report.Verdict(p.P50 <= 2 * c.P50)}"],
            [$"each of {fresh.Count} other pending jobs behind the backlog, asked once in a row (its own level read, the levels above kept)",
                Report.Ms(u.P50), Report.Ms(u.P95), Report.Ms(u.P99), Report.Ms(u.Max), $"{u.P50 / c.P50:F2}×", ""],
            [$"each of {k.Count} more, asked once 2.2 s after the last GET (the whole statement)",
                Report.Ms(k.P50), Report.Ms(k.P95), Report.Ms(k.P99), Report.Ms(k.Max), $"{k.P50 / kc.P50:F2}× the completed job after the same pause", ""],
            ["the completed job, 2.2 s after the last GET", Report.Ms(kc.P50), Report.Ms(kc.P95), Report.Ms(kc.P99), Report.Ms(kc.Max), $"{kc.P50 / c.P50:F2}×", ""],
            ["a completed job (no queue fields)", Report.Ms(c.P50), Report.Ms(c.P95), Report.Ms(c.P99), Report.Ms(c.Max), "1.00×", ""],
        ],
        $"One client, sequential GETs over HTTP with authentication, {gets} per run after 100 to warm up; the run with the median p50 of {options.Repeat} per job. A node keeps an estimate of the jobs ahead for 2 s, and the estimated levels above a priority as long, so the repeated GETs of one job mostly reuse the first, other jobs at that priority read only their own level, and a GET more than 2 s after the last runs the whole statement. The backlog is one model with ten priorities, inserted with SQL, then vacuumed and analysed as autovacuum would.");

        static LatencySummary Median(List<LatencySummary> runs) => runs.OrderBy(r => r.P50).ElementAt(runs.Count / 2);
    }

    /// <summary>Thousands of parked long-polls on one node: memory, idle CPU, database connections, then how fast they all get a job.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task ParkedPollsAsync()
    {
        int[] counts = options.Quick ? [2_000] : [5_000, 10_000];
        var rows = new List<string[]>();
        var figures = new Dictionary<(int Count, CoordinatorBuild Build), ParkedFigures>();
        foreach (var (count, build) in EachBuild(counts))
        {
            await using var setup = await SingleNodeAsync(build, $"svc_parked_{count}", requestLimit: null);
            var node = setup.Node;
            var workerKeys = new string[count];
            await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = 16 },
                async (i, _) => workerKeys[i] = await node.Grid.NewWorkerAsync(setup.Key, $"w{i}", Model));
            var rssBefore = node.RssMegabytes;

            using var stop = new CancellationTokenSource();
            var got = 0;
            var allGot = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            var receivedAt = new long[count];
            var loops = workerKeys.Select(key => node.Grid.WorkAsync(key, Model, a =>
            {
                var n = Interlocked.Increment(ref got);
                receivedAt[n - 1] = a.ReceivedAt;
                if (n == count) allGot.TrySetResult(Stopwatch.GetTimestamp());
                return Task.FromResult(false);  // holds its job
            }, stop.Token)).ToList();

            // Every poll parked, then a window on the idle node.
            await node.Grid.WaitParkedAsync(count);
            var cpuBefore = node.CpuSeconds;
            var idleWindow = TimeSpan.FromSeconds(options.Quick ? 4 : 10);
            // The node's connections, sampled every half second through the window. A connection a poll held would be
            // busy in every sample, so the fewest busy is what the polls hold; the most busy at once is also reported,
            // with what was running (the node's periodic duties run statements now and then).
            var windowStart = Stopwatch.GetTimestamp();
            var (heldByPolls, mostBusy, open) = (int.MaxValue, 0, 0);
            var busyStatements = new HashSet<string>(StringComparer.Ordinal);
            using var sampling = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
            do
            {
                var (busy, opened) = await ConnectionsAsync(setup.Database);
                (heldByPolls, mostBusy, open) = (Math.Min(heldByPolls, busy.Count), Math.Max(mostBusy, busy.Count), opened);
                busyStatements.UnionWith(busy);
            }
            while (Stopwatch.GetElapsedTime(windowStart) < idleWindow && await sampling.WaitForNextTickAsync());
            foreach (var statement in busyStatements) Console.WriteLine($"parked {count} {build.Name}: busy at a sample: {statement}");
            var idleCpu = (node.CpuSeconds - cpuBefore) / Stopwatch.GetElapsedTime(windowStart).TotalSeconds;
            var rss = node.RssMegabytes;

            // Now the work arrives: as many jobs as parked polls, from 32 clients.
            var started = Stopwatch.GetTimestamp();
            var next = 0;
            await Parallel.ForAsync(0, 32, async (_, _) =>
            {
                while (Interlocked.Increment(ref next) <= count) await node.Grid.SubmitAsync(setup.Key, Model);
            });
            var finished = await allGot.Task.WaitAsync(TimeSpan.FromMinutes(2));
            var allHoldAJob = Stopwatch.GetElapsedTime(started, finished).TotalMilliseconds;
            var waits = new Latencies();
            foreach (var at in receivedAt) waits.Add(Stopwatch.GetElapsedTime(started, at).TotalMilliseconds);
            Console.WriteLine($"parked {count} {build.Name}: time from the first submission to each poll's job: {waits.Summarise()}");
            await stop.CancelAsync();
            await Task.WhenAll(loops);

            Console.WriteLine($"parked {count} {build.Name}: rss {rss:F0} MB (before polls {rssBefore:F0}), idle cpu {idleCpu:P1}, connections busy {heldByPolls} (at most {mostBusy}) of {open} open, all hold a job after {allHoldAJob:F0} ms");
            report.Set(build == options.Ours ? $"service.parked_polls.{count}" : $"service.parked_polls.baseline.{count}", new { rss_mb = rss, rss_mb_before_polls = rssBefore, idle_cpu_cores = idleCpu, busy_connections_fewest = heldByPolls,
                busy_connections_most = mostBusy, open_connections = open, all_hold_a_job_ms = allHoldAJob });
            figures[(count, build)] = new ParkedFigures(rss, idleCpu, heldByPolls, mostBusy, open, allHoldAJob);
            if (build != options.Ours) continue;
            var rssTarget = count >= 10_000 ? 500 : 300;
            rows.Add([count.ToString("N0", CultureInfo.InvariantCulture), $"{rss:F0} MB", $"{idleCpu * 100:F1}% of a core",
                $"{heldByPolls} (at most {mostBusy} at once)", open.ToString(CultureInfo.InvariantCulture), $"{allHoldAJob:F0} ms",
                $"< {rssTarget} MB: {Report.Verdict(rss < rssTarget)}; 0 connections held: {Report.Verdict(heldByPolls == 0)}"]);
        }
        report.Table("Parked long-polls on one node", ["parked polls", "node RSS", "node CPU while parked", "DB connections busy", "DB connections open (idle pool + listener)", "until all hold a job", "target"], rows,
            "Every poll is a different registered worker with its own key. 'Busy' counts the node's client backends that are not idle (active or in a transaction), sampled every 0.5 s while the polls are parked: the fewest in any sample (a connection a poll held would be busy in all of them), and the most at once (a periodic duty's statement); the open ones are Npgsql's idle pool and the silo's membership connections, which no poll holds. Then as many jobs as polls are submitted over HTTP by 32 clients.");
        if (options.Baseline is { } baseline)
        {
            CompareWithBaseline("Parked long-polls on one node", "service.parked_polls", baselineFigures: null,
                counts.SelectMany(count => ParkedFigures.Compare(count.ToString("N0", CultureInfo.InvariantCulture), figures[(count, options.Ours)], figures[(count, baseline)])),
                "The same scenario on each build, alternating from one count to the next, each on its own fresh database.");
        }
    }

    /// <summary>With 10,000 low-priority jobs queued and workers busy, how long a high-priority job waits.</summary>
    public async Task PriorityAsync()
    {
        var measured = new Dictionary<CoordinatorBuild, (LatencySummary High, LatencySummary Posts, long Remaining)>();
        foreach (var build in Builds(0)) measured[build] = await PriorityRunAsync(build);
        var (r, p, remaining) = measured[options.Ours];
        report.Set("service.priority", new { high_priority = r, post_round_trip = p, backlog_left = remaining });
        report.Table("Priority under load", ["high-priority jobs", "p50", "p95", "p99", "max", "of which POST /jobs round trip (p50 / max)", "low-priority backlog at the end", "target"],
        [[r.Count.ToString(CultureInfo.InvariantCulture), Report.Ms(r.P50), Report.Ms(r.P95), Report.Ms(r.P99), Report.Ms(r.Max), $"{Report.Ms(p.P50)} / {Report.Ms(p.Max)}",
            remaining.ToString("N0", CultureInfo.InvariantCulture), $"dispatched within 50 ms: {Report.Verdict(r.Max <= 50)} (max)"]],
            "10,000 priority-0 jobs queued; 32 workers busy draining them (each job 'runs' 20 ms); one priority-100 job submitted every 100 ms; from POST sent to a worker's poll returning it. " +
            "Three high-priority jobs go first, unmeasured, so that the node's submit path is compiled (the backlog went in with SQL).");
        if (options.Baseline is { } baseline)
        {
            var (br, bp, bRemaining) = measured[baseline];
            CompareWithBaseline("Priority under load", "service.priority", new { high_priority = br, post_round_trip = bp, backlog_left = bRemaining },
                [.. LatencyFigures("high-priority job, POST sent → poll returning it", r, br), .. LatencyFigures("POST /jobs round trip", p, bp),
                    new("low-priority backlog at the end (fewer: more drained)", remaining, bRemaining, HigherIsBetter: false, v => Report.Num(v, "N0"))],
                "The same scenario on each build, ours first, each on its own fresh database.");
        }
    }

    private async Task<(LatencySummary High, LatencySummary Posts, long Remaining)> PriorityRunAsync(CoordinatorBuild build)
    {
        await using var setup = await SingleNodeAsync(build, "svc_priority", requestLimit: null);
        var accountId = await database.ScalarAsync(setup.Database, "SELECT max(id) FROM accounts");
        await database.ExecAsync(setup.Database, $"""
            INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
            SELECT {accountId}, 'pending', '{Model}', 'bench', 'exact', 'low', 0, 600, now() FROM generate_series(1, 10000);
            ANALYZE jobs;
            """);
        var grid = setup.Node.Grid;
        var workers = await Task.WhenAll(Enumerable.Range(0, 32).Select(i => grid.NewWorkerAsync(setup.Key, $"w{i}", Model)));
        var latencies = new Latencies();
        using var stop = new CancellationTokenSource();
        var loops = workers.Select(key => grid.WorkAsync(key, Model, async a =>
        {
            if (a.Prompt.StartsWith("high:", StringComparison.Ordinal)) latencies.Add(Stopwatch.GetElapsedTime(long.Parse(a.Prompt[5..], CultureInfo.InvariantCulture), a.ReceivedAt).TotalMilliseconds);
            await grid.StartAsync(key, a.JobId);
            await Task.Delay(20);  // the model "runs" for 20 ms, so the backlog lasts
            await grid.ResultAsync(key, a.JobId);
            return true;
        }, stop.Token)).ToList();

        // The workers are busy draining the backlog before the first high-priority job arrives.
        await Until.TrueAsync(async () => await database.ScalarAsync(setup.Database, "SELECT count(*) FROM jobs WHERE status = 'completed'") >= 2 * workers.Length,
            "the workers are draining the backlog");
        // The node's first submissions run code paths not yet compiled (the backlog went in with SQL): warm them up with
        // three high-priority jobs that are not measured.
        for (var i = 0; i < 3; i++) await grid.SubmitAsync(setup.Key, Model, priority: 100, prompt: "warm-up");
        await Until.TrueAsync(async () => await database.ScalarAsync(setup.Database, "SELECT count(*) FROM jobs WHERE priority = 100 AND status <> 'pending'") == 3,
            "the warm-up jobs were dispatched");
        var posts = new Latencies();
        for (var i = 0; i < 40; i++)
        {
            var sent = Stopwatch.GetTimestamp();
            await grid.SubmitAsync(setup.Key, Model, priority: 100, prompt: "high:" + sent.ToString(CultureInfo.InvariantCulture));
            posts.AddSince(sent);
            await Task.Delay(100);
        }
        await Until.TrueAsync(() => latencies.Count == 40, "every high-priority job was dispatched");
        var remaining = await database.ScalarAsync(setup.Database, "SELECT count(*) FROM jobs WHERE status = 'pending'");
        await stop.CancelAsync();
        await Task.WhenAll(loops);
        var r = latencies.Summarise();
        var p = posts.Summarise();
        Console.WriteLine($"priority {build.Name}: {r}, low-priority backlog left {remaining}; POST /jobs round trip {p}");
        return (r, p, remaining);
    }

    /// <summary>1, 2 and 3 nodes against one database: throughput, and dispatch latency across nodes.</summary>
    public async Task ScaleOutAsync()
    {
        var jobs = options.Quick ? 2000 : 10000;
        var rows = new List<string[]>();
        var measured = new Dictionary<(int Nodes, CoordinatorBuild Build), (LifecycleResult Throughput, LatencySummary CrossNode)>();
        int[] nodeCounts = [1, 2, 3];
        foreach (var (nodeCount, build) in EachBuild(nodeCounts))
        {
            var db = await database.CreateAsync($"svc_scale_{nodeCount}{build.DatabaseSuffix}");
            var nodes = new List<NodeProcess>();
            try
            {
                // A node of the new build is a silo of one cluster on this database, on ports of its own (NodeProcess); pg-engine's ignore them.
                for (var i = 0; i < nodeCount; i++) nodes.Add(await NodeProcess.StartAsync(build.Dll, db, http, cpus: null));
                var key = await SignUpUnlimitedAsync(nodes[0].Grid, db, requestLimit: null);
                var throughput = await LifecycleRunAsync(nodes, key, jobs, workers: 32, submitters: 16, db);
                // Workers parked on the last node, jobs submitted on the first.
                var (_, crossNode) = await SequentialDispatchAsync(nodes[0].Grid, nodes[^1].Grid, key, parked: 20, options.Quick ? 200 : 500);
                Console.WriteLine($"scale-out {nodeCount} {build.Name}: {throughput}; cross-node {crossNode}");
                report.Set(build == options.Ours ? $"service.scale_out.{nodeCount}" : $"service.scale_out.baseline.{nodeCount}", new { throughput, cross_node_dispatch = crossNode });
                measured[(nodeCount, build)] = (throughput, crossNode);
                if (build != options.Ours) continue;
                rows.Add([nodeCount.ToString(CultureInfo.InvariantCulture), Report.Num(throughput.JobsPerSecond), Report.Num(throughput.StatementsPerJob, "F1"), Report.Num(throughput.WalBytesPerJob),
                    Report.Num(throughput.DbCpuMsPerJob, "F2"), Report.Ms(crossNode.P50), Report.Ms(crossNode.P99)]);
            }
            finally
            {
                foreach (var node in nodes) await node.DisposeAsync();
            }
        }
        report.Table("Scale-out: nodes on one database (all on this 2-core machine)",
            ["nodes", "jobs/s", "SQL statements / job", "WAL bytes / job", "DB CPU ms / job", "dispatch p50 (submit on node 1, worker on the last)", "p99"], rows,
            "Nodes, PostgreSQL and the load generator share the same two cores, so more nodes cannot add throughput here; the figures show the cost of coordination (wakes between silos through the dispatcher grains; pg-engine: NOTIFY) rather than capacity. The database-bound ceiling is computed in BENCHMARKS.md from statements and DB CPU per job.");
        if (options.Baseline is { } baseline)
        {
            CompareWithBaseline("Scale-out: nodes on one database", "service.scale_out", baselineFigures: null,
                nodeCounts.SelectMany(n => (IEnumerable<Compared>)
                [
                    .. LifecycleFigures($"{n} node{(n == 1 ? "" : "s")}", measured[(n, options.Ours)].Throughput, measured[(n, baseline)].Throughput),
                    .. LatencyFigures($"{n} node{(n == 1 ? "" : "s")}, dispatch across nodes", measured[(n, options.Ours)].CrossNode, measured[(n, baseline)].CrossNode),
                ]),
                "The same scenario on each build, alternating from one node count to the next, each on its own fresh database.");
        }
    }

    /// <summary>Sequential jobs submitted on one node to workers parked on another (or the same).</summary>
    private static async Task<(LatencySummary FromReturn, LatencySummary FromSend)> SequentialDispatchAsync(HttpGrid submitNode, HttpGrid workerNode, string key, int parked, int jobs)
    {
        var workers = await Task.WhenAll(Enumerable.Range(0, parked).Select(i => workerNode.NewWorkerAsync(key, $"parked{i}-{Guid.NewGuid():N}", Model)));
        var received = Channel.CreateUnbounded<Assignment>();
        using var stop = new CancellationTokenSource();
        var loops = workers.Select(worker => workerNode.WorkAsync(worker, Model, async a =>
        {
            received.Writer.TryWrite(a);
            await workerNode.StartAsync(worker, a.JobId);
            await workerNode.ResultAsync(worker, a.JobId);
            return true;
        }, stop.Token)).ToList();
        await workerNode.WaitParkedAsync(parked);

        var fromReturn = new Latencies();
        var fromSend = new Latencies();
        for (var i = 0; i < jobs + 20; i++)
        {
            var sent = Stopwatch.GetTimestamp();
            var id = await submitNode.SubmitAsync(key, Model, prompt: sent.ToString(CultureInfo.InvariantCulture));
            var returned = Stopwatch.GetTimestamp();
            var assignment = await received.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(40));
            if (assignment.JobId != id) throw new InvalidOperationException($"expected job {id}, a worker got {assignment.JobId}");
            if (i < 20) continue;  // warm-up
            fromReturn.Add(Stopwatch.GetElapsedTime(returned, assignment.ReceivedAt).TotalMilliseconds);
            fromSend.Add(Stopwatch.GetElapsedTime(sent, assignment.ReceivedAt).TotalMilliseconds);
            await Task.Delay(2);  // let the worker that took it report and park again
        }
        await stop.CancelAsync();
        await Task.WhenAll(loops);
        return (fromReturn.Summarise(), fromSend.Summarise());
    }

    /// <summary>Clients submit <paramref name="jobs"/> jobs while simulated workers run the whole cycle on them; spread over the nodes.</summary>
    private async Task<LifecycleResult> LifecycleRunAsync(List<NodeProcess> nodes, string key, int jobs, int workers, int submitters, string db)
    {
        var workerKeys = await Task.WhenAll(Enumerable.Range(0, workers).Select(i => nodes[i % nodes.Count].Grid.NewWorkerAsync(key, $"cycle{i}", Model)));
        using var stop = new CancellationTokenSource();
        var completed = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var loops = workerKeys.Select((worker, i) => Task.Run(async () =>
        {
            var grid = nodes[i % nodes.Count].Grid;
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    if (await grid.CycleAsync(worker, Model, stop.Token) is not null && Interlocked.Increment(ref completed) == jobs) done.TrySetResult();
                }
                catch (Exception) when (stop.IsCancellationRequested)
                {
                    return;
                }
            }
        })).ToList();
        foreach (var group in workerKeys.Select((_, i) => nodes[i % nodes.Count]).GroupBy(n => n)) await group.Key.Grid.WaitParkedAsync(group.Count());

        var name = new Npgsql.NpgsqlConnectionStringBuilder(db).Database!;
        await database.ResetStatementsAsync();
        var before = await database.SnapshotAsync(name);
        var nodeCpu = nodes.Sum(n => n.CpuSeconds);
        var started = Stopwatch.GetTimestamp();
        var next = 0;
        await Parallel.ForAsync(0, submitters, async (s, _) =>
        {
            var grid = nodes[s % nodes.Count].Grid;
            while (Interlocked.Increment(ref next) <= jobs) await grid.SubmitAsync(key, Model);
        });
        await done.Task.WaitAsync(TimeSpan.FromMinutes(10));
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var nodeCpuUsed = nodes.Sum(n => n.CpuSeconds) - nodeCpu;
        var cost = await database.CostSinceAsync(name, before);
        foreach (var line in await database.TopStatementsAsync(name, jobs)) Console.WriteLine($"    {line}");
        await stop.CancelAsync();
        await Task.WhenAll(loops);
        return new LifecycleResult(jobs / seconds, cost.StatementsPer(jobs), cost.WalBytesPer(jobs), cost.CpuSecondsPer(jobs) * 1000, nodeCpuUsed * 1000 / jobs);
    }

    /// <summary>The node's client backends (autovacuum workers also show under the database): what the busy ones run, and how many are open.</summary>
    private async Task<(List<string> Busy, int Open)> ConnectionsAsync(string db)
    {
        await using var connection = new Npgsql.NpgsqlConnection(database.Admin);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("""
            SELECT state IS DISTINCT FROM 'idle', left(regexp_replace(query, '\s+', ' ', 'g'), 100)
            FROM pg_stat_activity WHERE datname = @name AND backend_type = 'client backend'
            """, connection);
        command.Parameters.AddWithValue("name", new Npgsql.NpgsqlConnectionStringBuilder(db).Database!);
        var (busy, open) = (new List<string>(), 0);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            open++;
            if (reader.GetBoolean(0)) busy.Add(reader.GetString(1));
        }
        return (busy, open);
    }

    /// <summary>A fresh database and one node on it (pinned to <see cref="BenchOptions.NodeCpus"/>), with <paramref name="settings"/> in its environment.</summary>
    private async Task<SingleNode> SingleNodeAsync(CoordinatorBuild build, string name, int? requestLimit, IDictionary<string, string>? settings = null)
    {
        var db = await database.CreateAsync(name + build.DatabaseSuffix);
#pragma warning disable CA2000 // the SingleNode returned owns the node; the catch disposes it otherwise
        var node = await NodeProcess.StartAsync(build.Dll, db, http, options.NodeCpus, settings);
#pragma warning restore CA2000
        try
        {
            var key = await SignUpUnlimitedAsync(node.Grid, db, requestLimit);
            return new SingleNode(node, db, key);
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Signs up an account and moves it to a plan: with no limits (quota checks skipped), or with limits raised out
    /// of reach (every claim and result checks them).
    /// </summary>
    private async Task<string> SignUpUnlimitedAsync(HttpGrid grid, string db, int? requestLimit)
    {
        var (accountId, key) = await grid.SignUpAsync("bench");
        var plan = requestLimit is null ? "bench-unlimited" : "bench-raised";
        var limits = requestLimit is null ? "NULL, NULL" : $"{requestLimit}, 1000000000000";
        await database.ExecAsync(db, $"""
            INSERT INTO plans (id, name, daily_requests, daily_tokens) VALUES ('{plan}', '{plan}', {limits}) ON CONFLICT (id) DO NOTHING;
            UPDATE accounts SET plan = '{plan}' WHERE id = {accountId};
            """);
        return key;
    }

    private sealed record SingleNode(NodeProcess Node, string Database, string Key) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Node.DisposeAsync();
    }

    /// <summary>
    /// The builds to measure at the <paramref name="turn"/>th repetition (or size): ours then the baseline on even
    /// turns, the other way round on odd ones, so that the machine's drift over a run hits both.
    /// </summary>
    private CoordinatorBuild[] Builds(int turn) => options.Baseline is not { } baseline ? [options.Ours]
        : turn % 2 == 0 ? [options.Ours, baseline] : [baseline, options.Ours];

    /// <summary>Each item with each build, in the order of <see cref="Builds"/>.</summary>
    private IEnumerable<(T Item, CoordinatorBuild Build)> EachBuild<T>(IEnumerable<T> items) =>
        items.SelectMany((item, turn) => Builds(turn).Select(build => (item, build)));

    /// <summary>
    /// Our figures beside the baseline's, each with its ratio: a table, and in the JSON the baseline's own figures under
    /// <paramref name="path"/>.baseline (unless the scenario wrote them there itself) and the ratios under <paramref name="path"/>.vs_baseline.
    /// </summary>
    private void CompareWithBaseline(string section, string path, object? baselineFigures, IEnumerable<Compared> figures, string note)
    {
        var baseline = options.Baseline ?? throw new InvalidOperationException("no baseline was measured");
        var list = figures.ToList();
        if (baselineFigures is not null) report.Set($"{path}.baseline", baselineFigures);
        report.Set($"{path}.vs_baseline", list.Select(f => new { figure = f.Figure, ours = Finite(f.Ours), baseline = Finite(f.Baseline), ratio = f.Ratio }));
        report.Table($"{section}: this build beside {options.BaselineDescription}",
            ["figure", "this build", baseline.Name, $"ratio, > 1 is better for this build (ours ÷ {baseline.Name} for throughput; {baseline.Name} ÷ ours for latency, costs and resources)"],
            list.Select(f => new[] { f.Figure, f.Format(f.Ours), f.Format(f.Baseline), f.RatioText }), note);

        static double? Finite(double value) => double.IsFinite(value) ? value : null;
    }

    private static IEnumerable<Compared> LatencyFigures(string what, LatencySummary ours, LatencySummary baseline) =>
    [
        new($"{what}: p50", ours.P50, baseline.P50, HigherIsBetter: false, Report.Ms),
        new($"{what}: p95", ours.P95, baseline.P95, HigherIsBetter: false, Report.Ms),
        new($"{what}: p99", ours.P99, baseline.P99, HigherIsBetter: false, Report.Ms),
        new($"{what}: max", ours.Max, baseline.Max, HigherIsBetter: false, Report.Ms),
    ];

    private static IEnumerable<Compared> LifecycleFigures(string what, LifecycleResult ours, LifecycleResult baseline) =>
    [
        new($"{what}: jobs/s", ours.JobsPerSecond, baseline.JobsPerSecond, HigherIsBetter: true, v => Report.Num(v)),
        new($"{what}: SQL statements / job", ours.StatementsPerJob, baseline.StatementsPerJob, HigherIsBetter: false, v => Report.Num(v, "F1")),
        new($"{what}: WAL bytes / job", ours.WalBytesPerJob, baseline.WalBytesPerJob, HigherIsBetter: false, v => Report.Num(v)),
        new($"{what}: DB CPU ms / job", ours.DbCpuMsPerJob, baseline.DbCpuMsPerJob, HigherIsBetter: false, v => Report.Num(v, "F2")),
        new($"{what}: node CPU ms / job", ours.NodeCpuMsPerJob, baseline.NodeCpuMsPerJob, HigherIsBetter: false, v => Report.Num(v, "F2")),
    ];

    /// <summary>Each build's runs of one figure.</summary>
    private sealed class PerBuild<T>
    {
        private readonly Dictionary<CoordinatorBuild, List<T>> _runs = [];

        public List<T> this[CoordinatorBuild build] => _runs.TryGetValue(build, out var runs) ? runs : _runs[build] = [];
    }
}

/// <summary>One figure of both builds; <paramref name="HigherIsBetter"/> turns its ratio so that above 1 is better for ours either way.</summary>
public sealed record Compared(string Figure, double Ours, double Baseline, bool HigherIsBetter, Func<double, string> Format)
{
    /// <summary>Null where a ratio says nothing: a figure at or below zero on either side (dispatch measured from POST returning can be negative).</summary>
    public double? Ratio => Ours > 0 && Baseline > 0 && double.IsFinite(Ours) && double.IsFinite(Baseline) ? (HigherIsBetter ? Ours / Baseline : Baseline / Ours) : null;

    public string RatioText => Ratio is { } ratio ? ratio.ToString("F2", CultureInfo.InvariantCulture) + "×" : Ours.Equals(Baseline) ? "equal" : "n/a";
}

/// <summary>What one count of parked polls cost a build.</summary>
public sealed record ParkedFigures(double RssMegabytes, double IdleCpuCores, int BusyFewest, int BusyMost, int Open, double AllHoldAJobMs)
{
    public static IEnumerable<Compared> Compare(string count, ParkedFigures ours, ParkedFigures baseline) =>
    [
        new($"{count} parked: node RSS MB", ours.RssMegabytes, baseline.RssMegabytes, HigherIsBetter: false, v => Report.Num(v)),
        new($"{count} parked: node CPU while parked, % of a core", ours.IdleCpuCores * 100, baseline.IdleCpuCores * 100, HigherIsBetter: false, v => Report.Num(v, "F1")),
        new($"{count} parked: DB connections busy, fewest in a sample", ours.BusyFewest, baseline.BusyFewest, HigherIsBetter: false, v => Report.Num(v)),
        new($"{count} parked: DB connections busy, most at once", ours.BusyMost, baseline.BusyMost, HigherIsBetter: false, v => Report.Num(v)),
        new($"{count} parked: DB connections open", ours.Open, baseline.Open, HigherIsBetter: false, v => Report.Num(v)),
        new($"{count} parked: until all hold a job", ours.AllHoldAJobMs, baseline.AllHoldAJobMs, HigherIsBetter: false, Report.Ms),
    ];
}

public sealed record LifecycleResult(double JobsPerSecond, double StatementsPerJob, double WalBytesPerJob, double DbCpuMsPerJob, double NodeCpuMsPerJob)
{
    public override string ToString() =>
        $"{JobsPerSecond:F0} jobs/s, {StatementsPerJob:F1} statements/job, {WalBytesPerJob:F0} WAL bytes/job, DB CPU {DbCpuMsPerJob:F2} ms/job, node CPU {NodeCpuMsPerJob:F2} ms/job";

    public static LifecycleResult MedianOf(IReadOnlyList<LifecycleResult> runs) => new(
        LatencySummary.Median(runs.Select(r => r.JobsPerSecond)), LatencySummary.Median(runs.Select(r => r.StatementsPerJob)),
        LatencySummary.Median(runs.Select(r => r.WalBytesPerJob)), LatencySummary.Median(runs.Select(r => r.DbCpuMsPerJob)),
        LatencySummary.Median(runs.Select(r => r.NodeCpuMsPerJob)));
}
