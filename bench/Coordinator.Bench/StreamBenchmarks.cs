using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Coordinator.Bench;

/// <summary>One event of a job's stream, with when its first line reached the client.</summary>
public sealed record StreamEvent(string Name, string? Id, string Data, long ReceivedAt);

/// <summary>Reads Server-Sent Events (a job's stream, a Gemini reply) line by line, as they arrive; comments are skipped. The response owns the body.</summary>
#pragma warning disable CA1001 // see _reader
public sealed class StreamEvents(Stream body)
{
#pragma warning disable CA2213 // the reader only wraps the response's body, which its response disposes
    private readonly StreamReader _reader = new(body, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
#pragma warning restore CA2213

    /// <summary>The next event; null at the end of the stream.</summary>
    public async Task<StreamEvent?> NextAsync(CancellationToken cancellationToken = default)
    {
        string? name = null, id = null;
        var data = new StringBuilder();
        long receivedAt = 0;
        while (await _reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                // An event without a name is the format's "message" (the Gemini relay's events have none).
                if (name is not null || receivedAt != 0) return new StreamEvent(name ?? "message", id, data.ToString(), receivedAt);
                continue;
            }
            if (line[0] == ':') continue;
            if (receivedAt == 0) receivedAt = Stopwatch.GetTimestamp();
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line[7..];
            else if (line.StartsWith("id: ", StringComparison.Ordinal)) id = line[4..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) data.Append(line, 6, line.Length - 6);
        }
        return null;
    }

    /// <summary>Reads the stream to its end; answers its last event.</summary>
    public async Task<StreamEvent?> LastAsync()
    {
        var last = await NextAsync();
        while (last is not null && await NextAsync() is { } next) last = next;
        return last;
    }

    /// <summary>Waits for the comment a stream opens with: the reader's grain call is then in place.</summary>
    public async Task OpenedAsync(CancellationToken cancellationToken = default)
    {
        while (await _reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.StartsWith(':')) return;
        }
        throw new InvalidOperationException("the stream ended before it opened");
    }

    /// <summary>The offset a chunk event's id (<c>generation-offset</c>) says its text ends at.</summary>
    public static int EndOffset(StreamEvent e) => int.Parse(e.Id![(e.Id!.IndexOf('-') + 1)..], CultureInfo.InvariantCulture);
}
#pragma warning restore CA1001

/// <summary>Streaming: time to first token on one node and across nodes, and many streams at once (issue #16).</summary>
public sealed partial class ServiceBenchmarks
{
    private const int TokenLength = 6;

    /// <summary>
    /// The worker sends job <paramref name="id"/>'s chunks 10 ms apart, waits for the reader to have them all, then posts
    /// the result they make; answers when each chunk left.
    /// </summary>
    private static async Task<long[]> SendChunksAsync(HttpGrid worker, string workerKey, long id, int chunks, Task reading)
    {
        var sent = new long[chunks];
        var output = new StringBuilder();
        for (var c = 0; c < chunks; c++)
        {
            if (c > 0) await Task.Delay(10);
            sent[c] = Stopwatch.GetTimestamp();
            await worker.ChunkAsync(workerKey, id, c, Token(c));
            output.Append(Token(c));
        }
        await reading.WaitAsync(TimeSpan.FromSeconds(30));
        await worker.ResultAsync(workerKey, id, output.ToString());
        return sent;
    }

    private static string Token(int i) => (i % 100_000).ToString("D5", CultureInfo.InvariantCulture) + " ";

