using System.Diagnostics;
using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Coordinator.Bench;

/// <summary>
/// <c>telemetry</c> (issue #19: "the lifecycle over HTTP with metrics and tracing on falls at most 5% below the same
/// run with them off"): the lifecycle scenario's run (<see cref="LifecycleRunAsync"/>) on nodes with telemetry off (no
/// <c>Telemetry</c> settings: no meter listener, no trace listener) and on nodes with it fully on, where every signal
/// is read by something real:
/// <list type="bullet">
/// <item>metrics through the Prometheus endpoint on its operator port, scraped by the bench every
/// <see cref="ScrapeInterval"/>, and pushed over OTLP/HTTP;</item>
/// <item>traces over OTLP/HTTP, at the default sampling ratio (<c>Telemetry:Tracing:SamplingRatio</c> unset) and, as a
/// second figure, at 1.0 (every trace).</item>
/// </list>
/// The OTLP collector is <see cref="OtlpSink"/>, a Kestrel endpoint in the bench that reads each export and discards it.
/// The three kinds of run are interleaved round by round with their order rotated each round, so that the machine's
/// drift (other engineers share its two cores) hits all three. Each ON run must have been scraped (with the jobs
/// counter in the text) and must have exported traces, or the bench fails.
/// </summary>
public sealed partial class ServiceBenchmarks
{
    /// <summary>Jobs/s may fall at most this much with telemetry on (issue #19).</summary>
    private const double TelemetryCostTarget = 0.05;

