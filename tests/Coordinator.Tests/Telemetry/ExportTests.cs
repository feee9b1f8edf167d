using System.Diagnostics;
using System.Net;
using Coordinator.Tests.Infrastructure;
using OpenTelemetry.Trace;

namespace Coordinator.Tests.Telemetry;

/// <summary>What leaves the node: the Prometheus scrape endpoint and traces (through OpenTelemetry's in-memory exporter).</summary>
public sealed class ExportTests
{
    [Fact]
    public async Task Prometheus_AnswersOnItsOperatorPort_WithTheInstrumentNames()
    {
        var port = GridHost.FreeTcpPort();
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?>
        {
            ["Telemetry:Prometheus:Enabled"] = "true",
            ["Telemetry:Prometheus:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        // Something to report: a job submitted and a poll that parks.
        var client = await host.NewAccountAsync();
        await client.SubmitAsync(new { model = ApiClient.Unique("prom") + ":1b", model_match = "exact", prompt = "p" });

        using var operatorPort = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        var response = await operatorPort.GetAsync(new Uri("metrics", UriKind.Relative));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        Assert.Contains("coordinator_jobs_submitted", text, StringComparison.Ordinal);
        Assert.Contains("family=", text, StringComparison.Ordinal);
        Assert.Contains("coordinator_dispatch_polls_waiting", text, StringComparison.Ordinal);
        // Orleans' own meter (grain activations, messaging) goes out with ours.
        Assert.Contains("orleans_", text, StringComparison.Ordinal);
        // ASP.NET Core's request duration goes out; its per-request routing and in-flight counts are dropped by a view.
        Assert.Contains("http_server_request_duration", text, StringComparison.Ordinal);
        Assert.DoesNotContain("aspnetcore_routing_match_attempts", text, StringComparison.Ordinal);
        Assert.DoesNotContain("http_server_active_requests", text, StringComparison.Ordinal);

        // The operator port serves nothing else, and the public port does not serve the scrape.
        Assert.Equal(HttpStatusCode.NotFound, (await operatorPort.GetAsync(new Uri("api/v1/health", UriKind.Relative))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await host.Http.GetAsync(new Uri("/metrics", UriKind.Relative))).StatusCode);
    }

    [Fact]
    public async Task LoggingJson_SwitchesTheConsoleToTheJsonFormatter()
    {
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Logging:Json"] = "true" });
        var console = host.Get<Microsoft.Extensions.Options.IOptionsMonitor<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>>().CurrentValue;
        Assert.Equal(Microsoft.Extensions.Logging.Console.ConsoleFormatterNames.Json, console.FormatterName);
    }

    [Fact]
    public async Task Prometheus_IsAbsentByDefault()
    {
        await using var host = await GridHost.StartAsync();
        Assert.Equal(HttpStatusCode.NotFound, (await host.Http.GetAsync(new Uri("/metrics", UriKind.Relative))).StatusCode);
    }

    [Fact]
    public async Task UnsampledTrace_StartsNoActivityForItsGrainCallsOrStatements()
    {
        // A request that arrives unsampled (traceparent flags 00): its grain calls and statements must not even start an
        // activity (SampledTracePropagation, Npgsql's tracing filter): OpenTelemetry's SDK would create one for propagation
        // on every call and statement, which costs node CPU (BENCHMARKS.md, "The cost of telemetry").
        var traceId = ActivityTraceId.CreateRandom();
        var statements = 0;
        var grainCalls = 0;
        using var listener = new ActivityListener
        {
            // Orleans' own grain-call source too: its filters (AddActivityPropagation) started one on every call.
            ShouldListenTo = source => source.Name is "Npgsql" or Coordinator.Grains.Telemetry.SampledTracePropagation.SourceName or "Microsoft.Orleans.Application",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.None,
            ActivityStarted = activity =>
            {
                if (activity.TraceId != traceId) return;
                if (activity.Source.Name == "Npgsql") Interlocked.Increment(ref statements);
                else Interlocked.Increment(ref grainCalls);
            },
        };
        ActivitySource.AddActivityListener(listener);
        await using var host = await GridHost.StartAsync(settings: new Dictionary<string, string?> { ["Telemetry:Tracing:Enabled"] = "true", ["Telemetry:Tracing:SamplingRatio"] = "1" });
        var client = await host.NewAccountAsync();
        client.Http.DefaultRequestHeaders.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-00");
        var id = await client.SubmitAsync(new { model = ApiClient.Unique("unsampled") + ":1b", model_match = "exact", prompt = "p" });
        await client.GetJobAsync(id);
        Assert.Equal(0, Volatile.Read(ref statements));
        Assert.Equal(0, Volatile.Read(ref grainCalls));
        // A sampled one (flags 01) still traces its grain calls and statements.
        client.Http.DefaultRequestHeaders.Remove("traceparent");
        client.Http.DefaultRequestHeaders.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
        await client.GetJobAsync(await client.SubmitAsync(new { model = ApiClient.Unique("sampled") + ":1b", model_match = "exact", prompt = "p" }));
        Assert.True(Volatile.Read(ref statements) > 0, "no statement activity in a sampled trace");
        Assert.True(Volatile.Read(ref grainCalls) > 0, "no grain call activity in a sampled trace");
    }

    [Fact]
    public async Task Trace_LinksTheSubmission_ThroughTheGrainCall_ToItsStatements()
    {
        var exported = new List<Activity>();
        await using var host = await GridHost.StartAsync(
            settings: new Dictionary<string, string?> { ["Telemetry:Tracing:Enabled"] = "true", ["Telemetry:Tracing:SamplingRatio"] = "1" },
            services: services => services.ConfigureOpenTelemetryTracerProvider(traces => traces.AddInMemoryExporter(exported)));
        var client = await host.NewAccountAsync();
        // The request names its own (sampled) trace: the exporter sees every span of the process, other tests' included,
        // so the submission's server span is found by its trace, not by its path alone.
        var traceId = ActivityTraceId.CreateRandom();
        client.Http.DefaultRequestHeaders.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
        await client.SubmitAsync(new { model = ApiClient.Unique("trace") + ":1b", model_match = "exact", prompt = "p" });

        Activity[] spans;
        Activity? submit;
        // The server span ends once the response is written, a moment after the client has it.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            lock (exported) spans = [.. exported];
            submit = spans.FirstOrDefault(s => s.TraceId == traceId && s.Kind == ActivityKind.Server
                && s.GetTagItem("http.request.method") as string == "POST" && s.GetTagItem("url.path") as string == "/api/v1/jobs");
            if (submit is null) await Task.Delay(50);
        }
        while (submit is null && DateTime.UtcNow < deadline);
        Assert.True(submit is not null, "no server span for POST /api/v1/jobs among: " + string.Join(", ", spans.Select(s => $"{s.Source.Name}:{s.DisplayName}")));

        var trace = spans.Where(s => s.TraceId == submit.TraceId).ToList();
        var byId = trace.ToDictionary(s => s.SpanId);
        bool UnderGrainCall(Activity span)
        {
            for (var parent = span.ParentSpanId; byId.TryGetValue(parent, out var up); parent = up.ParentSpanId)
            {
                if (up.Source.Name == Coordinator.Grains.Telemetry.SampledTracePropagation.SourceName) return true;
            }
            return false;
        }
        // The job's INSERT ran in the dispatcher grain: its span hangs under the grain call, under the HTTP request.
        Assert.True(trace.Any(s => s.Source.Name == "Npgsql" && UnderGrainCall(s)),
            "no statement under a grain call in the trace: " + string.Join(", ", trace.Select(s => $"{s.Source.Name}:{s.DisplayName}")));
    }
}