    /// <summary>
    /// Time to first token: a fake worker sends a job's output in chunks every 10 ms while a client reads the job's
    /// stream; each chunk's latency is from just before the worker's POST leaves to the client reading the event's first
    /// line. On one node, and with the client on one node and the worker on another.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task StreamLatencyAsync()
    {
        var jobs = options.Quick ? 40 : 150;
        const int chunksPerJob = 5;
        var rows = new List<string[]>();
        foreach (var nodes in new[] { 1, 2 })
        {
            var first = new List<LatencySummary>();
            var every = new List<LatencySummary>();
            for (var run = 0; run < options.Repeat; run++)
            {
                var db = await database.CreateAsync($"svc_stream_ttft_{nodes}_{run}");
                var started = new List<NodeProcess>();
                try
                {
                    for (var i = 0; i < nodes; i++) started.Add(await NodeProcess.StartAsync(options.Ours.Dll, db, http, nodes == 1 ? options.NodeCpus : null));
                    var (client, worker) = (started[0].Grid, started[^1].Grid);
                    var key = await SignUpUnlimitedAsync(client, db, requestLimit: null);
                    var workerKey = await worker.NewWorkerAsync(key, "streamer", Model);
                    var (firstChunk, anyChunk) = (new Latencies(), new Latencies());
                    for (var j = 0; j < jobs + 10; j++)
                    {
                        var id = await client.SubmitAsync(key, Model);
                        _ = await worker.PollAsync(workerKey, Model) ?? throw new InvalidOperationException("no job for the streamer");
                        await worker.StartAsync(workerKey, id);
                        using var response = await client.OpenStreamAsync(key, id);
                        var events = new StreamEvents(await response.Content.ReadAsStreamAsync());
                        await events.OpenedAsync();
                        var arrived = new long[chunksPerJob];
                        var reading = Task.Run(async () =>
                        {
                            var seen = 0;
                            while (seen < chunksPerJob && await events.NextAsync() is { } e)
                            {
                                if (e.Name != "chunk") continue;
                                // Chunks that came together in one event arrived together.
                                for (var end = StreamEvents.EndOffset(e) / TokenLength; seen < end; seen++) arrived[seen] = e.ReceivedAt;
                            }
                        });
                        var sent = await SendChunksAsync(worker, workerKey, id, chunksPerJob, reading);
                        if (j < 10) continue;  // warm-up
                        firstChunk.Add(Stopwatch.GetElapsedTime(sent[0], arrived[0]).TotalMilliseconds);
                        for (var c = 0; c < chunksPerJob; c++) anyChunk.Add(Stopwatch.GetElapsedTime(sent[c], arrived[c]).TotalMilliseconds);
                    }
                    first.Add(firstChunk.Summarise());
                    every.Add(anyChunk.Summarise());
                    Console.WriteLine($"stream latency, {nodes} node(s), run {run}: first chunk {firstChunk.Summarise()}; every chunk {anyChunk.Summarise()}");
                }
                finally
                {
                    foreach (var node in started) await node.DisposeAsync();
                }
            }
            var (f, e) = (LatencySummary.MedianOf(first), LatencySummary.MedianOf(every));
            report.Set($"service.stream_latency.nodes_{nodes}", new { jobs, chunks_per_job = chunksPerJob, runs = options.Repeat, first_chunk = f, every_chunk = e });
            var where = nodes == 1 ? "one node" : "client on node 1, worker on node 2";
            rows.Add([where, "first chunk", Report.Ms(f.P50), Report.Ms(f.P95), Report.Ms(f.P99), Report.Ms(f.Max),
                nodes == 1 ? $"p50 ≤ 2 ms: {Report.Verdict(f.P50 <= 2)}; p99 ≤ 10 ms: {Report.Verdict(f.P99 <= 10)}" : "measured"]);
            rows.Add([where, "every chunk", Report.Ms(e.P50), Report.Ms(e.P95), Report.Ms(e.P99), Report.Ms(e.Max), ""]);
        }
        report.Table("Time to first token (chunk POST leaving the worker → the event's first line at the client)",
            ["where", "chunk", "p50", "p95", "p99", "max", "target"], rows,
            $"{jobs} jobs per run, one at a time; the worker sends {chunksPerJob} chunks 10 ms apart after the client's stream opened; median of {options.Repeat} runs. Client and worker are simulated in the load generator's process; the one-node runs pin the node to its own CPU.");
    }