    /// <summary>How often the bench scrapes an ON node's Prometheus endpoint (Prometheus' own default is 60 s; 2 s is harsh).</summary>
    private static readonly TimeSpan ScrapeInterval = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A node is warmed up for at least this long before its measured run (<c>COORDINATOR_BENCH_TELEMETRY_WARMUP_SECONDS</c>;
    /// default 60 s, 20 s with <c>--quick</c>), and then until its CPU per job stops falling, for at most
    /// <see cref="TelemetryWarmUpMax"/>.
    /// </summary>
    private TimeSpan TelemetryWarmUpMin => TimeSpan.FromSeconds(
        int.TryParse(Environment.GetEnvironmentVariable("COORDINATOR_BENCH_TELEMETRY_WARMUP_SECONDS"), CultureInfo.InvariantCulture, out var seconds) ? seconds
        : options.Quick ? 20 : 120);

    private TimeSpan TelemetryWarmUpMax => TelemetryWarmUpMin * 4;

    /// <summary>
    /// Warm-up runs, not measured. A node under this load runs tier-0 and instrumented code for its first minute or more:
    /// the JIT's tier-1 recompilation waits while new methods keep being compiled, and it shares the two saturated cores
    /// (perf samples of a node at 20, 50 and 80 s: tier-1 code 1%, 1% and 24% of the samples, the JIT itself 3–20%; node CPU
    /// per job falls from about 3.5 to 1.1-1.3 ms by 100 s, with a plateau near 2.5 ms around 60 s). A node with telemetry on
    /// has more code to compile, so a short warm-up measures the JIT more than telemetry. That is paid once per process,
    /// and a silo runs for days: the runs go on past the minimum until two in a row are no cheaper in node CPU per job than
    /// the cheapest so far (within 5%).
    /// </summary>
    private async Task<WarmUp> WarmUpAsync(SingleNode setup, int jobs)
    {
        var warming = Stopwatch.StartNew();
        var (best, flat, runs) = (double.MaxValue, 0, 0);
        LifecycleResult last;
        do
        {
            last = await LifecycleRunAsync([setup.Node], setup.Key, jobs / 2, workers: 32, submitters: 16, setup.Database);
            runs++;
            flat = last.NodeCpuMsPerJob > best * 0.95 ? flat + 1 : 0;
            best = Math.Min(best, last.NodeCpuMsPerJob);
        }
        while (warming.Elapsed < TelemetryWarmUpMax && (warming.Elapsed < TelemetryWarmUpMin || flat < 2));
        return new WarmUp(warming.Elapsed, runs, last.NodeCpuMsPerJob);
    }

    private sealed record WarmUp(TimeSpan Took, int Runs, double LastNodeCpuMsPerJob)
    {
        public override string ToString() => $"{Took.TotalSeconds:F0} s, {Runs} runs, last {LastNodeCpuMsPerJob:F2} ms/job";
    }

    private sealed record TelemetryMode(string Name, string Label, bool On, string? SamplingRatio, bool Metrics = true, bool Traces = true);

    /// <summary>The kinds of run: off and the two ON figures by default; <c>--scenarios</c> picks others (metrics or traces alone) to find where a cost comes from.</summary>
    private static readonly TelemetryMode[] AllTelemetryModes =
    [
        new("off", "telemetry OFF", false, null),
        new("on", "ON, default sampling", true, null),
        new("full", "ON, sampling 1.0", true, "1.0"),
        new("metrics", "metrics alone (scraped)", true, null, Traces: false),
        new("traces", "traces alone (default sampling, not exported)", true, null, Metrics: false),
    ];

    private TelemetryMode[] TelemetryModes => options.Scenarios.Count == 0
        ? AllTelemetryModes[..3]
        : [AllTelemetryModes[0], .. AllTelemetryModes.Skip(1).Where(m => options.Scenarios.Contains(m.Name))];

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "using declarations; the analyzer does not follow them in async methods")]
    public async Task TelemetryCostAsync()
    {
        // Runs long enough that one pause (a collection, a scrape) does not swing the rate: 8,000 jobs take 15-20 s here.
        var jobs = options.Quick ? 2000 : 8000;
        var rounds = options.Quick ? 2 : Math.Max(options.Repeat, 3);
        await using var sink = await OtlpSink.StartAsync();
        var results = TelemetryModes.ToDictionary(m => m.Name, _ => new List<LifecycleResult>());
        var runs = new List<TelemetryRun>();
        for (var round = 0; round < rounds; round++)
        {
            for (var turn = 0; turn < TelemetryModes.Length; turn++)
            {
                var mode = TelemetryModes[(round + turn) % TelemetryModes.Length];
                var name = $"svc_telemetry_{round}_{mode.Name}";
                var settings = new Dictionary<string, string>();
                var scrapePort = NodeProcess.FreePort();
                if (mode.On && mode.Metrics)
                {
                    settings["Telemetry__Prometheus__Enabled"] = "true";
                    settings["Telemetry__Prometheus__Port"] = scrapePort.ToString(CultureInfo.InvariantCulture);
                }
                if (mode.On && mode.Traces)
                {
                    settings["Telemetry__Tracing__Enabled"] = "true";
                    if (mode.SamplingRatio is { } ratio) settings["Telemetry__Tracing__SamplingRatio"] = ratio;
                }
                if (mode.On && mode.Metrics && mode.Traces)
                {
                    settings["Telemetry__Otlp__Endpoint"] = sink.Endpoint.ToString();
                    settings["Telemetry__Otlp__Protocol"] = "http/protobuf";
                }
                var loadBefore = LoadAverage();
                OtlpSink.Exports exportsBefore;
                LifecycleResult result;
                Scrapes scrapes;
                WarmUp warmUp;
                await using (var setup = await SingleNodeAsync(options.Ours, name, requestLimit: null, settings))
                {
                    using var stopScraping = new CancellationTokenSource();
                    var scraping = mode.On && mode.Metrics ? ScrapeAsync(new Uri($"http://127.0.0.1:{scrapePort}/metrics"), stopScraping.Token) : Task.FromResult(new Scrapes(0, 0, false));
                    warmUp = await WarmUpAsync(setup, jobs);
                    exportsBefore = sink.Snapshot();
                    result = await LifecycleRunAsync([setup.Node], setup.Key, jobs, workers: 32, submitters: 16, setup.Database);
                    await stopScraping.CancelAsync();
                    scrapes = await scraping;
                }
                await database.DropAsync(name);
                var exports = sink.Snapshot() - exportsBefore;
                var loadAfter = LoadAverage();
                var run = new TelemetryRun(round + 1, mode.Name, result, scrapes, exports, loadBefore, loadAfter, warmUp);
                Console.WriteLine($"telemetry round {round + 1} {mode.Label}: {result}; warm-up {warmUp}; {scrapes.Count} scrapes ({scrapes.Bytes:N0} bytes); " +
                    $"OTLP {exports.TraceExports} trace exports ({exports.TraceBytes:N0} bytes), {exports.MetricExports} metric exports; load average {loadBefore} → {loadAfter}");
                if (mode.On && mode.Metrics && mode.Traces && (scrapes.Count == 0 || !scrapes.SawJobsCounter || exports.TraceExports == 0))
                {
                    throw new InvalidOperationException($"telemetry: the {mode.Label} run was scraped {scrapes.Count} times (jobs counter seen: {scrapes.SawJobsCounter}) and exported {exports.TraceExports} trace batches; each must be at least 1");
                }
                runs.Add(run);
                results[mode.Name].Add(result);
            }
        }

        var off = LifecycleResult.MedianOf(results["off"]);
        string Ratio(double x, double y) => (x / y).ToString("F2", CultureInfo.InvariantCulture) + "×";
        // Per round, each ON kind against the OFF run of the same round.
        double PairedRatio(string mode) => LatencySummary.Median(runs.GroupBy(r => r.Round)
            .Select(g => g.Single(r => r.Mode == mode).Result.JobsPerSecond / g.Single(r => r.Mode == "off").Result.JobsPerSecond));
        var figures = TelemetryModes.Where(m => m.On).Select(m =>
        {
            var on = LifecycleResult.MedianOf(results[m.Name]);
            return (Mode: m, On: on, Fall: 1 - on.JobsPerSecond / off.JobsPerSecond, Paired: PairedRatio(m.Name));
        }).ToList();
        report.Set("service.telemetry_cost", new
        {
            jobs, workers = 32, submitters = 16, rounds, scrape_interval_seconds = ScrapeInterval.TotalSeconds, telemetry_off = off,
            on = figures.ToDictionary(f => f.Mode.Name, f => new { sampling = f.Mode.SamplingRatio ?? "default", figures = f.On, jobs_per_second_ratio = f.On.JobsPerSecond / off.JobsPerSecond, paired_jobs_per_second_ratio = f.Paired, fall = f.Fall }),
            runs = runs.Select(r => new { r.Round, r.Mode, r.Result, scrapes = r.Scrapes.Count, trace_exports = r.Exports.TraceExports, trace_bytes = r.Exports.TraceBytes, metric_exports = r.Exports.MetricExports, load_before = r.LoadBefore, load_after = r.LoadAfter, warm_up_seconds = r.WarmUp.Took.TotalSeconds, warm_up_runs = r.WarmUp.Runs, warm_up_last_node_cpu_ms_per_job = r.WarmUp.LastNodeCpuMsPerJob }),
        });
        string[] Row(string figure, Func<LifecycleResult, double> value, string format) =>
            [figure, Report.Num(value(off), format), .. figures.SelectMany(f => new[] { Report.Num(value(f.On), format), Ratio(value(f.On), value(off)) })];
        report.Table("The cost of telemetry: full lifecycle over HTTP with metrics and tracing ON and OFF (issue #19)",
            ["figure", "OFF", .. figures.SelectMany(f => new[] { f.Mode.Label, "÷ OFF" })],
        [
            Row("jobs/s", r => r.JobsPerSecond, "F0"),
            Row("node CPU ms / job", r => r.NodeCpuMsPerJob, "F2"),
            Row("DB CPU ms / job", r => r.DbCpuMsPerJob, "F2"),
            Row("SQL statements / job", r => r.StatementsPerJob, "F2"),
            ["jobs/s, median of the rounds' ON ÷ OFF", "", .. figures.SelectMany(f => new[] { "", f.Paired.ToString("F2", CultureInfo.InvariantCulture) + "×" })],
            ["target: ON at most 5% below OFF in jobs/s", "", .. figures.SelectMany(f => new[] { $"{f.Fall:P1} below", Report.Verdict(f.Fall <= TelemetryCostTarget) })],
        ],
        $"{jobs} jobs per run (after warm-up runs of {jobs / 2} on the same node, not measured, for {TelemetryWarmUpMin.TotalSeconds:F0}–{TelemetryWarmUpMax.TotalSeconds:F0} s until its CPU per job stopped falling (the JIT's tier-1 code)) from one account, 32 simulated workers and 16 submitting clients on one node (the lifecycle scenario's run); {rounds} rounds of the three kinds of run, their order rotated each round; medians of {rounds} runs per kind. " +
        $"ON: Prometheus endpoint on its operator port scraped every {ScrapeInterval.TotalSeconds:F0} s by the bench, metrics and traces pushed over OTLP/HTTP to a sink in the bench that reads and discards them.");
        report.Table("The cost of telemetry: every run", ["round", "telemetry", "jobs/s", "node CPU ms / job", "DB CPU ms / job", "warm-up (node CPU ms / job at its end)", "scrapes (warm-up included)", "OTLP trace exports (bytes)", "load average before → after"],
            runs.Select(r => new[]
            {
                r.Round.ToString(CultureInfo.InvariantCulture), TelemetryModes.Single(m => m.Name == r.Mode).Label, Report.Num(r.Result.JobsPerSecond),
                Report.Num(r.Result.NodeCpuMsPerJob, "F2"), Report.Num(r.Result.DbCpuMsPerJob, "F2"), $"{r.WarmUp.Took.TotalSeconds:F0} s ({r.WarmUp.LastNodeCpuMsPerJob:F2})", r.Scrapes.Count.ToString(CultureInfo.InvariantCulture),
                $"{r.Exports.TraceExports} ({r.Exports.TraceBytes:N0})", $"{r.LoadBefore} → {r.LoadAfter}",
            }));
    }

    /// <summary>Scrapes <paramref name="endpoint"/> every <see cref="ScrapeInterval"/> until cancelled, as Prometheus would.</summary>
    private async Task<Scrapes> ScrapeAsync(Uri endpoint, CancellationToken cancellation)
    {
        var (count, bytes, sawJobs) = (0, 0L, false);
        using var timer = new PeriodicTimer(ScrapeInterval);
        try
        {
            do
            {
                var text = await http.GetStringAsync(endpoint, cancellation);
                count++;
                bytes += text.Length;
                sawJobs |= text.Contains("coordinator_jobs_completed", StringComparison.Ordinal);
            }
            while (await timer.WaitForNextTickAsync(cancellation));
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
        return new Scrapes(count, bytes, sawJobs);
    }

    private sealed record Scrapes(int Count, long Bytes, bool SawJobsCounter);

    private sealed record TelemetryRun(int Round, string Mode, LifecycleResult Result, Scrapes Scrapes, OtlpSink.Exports Exports, string LoadBefore, string LoadAfter, WarmUp WarmUp);
}

