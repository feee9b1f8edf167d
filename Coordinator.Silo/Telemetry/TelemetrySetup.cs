using System.ComponentModel.DataAnnotations;
using Coordinator.Grains.Telemetry;
using Microsoft.Extensions.Options;
using Npgsql;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Coordinator.Silo.Telemetry;

/// <summary>Where the coordinator's metrics and traces go, bound from the <c>Telemetry</c> configuration section.</summary>
public sealed class TelemetryOptions
{
    public const string Section = "Telemetry";

    /// <summary>The OTLP collector; unset (the default), nothing is pushed.</summary>
    public OtlpTelemetryOptions Otlp { get; set; } = new();

    /// <summary>The Prometheus scrape endpoint; off by default.</summary>
    public PrometheusTelemetryOptions Prometheus { get; set; } = new();

    /// <summary>Traces: on when an OTLP endpoint is set, unless turned off here.</summary>
    public TracingTelemetryOptions Tracing { get; set; } = new();
}

/// <summary>The OTLP collector (<c>Telemetry:Otlp</c>).</summary>
public sealed class OtlpTelemetryOptions
{
    /// <summary>The collector's address, e.g. <c>http://otel-collector:4317</c>. Default: unset (no OTLP export).</summary>
    public Uri? Endpoint { get; set; }

    /// <summary><c>grpc</c> (port 4317) or <c>http/protobuf</c> (port 4318). Default: grpc.</summary>
    [RegularExpression("^(grpc|http/protobuf)$")]
    public string Protocol { get; set; } = "grpc";
}

/// <summary>The Prometheus scrape endpoint (<c>Telemetry:Prometheus</c>).</summary>
public sealed class PrometheusTelemetryOptions
{
    /// <summary>Serve the scrape endpoint. Default: false.</summary>
    public bool Enabled { get; set; }

    /// <summary>The scrape path. Default: <c>/metrics</c>.</summary>
    [RegularExpression("^/.*")]
    public string Path { get; set; } = "/metrics";

    /// <summary>
    /// The operator port the endpoint answers on (Kestrel listens on it too, and it serves nothing else); 0 serves it
    /// on the main port, for a silo only a private network reaches. Default: 9464 (the exporter's usual port).
    /// </summary>
    [Range(0, 65535)]
    public int Port { get; set; } = 9464;

    /// <summary>
    /// Also serve the scrape endpoint on the main port at this path under <c>/operator</c> (e.g. <c>/operator/metrics</c>),
    /// where it needs operator authentication (<c>Authorization: Bearer</c> an operator key): for a scraper that reaches
    /// the silo only through its public address. Default: unset.
    /// </summary>
    public string? OperatorPath { get; set; }
}

/// <summary>Traces (<c>Telemetry:Tracing</c>).</summary>
public sealed class TracingTelemetryOptions
{
    /// <summary>Record traces. Default: on when <see cref="OtlpTelemetryOptions.Endpoint"/> is set, off otherwise.</summary>
    public bool? Enabled { get; set; }

    /// <summary>
    /// The share of new traces recorded (parent-based: a request that arrives sampled stays sampled). Default: 0.1, which
    /// exports about a sixth of the bytes that 1 does (BENCHMARKS.md, "The cost of telemetry"); 1 records every job.
    /// </summary>
    [Range(0.0, 1.0)]
    public double SamplingRatio { get; set; } = 0.1;
}

/// <summary>Metrics, traces and JSON logs through OpenTelemetry and the console logger, from configuration.</summary>
public static class TelemetrySetup
{
    /// <summary>The service name on every exported metric and span.</summary>
    public const string ServiceName = "coordinator";

    /// <summary>Orleans' own meter: grain activations, messaging, membership and more.</summary>
    public const string OrleansMeterName = "Microsoft.Orleans";

    /// <summary>
    /// The grain calls' spans, inside sampled traces only (<see cref="Coordinator.Grains.Telemetry.SampledTracePropagation"/>).
    /// Orleans' own sources (its runtime's system calls, activations, placement) are left out: they add spans to no job's
    /// trace and cost recording on every call.
    /// </summary>
    public static readonly IReadOnlyList<string> GrainCallActivitySources = [Coordinator.Grains.Telemetry.SampledTracePropagation.SourceName];