    /// <summary>
    /// Many streams at once: 200 jobs running on 200 workers, each sending 500 chunks as fast as its answers come,
    /// each read by its own client. Every reader must assemble exactly the output; reports chunks per second and the
    /// node's CPU and the database's statements per chunk.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "every one is a using declaration; the analyzer does not follow them inside loops of async methods")]
    public async Task StreamThroughputAsync()
    {
        var streams = options.Quick ? 50 : 200;
        var chunks = options.Quick ? 100 : 500;
        var results = new List<(double ChunksPerSecond, double NodeCpuUsPerChunk, double StatementsPerChunk, long Lost)>();
        for (var run = 0; run < options.Repeat; run++)
        {
            await using var setup = await SingleNodeAsync(options.Ours, $"svc_stream_many_{run}", requestLimit: null);
            var grid = setup.Node.Grid;
            var workers = await Task.WhenAll(Enumerable.Range(0, streams).Select(i => grid.NewWorkerAsync(setup.Key, $"streamer{i}", Model)));
            var jobs = new long[streams];
            for (var i = 0; i < streams; i++) jobs[i] = await grid.SubmitAsync(setup.Key, Model);
            var held = await Task.WhenAll(workers.Select(async w => (await grid.PollAsync(w, Model) ?? throw new InvalidOperationException("no job")).JobId));
            await Task.WhenAll(workers.Select((w, i) => grid.StartAsync(w, held[i])));

            var expected = string.Concat(Enumerable.Range(0, chunks).Select(Token));
            var responses = await Task.WhenAll(held.Select(id => grid.OpenStreamAsync(setup.Key, id)));
            var readers = await Task.WhenAll(responses.Select(async r => new StreamEvents(await r.Content.ReadAsStreamAsync())));
            await Task.WhenAll(readers.Select(r => r.OpenedAsync()));
            var reading = readers.Select(r => Task.Run(async () =>
            {
                var text = new StringBuilder();
                string? output = null;
                while (await r.NextAsync() is { } e)
                {
                    using var json = JsonDocument.Parse(e.Data);
                    if (e.Name == "chunk") text.Append(json.RootElement.GetProperty("text").GetString());
                    else if (e.Name == "job") output = json.RootElement.GetProperty("output").GetString();
                }
                return (Streamed: text.ToString(), Output: output);
            })).ToList();

            var name = new Npgsql.NpgsqlConnectionStringBuilder(setup.Database).Database!;
            await database.ResetStatementsAsync();
            var before = await database.SnapshotAsync(name);
            var cpu = setup.Node.CpuSeconds;
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(workers.Select((w, i) => Task.Run(async () =>
            {
                for (var c = 0; c < chunks; c++) await grid.ChunkAsync(w, held[i], c, Token(c));
            })));
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var cpuUsed = setup.Node.CpuSeconds - cpu;
            var cost = await database.CostSinceAsync(name, before);

            await Task.WhenAll(workers.Select((w, i) => grid.ResultAsync(w, held[i], expected)));
            var received = await Task.WhenAll(reading).WaitAsync(TimeSpan.FromMinutes(2));
            foreach (var r in responses) r.Dispose();
            var lost = received.LongCount(r => r.Streamed != expected || r.Output != expected);
            var total = (double)streams * chunks;
            results.Add((total / seconds, cpuUsed * 1e6 / total, cost.Statements / total, lost));
            Console.WriteLine($"stream throughput run {run}: {total / seconds:F0} chunks/s, node CPU {cpuUsed * 1e6 / total:F0} µs/chunk, {cost.Statements / total:F3} statements/chunk, {lost} streams wrong");
        }
        var (rate, cpuPer, statementsPer) = (LatencySummary.Median(results.Select(r => r.ChunksPerSecond)), LatencySummary.Median(results.Select(r => r.NodeCpuUsPerChunk)),
            LatencySummary.Median(results.Select(r => r.StatementsPerChunk)));
        var wrong = results.Sum(r => r.Lost);
        report.Set("service.stream_throughput", new { streams, chunks_per_stream = chunks, runs = options.Repeat, chunks_per_second = rate, node_cpu_us_per_chunk = cpuPer, statements_per_chunk = statementsPer, streams_wrong = wrong });
        report.Table("Many streams at once (chunk POSTs → every reader)",
            ["streams × chunks", "chunks/s", "node CPU µs / chunk", "SQL statements / chunk", "streams not exactly the output", "target"],
            [[$"{streams} × {chunks}", Report.Num(rate), Report.Num(cpuPer), Report.Num(statementsPer, "F3"), wrong.ToString(CultureInfo.InvariantCulture), $"no loss: {Report.Verdict(wrong == 0)}"]],
            $"One node; {streams} workers each send their job's {chunks} chunks one after another (the next when the last was answered), all at once, while {streams} clients read the streams. CPU is the node's process (the chunk POSTs and the event streams both); statements are the database's during the chunks. Median of {options.Repeat} runs.");
    }

