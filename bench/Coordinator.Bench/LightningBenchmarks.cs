using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Coordinator.Bench;

/// <summary>
/// <c>lightning</c> (issue #18): the Lightning agent API under <c>/api</c> in stub mode, on this build only (pg-engine has
/// none of it). Three figures:
/// <list type="number">
/// <item>a pay-per-job job end to end (<see cref="AgentJobsAsync"/>), from <c>POST /api/jobs</c> to the GET that says
/// <c>complete</c>, with both invoices paid through the stub's development route and a client that polls its job;</item>
/// <item>a session request (<see cref="AgentSessionsAsync"/>), its eval and work grid jobs and its debit, beside the
/// Grid API's own lifecycle of one job in the same run, so that what the session adds shows;</item>
/// <item>the Gemini conversation's SSE relay (<see cref="GeminiRelayAsync"/>): a worker's chunk to the client's byte, on
/// one silo and across two, beside the Grid API's <c>/jobs/{id}/stream</c> in the same run.</item>
/// </list>
/// The agent's workers are simulated here like the other scenarios' workers: they long-poll the Grid worker API for both
/// of the agent's models and answer at once, the eval model with a verdict <c>AgentEval.Parse</c> accepts.
/// </summary>
public sealed partial class ServiceBenchmarks
{
    /// <summary>The agent's eval model on the bench's nodes (tagged, so exact-matched); its work model is <see cref="Model"/>.</summary>
    private const string EvalModel = "bench-eval:1";

    /// <summary>What the simulated eval model answers: an acceptance with a small estimate (a work invoice of a few sats).</summary>
    private const string Verdict = """{"accept": true, "reason": "a fair request", "estimated_tokens": 10}""";

    /// <summary>Concurrent clients of the pay-per-job and session scenarios (issue #18 asks for 50).</summary>
    private const int AgentClients = 50;

    /// <summary>Simulated workers serving both of the agent's models.</summary>
    private const int AgentWorkers = 32;

    /// <summary>How long a pay-per-job client waits between two reads of its job (each read also moves the job on).</summary>
    private const int AgentPollMs = 5;

    /// <summary>Each session's deposit: the spec's largest, enough for hundreds of requests at about 11 sats each.</summary>
    private const long SessionDepositSats = 10_000;