    /// <summary>
    /// The instruments of Orleans' meter that are exported: activations and grains by type, memory, the scheduler, the
    /// watchdog, reminders, connections, and the messaging failures (rejected, expired, dropped, failed, rerouted, timed out).
    /// The rest record on every message or directory lookup (sizes, latencies, per-stage counts): they cost node CPU on
    /// every grain call (BENCHMARKS.md, "The cost of telemetry") and are dropped, so they are not even recorded.
    /// </summary>
    public static readonly IReadOnlyList<string> OrleansInstrumentsKept =
    [
        "orleans-catalog-", "orleans-grains", "orleans-system-targets", "orleans-runtime-", "orleans-scheduler-", "orleans-watchdog-",
        "orleans-reminders-", "orleans-networking-", "orleans-client-connected-gateways", "orleans-gateway-connected-clients",
        "orleans-gateway-load-shedding", "orleans-consistent-ring-size", "orleans-directory-partition-size", "orleans-directory-cache-size",
        "orleans-messaging-rejected", "orleans-messaging-expired", "orleans-messaging-sent-dropped", "orleans-messaging-sent-failed",
        "orleans-messaging-rerouted", "orleans-app-requests-timedout", "orleans-app-requests-canceled",
    ];

    /// <summary>Whether an instrument of Orleans' meter is exported (<see cref="OrleansInstrumentsKept"/>).</summary>
    public static bool KeepsOrleansInstrument(string name) => OrleansInstrumentsKept.Any(kept => name.StartsWith(kept, StringComparison.Ordinal));

    /// <summary>
    /// Instruments of ASP.NET Core's and Npgsql's meters that record on every request, statement or buffer and that no
    /// figure of the issue needs: dropped by a view, so not even recorded (BENCHMARKS.md, "The cost of telemetry"). Kept:
    /// <c>http.server.request.duration</c>, <c>aspnetcore.rate_limiting.requests</c> (refusals), Kestrel's connections,
    /// Npgsql's <c>db.client.operation.duration</c>, its failures and its connection pool.
    /// </summary>
    public static readonly IReadOnlyList<string> PerRequestInstrumentsDropped =
    [
        "http.server.active_requests", "aspnetcore.routing.match_attempts", "aspnetcore.rate_limiting.request_lease.duration",
        "aspnetcore.rate_limiting.active_request_leases", "aspnetcore.rate_limiting.queued_requests", "aspnetcore.rate_limiting.request.time_in_queue",
        "aspnetcore.authentication.", "aspnetcore.authorization.", "aspnetcore.memory_pool.", "kestrel.tls_handshake.",
        "db.client.operation.npgsql.executing", "db.client.operation.npgsql.bytes_written", "db.client.operation.npgsql.bytes_read",
    ];

    /// <summary>Whether an instrument is one of <see cref="PerRequestInstrumentsDropped"/> (a name, or a prefix ending in a dot).</summary>
    public static bool DropsPerRequestInstrument(string name) =>
        PerRequestInstrumentsDropped.Any(dropped => dropped.EndsWith('.') ? name.StartsWith(dropped, StringComparison.Ordinal) : name == dropped);