/// <summary>An OTLP/HTTP collector that reads every export and throws it away: <c>POST /v1/traces</c>, <c>/v1/metrics</c>, <c>/v1/logs</c> answer 200 with an empty (valid) protobuf response.</summary>
public sealed class OtlpSink : IAsyncDisposable
{
    private readonly WebApplication _app;
    private long _traceExports, _traceBytes, _metricExports;

    private OtlpSink(WebApplication app, Uri endpoint)
    {
        _app = app;
        Endpoint = endpoint;
    }

    public Uri Endpoint { get; }

    public readonly record struct Exports(long TraceExports, long TraceBytes, long MetricExports)
    {
        public static Exports operator -(Exports a, Exports b) => new(a.TraceExports - b.TraceExports, a.TraceBytes - b.TraceBytes, a.MetricExports - b.MetricExports);
    }

    public Exports Snapshot() => new(Interlocked.Read(ref _traceExports), Interlocked.Read(ref _traceBytes), Interlocked.Read(ref _metricExports));

    public static async Task<OtlpSink> StartAsync()
    {
        var port = NodeProcess.FreePort();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var app = builder.Build();
        var sink = new OtlpSink(app, new Uri($"http://127.0.0.1:{port}"));
        app.MapPost("/v1/{signal}", async (string signal, HttpContext context) =>
        {
            var buffer = new byte[16 * 1024];
            long read = 0;
            int n;
            while ((n = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0) read += n;
            if (signal == "traces")
            {
                Interlocked.Increment(ref sink._traceExports);
                Interlocked.Add(ref sink._traceBytes, read);
            }
            else if (signal == "metrics")
            {
                Interlocked.Increment(ref sink._metricExports);
            }
            context.Response.StatusCode = (int)HttpStatusCode.OK;
            context.Response.ContentType = "application/x-protobuf";
        });
        await app.StartAsync();
        return sink;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