    /// <summary>
    /// The nodes' settings for the agent: a host that is not Production (the stub's pay route exists only then; with no
    /// <c>Lightning:LnbitsUrl</c> the node is the stub), and the agent's models. The BTC price is the fallback (no source).
    /// </summary>
    private static Dictionary<string, string> AgentSettings() => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Bench",
        ["Lightning__Agent__EvalModel"] = EvalModel,
        ["Lightning__Agent__WorkModel"] = Model,
    };

    /// <summary>
    /// Pay-per-job end to end: <see cref="AgentClients"/> clients at once, each running jobs one after another: create,
    /// pay the eval invoice, read the job every <see cref="AgentPollMs"/> ms until it awaits its work payment, pay that,
    /// read until complete. Latency from the first request (the POST leaving) to the read that says complete.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "a using declaration; the analyzer does not follow it in async methods")]
    public async Task AgentJobsAsync()
    {
        var jobs = options.Quick ? 200 : 1000;
        var warmUp = AgentClients * 2;
        var runs = new List<AgentJobsRun>();
        for (var run = 0; run < options.Repeat; run++)
        {
            await using var setup = await SingleNodeAsync(options.Ours, $"svc_ln_jobs_{run}", requestLimit: null, AgentSettings());
            var grid = setup.Node.Grid;
            using var stop = new CancellationTokenSource();
            var loops = await StartAgentWorkersAsync(grid, setup.Key, stop.Token);

            _ = await PayPerJobAsync(grid, warmUp);
            var (cost, nodeCpuMs, seconds, measured) = await MeasureAsync(setup, jobs, () => PayPerJobAsync(grid, jobs));
            var complete = await database.ScalarAsync(setup.Database, "SELECT count(*) FROM lightning_agent_jobs WHERE state = 'complete'");
            await stop.CancelAsync();
            await Task.WhenAll(loops);
            if (complete != warmUp + jobs) throw new InvalidOperationException($"{complete} Lightning jobs complete of {warmUp + jobs}");

            var result = new AgentJobsRun(measured.Total.Summarise(), measured.ToQuote.Summarise(), measured.ToComplete.Summarise(), jobs / seconds,
                (double)measured.Reads / jobs, cost.StatementsPer(jobs), cost.WalBytesPer(jobs), cost.CpuSecondsPer(jobs) * 1000, nodeCpuMs);
            runs.Add(result);
            Console.WriteLine($"lightning pay-per-job run {run}: first request → complete {result.Total}; {result.JobsPerSecond:F0} jobs/s, {result.ReadsPerJob:F1} reads/job, " +
                $"{result.StatementsPerJob:F1} statements/job, {result.WalBytesPerJob:F0} WAL bytes/job, DB CPU {result.DbCpuMsPerJob:F2} ms/job, node CPU {result.NodeCpuMsPerJob:F2} ms/job");
        }
        var total = LatencySummary.MedianOf([.. runs.Select(r => r.Total)]);
        var toQuote = LatencySummary.MedianOf([.. runs.Select(r => r.ToQuote)]);
        var toComplete = LatencySummary.MedianOf([.. runs.Select(r => r.ToComplete)]);
        double Median(Func<AgentJobsRun, double> figure) => LatencySummary.Median(runs.Select(figure));
        var (rate, reads, statements, wal, dbCpu, nodeCpu) = (Median(r => r.JobsPerSecond), Median(r => r.ReadsPerJob), Median(r => r.StatementsPerJob),
            Median(r => r.WalBytesPerJob), Median(r => r.DbCpuMsPerJob), Median(r => r.NodeCpuMsPerJob));
        report.Set("service.lightning.pay_per_job", new
        {
            jobs, clients = AgentClients, workers = AgentWorkers, poll_interval_ms = AgentPollMs, runs = options.Repeat, first_request_to_complete = total,
            first_request_to_quote = toQuote, work_paid_to_complete = toComplete, jobs_per_second = rate, reads_per_job = reads, statements_per_job = statements,
            wal_bytes_per_job = wal, db_cpu_ms_per_job = dbCpu, node_cpu_ms_per_job = nodeCpu,
        });
        report.Table("Lightning pay-per-job end to end, stub mode (issue #18)", ["from → to", "p50", "p95", "p99", "max"],
        [
            ["POST /api/jobs sent → GET /api/jobs/{id} says complete", Report.Ms(total.P50), Report.Ms(total.P95), Report.Ms(total.P99), Report.Ms(total.Max)],
            ["POST /api/jobs sent → GET says awaiting_work_payment (eval paid and run)", Report.Ms(toQuote.P50), Report.Ms(toQuote.P95), Report.Ms(toQuote.P99), Report.Ms(toQuote.Max)],
            ["work invoice paid → GET says complete", Report.Ms(toComplete.P50), Report.Ms(toComplete.P95), Report.Ms(toComplete.P99), Report.Ms(toComplete.Max)],
        ],
        $"{jobs} jobs per run from {AgentClients} concurrent clients (each runs its jobs one after another), {AgentWorkers} simulated workers serving the eval and the work model and answering at once, one node; median of {options.Repeat} runs. " +
        $"Each job: POST /api/jobs, POST /api/dev/stub/pay/{{eval hash}}, GET /api/jobs/{{id}} until awaiting_work_payment, pay the work hash, GET until complete; the client reads its job at once after each payment and then every {AgentPollMs} ms (a delay after each answer).");
        report.Table("Lightning pay-per-job: what a job costs", ["jobs/s", "GET /api/jobs/{id} per job", "SQL statements / job", "WAL bytes / job", "DB CPU ms / job", "node CPU ms / job"],
            [[Report.Num(rate), Report.Num(reads, "F1"), Report.Num(statements, "F1"), Report.Num(wal), Report.Num(dbCpu, "F2"), Report.Num(nodeCpu, "F2")]],
            "Everything the node and the database did in the measured window, divided by the jobs: the two grid jobs (eval and work), the two stub invoices and their payments, and every read of the job (each moves it on, and a read of a job waiting on a grid job or an invoice checks it).");
    }

    /// <summary>
    /// Session requests against the Grid API's lifecycle, on one node in the same run: <see cref="AgentClients"/> clients,
    /// each with its own session (opened, its deposit paid, its macaroon read), sending requests one after another; then
    /// (or first, turn about) as many clients each submitting a job (<c>POST /api/v1/jobs</c>) and reading its stream to its
    /// end. A session request runs two grid jobs (eval and work) and debits the session; the difference to two grid jobs is
    /// what sessions add.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "a using declaration; the analyzer does not follow it in async methods")]
    public async Task AgentSessionsAsync()
    {
        var requests = options.Quick ? 500 : 2000;
        var warmUp = AgentClients * 2;
        var sessionRuns = new List<PerRequest>();
        var gridRuns = new List<PerRequest>();
        var stalls = new List<SessionStalls>();
        for (var run = 0; run < options.Repeat; run++)
        {
            await using var setup = await SingleNodeAsync(options.Ours, $"svc_ln_sessions_{run}", requestLimit: null, AgentSettings());
            var grid = setup.Node.Grid;
            using var stop = new CancellationTokenSource();
            var loops = await StartAgentWorkersAsync(grid, setup.Key, stop.Token);
            var sessions = await Task.WhenAll(Enumerable.Range(0, AgentClients).Select(async _ =>
            {
                var (id, hash) = await grid.OpenSessionAsync(SessionDepositSats);
                await grid.StubPayAsync(hash);
                var (state, macaroon) = await grid.GetSessionAsync(id);
                return state == "active" && macaroon is not null ? (Id: id, Macaroon: macaroon) : throw new InvalidOperationException($"session {id} is {state} after its deposit was paid");
            }));

            _ = await SessionRequestsAsync(grid, sessions, warmUp);
            _ = await GridJobsAsync(grid, setup.Key, warmUp);
            foreach (var sessionsFirst in run % 2 == 0 ? new[] { true, false } : [false, true])
            {
                var (cost, nodeCpuMs, seconds, latencies) = await MeasureAsync(setup, requests,
                    () => sessionsFirst ? SessionRequestsAsync(grid, sessions, requests) : GridJobsAsync(grid, setup.Key, requests));
                var result = new PerRequest(latencies.Summarise(), requests / seconds, cost.StatementsPer(requests), cost.WalBytesPer(requests), cost.CpuSecondsPer(requests) * 1000, nodeCpuMs);
                (sessionsFirst ? sessionRuns : gridRuns).Add(result);
                Console.WriteLine($"lightning sessions run {run}, {(sessionsFirst ? "session requests" : "grid jobs")}: {result}");
            }
            var debited = await database.ScalarAsync(setup.Database, "SELECT count(*) FROM lightning_session_requests WHERE state = 'complete' AND debited_sats > 0");
            stalls.Add(await SessionStallsAsync(setup.Database));
            Console.WriteLine($"lightning sessions run {run}: {stalls[^1]}");
            await stop.CancelAsync();
            await Task.WhenAll(loops);
            if (debited != warmUp + requests) throw new InvalidOperationException($"{debited} session requests complete and debited of {warmUp + requests}");
        }
        var (s, g) = (PerRequest.MedianOf(sessionRuns), PerRequest.MedianOf(gridRuns));
        report.Set("service.lightning.sessions", new { requests, clients = AgentClients, workers = AgentWorkers, runs = options.Repeat, session_request = s, grid_job = g, stalls });
        string Over(double session, double job, string format) => Report.Num(session - 2 * job, format);
        string Ratio(double x, double y) => (x / y).ToString("F2", CultureInfo.InvariantCulture) + "×";
        report.Table("Lightning session requests against the Grid API's lifecycle (issue #18)",
            ["figure", "session request (POST /api/sessions/{id}/request)", "grid job (POST /api/v1/jobs, stream to its end)", "session ÷ grid job", "session − 2 × grid job"],
        [
            ["latency p50", Report.Ms(s.Latency.P50), Report.Ms(g.Latency.P50), Ratio(s.Latency.P50, g.Latency.P50), Report.Ms(s.Latency.P50 - 2 * g.Latency.P50)],
            ["latency p95", Report.Ms(s.Latency.P95), Report.Ms(g.Latency.P95), Ratio(s.Latency.P95, g.Latency.P95), ""],
            ["latency p99", Report.Ms(s.Latency.P99), Report.Ms(g.Latency.P99), Ratio(s.Latency.P99, g.Latency.P99), ""],
            ["requests/s", Report.Num(s.PerSecond), Report.Num(g.PerSecond), Ratio(s.PerSecond, g.PerSecond), ""],
            ["SQL statements / request", Report.Num(s.StatementsPer, "F1"), Report.Num(g.StatementsPer, "F1"), Ratio(s.StatementsPer, g.StatementsPer), Over(s.StatementsPer, g.StatementsPer, "F1")],
            ["WAL bytes / request", Report.Num(s.WalBytesPer), Report.Num(g.WalBytesPer), Ratio(s.WalBytesPer, g.WalBytesPer), Over(s.WalBytesPer, g.WalBytesPer, "F0")],
            ["DB CPU ms / request", Report.Num(s.DbCpuMsPer, "F2"), Report.Num(g.DbCpuMsPer, "F2"), Ratio(s.DbCpuMsPer, g.DbCpuMsPer), Over(s.DbCpuMsPer, g.DbCpuMsPer, "F2")],
            ["node CPU ms / request", Report.Num(s.NodeCpuMsPer, "F2"), Report.Num(g.NodeCpuMsPer, "F2"), Ratio(s.NodeCpuMsPer, g.NodeCpuMsPer), Over(s.NodeCpuMsPer, g.NodeCpuMsPer, "F2")],
        ],
        $"{requests} of each per run from {AgentClients} concurrent clients (each with its own paid session, or the grid account's key), one after another per client, the two kinds turn about; {AgentWorkers} simulated workers answering at once; one node; median of {options.Repeat} runs. " +
        "A session request is two grid jobs (eval, then work) and a debit; the last column is what it costs beyond two of the grid's own jobs: the macaroon check, the session grain's admission and debit, the price and the request's record.",
        $"Session requests over 10 s, from the rows (warm-up included), per run: {string.Join("; ", stalls)}.");
    }

    /// <summary>
    /// Where the session requests that took over 10 s spent it, from the rows: a grid job that completed more than 10 s
    /// before the request moved on (the runner's wait did not hear of its end until the job grain's 15 s backstop read the
    /// row), or one that a worker started more than 10 s after its submission.
    /// </summary>
    private async Task<SessionStalls> SessionStallsAsync(string db)
    {
        const string Requests = "lightning_session_requests r JOIN jobs e ON e.id = r.eval_job_id JOIN jobs w ON w.id = r.work_job_id";
        return new SessionStalls(
            await database.ScalarAsync(db, $"SELECT count(*) FROM {Requests}"),
            await database.ScalarAsync(db, $"SELECT count(*) FROM {Requests} WHERE r.created_at - e.created_at > interval '10 s'"),
            await database.ScalarAsync(db, $"SELECT count(*) FROM {Requests} WHERE w.created_at - e.completed_at > interval '10 s' OR r.created_at - w.completed_at > interval '10 s'"),
            await database.ScalarAsync(db, $"SELECT count(*) FROM {Requests} WHERE e.started_at - e.created_at > interval '10 s' OR w.started_at - w.created_at > interval '10 s'"));
    }

    /// <summary>Session requests in all, those over 10 s, and of these the ones whose grid job's end was heard late or whose grid job started late.</summary>
    public sealed record SessionStalls(long Requests, long Over10s, long EndHeardLate, long StartedLate)
    {
        public override string ToString() =>
            $"{Over10s} of {Requests} over 10 s ({EndHeardLate} with a grid job's end heard over 10 s after it completed, {StartedLate} with a grid job started over 10 s after its submission)";
    }

    /// <summary>
    /// The Gemini conversation's relay: a worker sends a reply's text in chunks 10 ms apart while the client reads the
    /// reply's event stream (<c>POST /api/gemini/conversations/{id}/messages</c>); each chunk's latency is from just before
    /// the worker's POST leaves to the client reading the event's first line. Turn about with the same on the Grid API's
    /// <c>GET /jobs/{id}/stream</c> (the <c>stream</c> scenario's measurement). On one node, and with the client on one node
    /// and the worker on another.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task GeminiRelayAsync()
    {
        var jobs = options.Quick ? 40 : 150;
        const int chunksPerJob = 5;
        var rows = new List<string[]>();
        foreach (var nodes in new[] { 1, 2 })
        {
            var (geminiFirst, geminiEvery, nativeFirst, nativeEvery) = (new List<LatencySummary>(), new List<LatencySummary>(), new List<LatencySummary>(), new List<LatencySummary>());
            for (var run = 0; run < options.Repeat; run++)
            {
                var db = await database.CreateAsync($"svc_ln_sse_{nodes}_{run}");
                var started = new List<NodeProcess>();
                try
                {
                    for (var i = 0; i < nodes; i++) started.Add(await NodeProcess.StartAsync(options.Ours.Dll, db, http, nodes == 1 ? options.NodeCpus : null, AgentSettings()));
                    var (client, worker) = (started[0].Grid, started[^1].Grid);
                    var key = await SignUpUnlimitedAsync(client, db, requestLimit: null);
                    var workerKey = await worker.NewWorkerAsync(key, "streamer", Model);
                    var (gFirst, gEvery, nFirst, nEvery) = (new Latencies(), new Latencies(), new Latencies(), new Latencies());
                    for (var j = 0; j < jobs + 10; j++)
                    {
                        foreach (var gemini in j % 2 == 0 ? new[] { true, false } : [false, true])
                        {
                            HttpResponseMessage response;
                            long id;
                            if (gemini)
                            {
                                var conversation = await client.CreateConversationAsync(key, $"bench {j}");
                                (response, id) = await client.SendGeminiMessageAsync(key, conversation, "ping", Model);
                            }
                            else
                            {
                                id = await client.SubmitAsync(key, Model);
                                response = await client.OpenStreamAsync(key, id);
                            }
                            using var _ = response;
                            var events = new StreamEvents(await response.Content.ReadAsStreamAsync());
                            await events.OpenedAsync();
                            var taken = await worker.PollAsync(workerKey, Model) ?? throw new InvalidOperationException("no job for the streamer");
                            if (taken.JobId != id) throw new InvalidOperationException($"the streamer got job {taken.JobId}, not {id}");
                            await worker.StartAsync(workerKey, id);

                            var arrived = new long[chunksPerJob];
                            var reading = Task.Run(async () =>
                            {
                                var (seen, length) = (0, 0);
                                while (seen < chunksPerJob && await events.NextAsync() is { } e)
                                {
                                    int end;
                                    if (gemini)
                                    {
                                        length += (HttpGrid.GeminiContent(e) ?? throw new InvalidOperationException("the reply ended before its chunks")).Length;
                                        end = length / TokenLength;
                                    }
                                    else if (e.Name == "chunk") end = StreamEvents.EndOffset(e) / TokenLength;
                                    else continue;
                                    // Chunks that came together in one event arrived together.
                                    for (; seen < end; seen++) arrived[seen] = e.ReceivedAt;
                                }
                            });
                            var sent = await SendChunksAsync(worker, workerKey, id, chunksPerJob, reading);
                            if (gemini)
                            {
                                // The reply is stored and the stream says done: the conversation's turn is over before the next.
                                while (await events.NextAsync() is { } e && HttpGrid.GeminiContent(e) is not null) { }
                            }
                            if (j < 10) continue;  // warm-up
                            var (first, every) = gemini ? (gFirst, gEvery) : (nFirst, nEvery);
                            first.Add(Stopwatch.GetElapsedTime(sent[0], arrived[0]).TotalMilliseconds);
                            for (var c = 0; c < chunksPerJob; c++) every.Add(Stopwatch.GetElapsedTime(sent[c], arrived[c]).TotalMilliseconds);
                        }
                    }
                    geminiFirst.Add(gFirst.Summarise());
                    geminiEvery.Add(gEvery.Summarise());
                    nativeFirst.Add(nFirst.Summarise());
                    nativeEvery.Add(nEvery.Summarise());
                    Console.WriteLine($"gemini relay, {nodes} node(s), run {run}: first chunk {gFirst.Summarise()}; every chunk {gEvery.Summarise()}; " +
                        $"Grid API stream beside it: first chunk {nFirst.Summarise()}; every chunk {nEvery.Summarise()}");
                }
                finally
                {
                    foreach (var node in started) await node.DisposeAsync();
                }
                await database.DropAsync(new Npgsql.NpgsqlConnectionStringBuilder(db).Database!);
            }
            var (gf, ge, nf, ne) = (LatencySummary.MedianOf(geminiFirst), LatencySummary.MedianOf(geminiEvery), LatencySummary.MedianOf(nativeFirst), LatencySummary.MedianOf(nativeEvery));
            report.Set($"service.lightning.gemini_relay.nodes_{nodes}", new
            {
                jobs, chunks_per_job = chunksPerJob, runs = options.Repeat, gemini_first_chunk = gf, gemini_every_chunk = ge, grid_stream_first_chunk = nf, grid_stream_every_chunk = ne,
            });
            var where = nodes == 1 ? "one node" : "client on node 1, worker on node 2";
            rows.Add([where, "Gemini conversation (POST …/messages)", "first chunk", Report.Ms(gf.P50), Report.Ms(gf.P95), Report.Ms(gf.P99), Report.Ms(gf.Max)]);
            rows.Add([where, "Gemini conversation (POST …/messages)", "every chunk", Report.Ms(ge.P50), Report.Ms(ge.P95), Report.Ms(ge.P99), Report.Ms(ge.Max)]);
            rows.Add([where, "Grid API (GET /jobs/{id}/stream)", "first chunk", Report.Ms(nf.P50), Report.Ms(nf.P95), Report.Ms(nf.P99), Report.Ms(nf.Max)]);
            rows.Add([where, "Grid API (GET /jobs/{id}/stream)", "every chunk", Report.Ms(ne.P50), Report.Ms(ne.P95), Report.Ms(ne.P99), Report.Ms(ne.Max)]);
        }
        report.Table("Gemini SSE relay: chunk POST leaving the worker → the event's first line at the client (issue #18)",
            ["where", "stream", "chunk", "p50", "p95", "p99", "max"], rows,
            $"{jobs} replies and {jobs} Grid API jobs per run, turn about, one at a time (a fresh conversation per reply); the worker sends {chunksPerJob} chunks 10 ms apart once the client's stream has opened; median of {options.Repeat} runs. " +
            "The one-node runs pin the node to its own CPU; clients and the worker are simulated in the load generator's process.");
    }

    /// <summary>Registers <see cref="AgentWorkers"/> workers for both of the agent's models and starts them; answers their loops, once all are parked.</summary>
    private static async Task<List<Task>> StartAgentWorkersAsync(HttpGrid grid, string accountKey, CancellationToken stop)
    {
        string[] models = [EvalModel, Model];
        var workerKeys = await Task.WhenAll(Enumerable.Range(0, AgentWorkers).Select(i => grid.NewWorkerAsync(accountKey, $"agent{i}", models)));
        var loops = workerKeys.Select(worker => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                (Assignment Job, string Model)? next;
                try
                {
                    next = await grid.PollAnyAsync(worker, models, stop);
                }
                catch (Exception) when (stop.IsCancellationRequested)
                {
                    return;
                }
                if (next is not { } taken) continue;
                await grid.StartAsync(worker, taken.Job.JobId);
                await grid.ResultAsync(worker, taken.Job.JobId, taken.Model == EvalModel ? Verdict : "ok");
            }
        })).ToList();
        await grid.WaitParkedAsync(workerKeys.Length);
        return loops;
    }

    /// <summary><paramref name="jobs"/> pay-per-job jobs from <see cref="AgentClients"/> clients at once.</summary>
    private static async Task<PayPerJobTimes> PayPerJobAsync(HttpGrid grid, int jobs)
    {
        var times = new PayPerJobTimes();
        var next = 0;
        await Task.WhenAll(Enumerable.Range(0, AgentClients).Select(client => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) is var i && i <= jobs)
            {
                var start = Stopwatch.GetTimestamp();
                var (id, evalHash) = await grid.CreateAgentJobAsync($"bench request {i} from client {client}");
                await grid.StubPayAsync(evalHash);
                var status = await PollAgentJobAsync(grid, id, "awaiting_work_payment", ["awaiting_eval_payment", "evaluating"], times);
                var quoted = Stopwatch.GetTimestamp();
                await grid.StubPayAsync(status.WorkPaymentHash ?? throw new InvalidOperationException($"job {id} awaits its work payment without an invoice"));
                var paid = Stopwatch.GetTimestamp();
                _ = await PollAgentJobAsync(grid, id, "complete", ["awaiting_work_payment", "executing"], times);
                var end = Stopwatch.GetTimestamp();
                times.Total.Add(Stopwatch.GetElapsedTime(start, end).TotalMilliseconds);
                times.ToQuote.Add(Stopwatch.GetElapsedTime(start, quoted).TotalMilliseconds);
                times.ToComplete.Add(Stopwatch.GetElapsedTime(paid, end).TotalMilliseconds);
            }
        })));
        return times;
    }

    /// <summary>Reads a job at once and then every <see cref="AgentPollMs"/> ms until it is in <paramref name="state"/>; any state but <paramref name="passing"/> on the way throws.</summary>
    private static async Task<AgentJobStatus> PollAgentJobAsync(HttpGrid grid, string id, string state, string[] passing, PayPerJobTimes times)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 60;
        while (true)
        {
            var status = await grid.GetAgentJobAsync(id);
            Interlocked.Increment(ref times.Reads);
            if (status.State == state) return status;
            if (!passing.Contains(status.State)) throw new InvalidOperationException($"Lightning job {id} is {status.State}, waiting for {state}");
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"Lightning job {id} is still {status.State} after a minute");
            await Task.Delay(AgentPollMs);
        }
    }

    /// <summary><paramref name="requests"/> session requests, each client sending on its own session one after another.</summary>
    private static async Task<Latencies> SessionRequestsAsync(HttpGrid grid, (string Id, string Macaroon)[] sessions, int requests)
    {
        var latencies = new Latencies();
        var next = 0;
        await Task.WhenAll(sessions.Select(session => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) is var i && i <= requests)
            {
                var start = Stopwatch.GetTimestamp();
                var answer = await grid.SessionRequestAsync(session.Id, session.Macaroon, $"bench request {i}");
                if (answer.State != "complete" || answer.DebitedSats <= 0) throw new InvalidOperationException($"session {session.Id}'s request {i} is {answer.State}, {answer.DebitedSats} sats debited");
                latencies.AddSince(start);
            }
        })));
        return latencies;
    }

    /// <summary><paramref name="jobs"/> Grid API jobs from <see cref="AgentClients"/> clients at once, each submitted and its stream read to its end.</summary>
    private static async Task<Latencies> GridJobsAsync(HttpGrid grid, string key, int jobs)
    {
        var latencies = new Latencies();
        var next = 0;
        await Task.WhenAll(Enumerable.Range(0, AgentClients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) <= jobs)
            {
                var start = Stopwatch.GetTimestamp();
                var id = await grid.SubmitAsync(key, Model, prompt: "bench request");
                using var response = await grid.OpenStreamAsync(key, id);
                var events = new StreamEvents(await response.Content.ReadAsStreamAsync());
                if (await events.LastAsync() is not { Name: "job" }) throw new InvalidOperationException($"job {id}'s stream ended without the job");
                latencies.AddSince(start);
            }
        })));
        return latencies;
    }

    /// <summary>
    /// Runs <paramref name="work"/> on <paramref name="setup"/>'s node and answers what the database and the node did meanwhile,
    /// per <paramref name="count"/> (statements counted from a reset; the busiest are printed per item).
    /// </summary>
    private async Task<(DatabaseCost Cost, double NodeCpuMsPer, double Seconds, T Result)> MeasureAsync<T>(SingleNode setup, int count, Func<Task<T>> work)
    {
        var name = new Npgsql.NpgsqlConnectionStringBuilder(setup.Database).Database!;
        await database.ResetStatementsAsync();
        var before = await database.SnapshotAsync(name);
        var cpu = setup.Node.CpuSeconds;
        var started = Stopwatch.GetTimestamp();
        var result = await work();
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cpuUsed = setup.Node.CpuSeconds - cpu;
        var cost = await database.CostSinceAsync(name, before);
        foreach (var line in await database.TopStatementsAsync(name, count, count: 24)) Console.WriteLine($"    {line}");
        return (cost, cpuUsed * 1000 / count, seconds, result);
    }

    /// <summary>The pay-per-job clients' timings, and how many times they read their jobs.</summary>
    private sealed class PayPerJobTimes
    {
        public readonly Latencies Total = new();
        public readonly Latencies ToQuote = new();
        public readonly Latencies ToComplete = new();
        public long Reads;
    }

    private sealed record AgentJobsRun(LatencySummary Total, LatencySummary ToQuote, LatencySummary ToComplete, double JobsPerSecond, double ReadsPerJob,
        double StatementsPerJob, double WalBytesPerJob, double DbCpuMsPerJob, double NodeCpuMsPerJob);
}

/// <summary>Per-request figures of one kind of request in one run.</summary>
public sealed record PerRequest(LatencySummary Latency, double PerSecond, double StatementsPer, double WalBytesPer, double DbCpuMsPer, double NodeCpuMsPer)
{
    public override string ToString() =>
        $"{Latency}; {PerSecond:F0}/s, {StatementsPer:F1} statements, {WalBytesPer:F0} WAL bytes, DB CPU {DbCpuMsPer:F2} ms, node CPU {NodeCpuMsPer:F2} ms per request";

    public static PerRequest MedianOf(IReadOnlyList<PerRequest> runs) => new(
        LatencySummary.MedianOf(runs.Select(r => r.Latency).ToList()), LatencySummary.Median(runs.Select(r => r.PerSecond)),
        LatencySummary.Median(runs.Select(r => r.StatementsPer)), LatencySummary.Median(runs.Select(r => r.WalBytesPer)),
        LatencySummary.Median(runs.Select(r => r.DbCpuMsPer)), LatencySummary.Median(runs.Select(r => r.NodeCpuMsPer)));
}