    public static WebApplicationBuilder AddCoordinatorTelemetry(this WebApplicationBuilder builder)
    {
        // The settings are nested, which data annotations do not reach: each is checked here, and a bad one stops the start.
        builder.Services.AddOptions<TelemetryOptions>().Bind(builder.Configuration.GetSection(TelemetryOptions.Section))
            .Validate(o => o.Otlp.Protocol is "grpc" or "http/protobuf", "Telemetry:Otlp:Protocol must be grpc or http/protobuf.")
            .Validate(o => o.Prometheus.Path.StartsWith('/'), "Telemetry:Prometheus:Path must start with '/' (e.g. /metrics).")
            .Validate(o => o.Prometheus.Port is >= 0 and <= 65535, "Telemetry:Prometheus:Port must be a port (1-65535), or 0 for the main port.")
            // The open endpoint's middleware runs before the operator gate: an operator path must go through OperatorPath.
            .Validate(o => !o.Prometheus.Path.StartsWith("/operator", StringComparison.OrdinalIgnoreCase),
                "Telemetry:Prometheus:Path must not be under /operator; set Telemetry:Prometheus:OperatorPath to serve the metrics there, behind operator authentication.")
            .Validate(o => o.Prometheus.OperatorPath is null || (o.Prometheus.OperatorPath.StartsWith("/operator/", StringComparison.OrdinalIgnoreCase) && o.Prometheus.OperatorPath.Length > "/operator/".Length),
                "Telemetry:Prometheus:OperatorPath must be a path under /operator/ (e.g. /operator/metrics).")
            .Validate(o => o.Tracing.SamplingRatio is >= 0 and <= 1, "Telemetry:Tracing:SamplingRatio must be between 0 and 1.")
            .ValidateOnStart();
        var options = builder.Configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();

        // Logging:Json turns the console's lines into one JSON object each (the console formatter "json"), for a log shipper.
        // Each line carries its scopes: the current activity's TraceId and SpanId, the request's path, and on every line
        // written while handling a job its JobId (JobLogScope: the API's job endpoints, the job grain's calls, webhook sends).
        if (builder.Configuration.GetValue<bool>("Logging:Json"))
        {
            builder.Logging.Configure(logging => logging.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId | ActivityTrackingOptions.ParentId);
            builder.Logging.AddJsonConsole(json =>
            {
                json.IncludeScopes = true;
                json.UseUtcTimestamp = true;
                json.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }

        var otlp = options.Otlp.Endpoint;
        var prometheus = options.Prometheus.Enabled;
        var tracing = options.Tracing.Enabled ?? otlp is not null;
        if (otlp is null && !prometheus && !tracing) return builder;

        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(ServiceName, serviceInstanceId: Environment.MachineName));
        if (otlp is not null || prometheus)
        {
            telemetry.WithMetrics(metrics =>
            {
                metrics.AddMeter(CoordinatorMetrics.MeterName, OrleansMeterName).AddAspNetCoreInstrumentation().AddNpgsqlInstrumentation()
                    .AddView(instrument => (instrument.Meter.Name == OrleansMeterName && !KeepsOrleansInstrument(instrument.Name)) || DropsPerRequestInstrument(instrument.Name) ? MetricStreamConfiguration.Drop : null);
                if (prometheus) metrics.AddPrometheusExporter(prometheusOptions => prometheusOptions.ScrapeEndpointPath = options.Prometheus.Path);
                if (otlp is not null) metrics.AddOtlpExporter(exporter => Configure(exporter, options.Otlp, "metrics"));
            });
        }
        if (tracing)
        {
            telemetry.WithTracing(traces =>
            {
                traces.SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(options.Tracing.SamplingRatio)))
                    .AddSource([.. GrainCallActivitySources])
                    // Health checks and scrapes are not worth a trace each.
                    .AddAspNetCoreInstrumentation(aspNet => aspNet.Filter = context =>
                        !context.Request.Path.StartsWithSegments(options.Prometheus.Path, StringComparison.Ordinal) &&
                        !context.Request.Path.StartsWithSegments("/api/v1/health", StringComparison.Ordinal))
                    .AddNpgsql();
                if (otlp is not null) traces.AddOtlpExporter(exporter => Configure(exporter, options.Otlp, "traces"));
            });
        }
        return builder;
    }

    /// <summary>The addresses Kestrel must listen on for telemetry: the Prometheus operator port, when it has one.</summary>
    public static IEnumerable<string> ExtraUrls(IConfiguration configuration)
    {
        var options = configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        if (options.Prometheus.Enabled && options.Prometheus.Port > 0) yield return $"http://0.0.0.0:{options.Prometheus.Port}";
    }

    /// <summary>
    /// Serves the scrape endpoint when it is on: on its operator port (which then answers nothing else) or, with port 0,
    /// on every port. Call before the API's middleware.
    /// </summary>
    public static IApplicationBuilder UseCoordinatorTelemetry(this IApplicationBuilder app)
    {
        // Gauges exist once their owners do: create them now, so the first scrape has them all.
        app.ApplicationServices.GetRequiredService<PendingJobsGauges>();
        app.ApplicationServices.GetRequiredService<Coordinator.Api.Workers.PollsWaiting>();
        var options = app.ApplicationServices.GetRequiredService<IOptions<TelemetryOptions>>().Value.Prometheus;
        if (!options.Enabled) return app;
        // On the main port under /operator: an endpoint, so it runs after the operator gate (Coordinator.Api/Operator).
        if (options.OperatorPath is { } operatorPath && app is IEndpointRouteBuilder endpoints) endpoints.MapPrometheusScrapingEndpoint(operatorPath);
        var port = options.Port;
        bool OnOperatorPort(HttpContext context) => port == 0 || context.Connection.LocalPort == port;
        app.UseOpenTelemetryPrometheusScrapingEndpoint(context => OnOperatorPort(context) && context.Request.Path == options.Path);
        if (port > 0)
        {
            app.Use(async (context, next) =>
            {
                if (context.Connection.LocalPort != port)
                {
                    await next(context);
                    return;
                }
                context.Response.StatusCode = StatusCodes.Status404NotFound;
            });
        }
        return app;
    }

    // Over HTTP an endpoint set in code is used as it is, so each signal's path is added here (as the exporter does for
    // OTEL_EXPORTER_OTLP_ENDPOINT); over gRPC the address is the collector's.
    private static void Configure(OtlpExporterOptions exporter, OtlpTelemetryOptions settings, string signal)
    {
        var http = settings.Protocol == "http/protobuf";
        exporter.Protocol = http ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
        exporter.Endpoint = http ? new Uri($"{settings.Endpoint!.ToString().TrimEnd('/')}/v1/{signal}") : settings.Endpoint!;
    }
}