    /// <summary>
    /// The OpenAI path's overhead: a non-streaming <c>POST /v1/chat/completions</c> against the native way to the same
    /// answer, <c>POST /jobs</c> and then the job's stream read to its end (the native wait that returns first), with a
    /// simulated worker parked for each request. Alternating, one request at a time, from send to the completed answer.
    /// </summary>
    public async Task OpenAiOverheadAsync()
    {
        var requests = options.Quick ? 200 : 1000;
        var openAi = new List<LatencySummary>();
        var native = new List<LatencySummary>();
        for (var run = 0; run < options.Repeat; run++)
        {
            await using var setup = await SingleNodeAsync(options.Ours, $"svc_openai_{run}", requestLimit: null);
            var grid = setup.Node.Grid;
            var workers = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => grid.NewWorkerAsync(setup.Key, $"answerer{i}", Model)));
            using var stop = new CancellationTokenSource();
            var loops = workers.Select(worker => grid.WorkAsync(worker, Model, async a =>
            {
                await grid.StartAsync(worker, a.JobId);
                await grid.ResultAsync(worker, a.JobId, "pong");
                return true;
            }, stop.Token)).ToList();
            await grid.WaitParkedAsync(workers.Length);

            var (viaOpenAi, viaJobs) = (new Latencies(), new Latencies());
            for (var i = 0; i < requests + 20; i++)
            {
                // Alternate which goes first, so that neither always runs right after the other.
                foreach (var useOpenAi in i % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    var start = Stopwatch.GetTimestamp();
                    if (useOpenAi)
                    {
                        if (await grid.ChatCompletionAsync(setup.Key, Model, "ping") != "pong") throw new InvalidOperationException("the completion was not the worker's output");
                    }
                    else
                    {
                        var id = await grid.SubmitAsync(setup.Key, Model, prompt: "ping");
                        using var response = await grid.OpenStreamAsync(setup.Key, id);
                        var events = new StreamEvents(await response.Content.ReadAsStreamAsync());
                        if (await events.LastAsync() is not { Name: "job" }) throw new InvalidOperationException($"job {id}'s stream ended without the job");
                    }
                    if (i >= 20) (useOpenAi ? viaOpenAi : viaJobs).AddSince(start);
                }
                await grid.WaitParkedAsync(workers.Length);  // every worker back in its poll, as at the start
            }
            await stop.CancelAsync();
            await Task.WhenAll(loops);
            openAi.Add(viaOpenAi.Summarise());
            native.Add(viaJobs.Summarise());
            Console.WriteLine($"openai overhead run {run}: /v1/chat/completions {viaOpenAi.Summarise()}; POST /jobs + stream {viaJobs.Summarise()}");
        }
        var (o, n) = (LatencySummary.MedianOf(openAi), LatencySummary.MedianOf(native));
        var overhead = o.P50 / n.P50 - 1;
        report.Set("service.openai_overhead", new { requests, runs = options.Repeat, openai = o, native = n, p50_overhead = overhead });
        report.Table("OpenAI path overhead (non-streaming request → completed answer)",
            ["path", "p50", "p95", "p99", "max", "target"],
            [
                ["POST /v1/chat/completions (stream: false)", Report.Ms(o.P50), Report.Ms(o.P95), Report.Ms(o.P99), Report.Ms(o.Max),
                    $"p50 at most 10% over native: {overhead:P1} ({Report.Verdict(overhead <= 0.10)})"],
                ["POST /jobs, then GET /jobs/{id}/stream to its end", Report.Ms(n.P50), Report.Ms(n.P95), Report.Ms(n.P99), Report.Ms(n.Max), ""],
            ],
            $"{requests} requests of each kind per run, alternating, one at a time, on one node with 4 simulated workers parked (each answers at once); median of {options.Repeat} runs.");
    }
}
