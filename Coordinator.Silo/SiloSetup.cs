using System.ComponentModel.DataAnnotations;
using System.Net;
using Microsoft.Extensions.Options;
using Npgsql;
using Orleans.Configuration;

namespace Coordinator.Silo;

/// <summary>This silo's place in the cluster, bound from the <c>Cluster</c> configuration section.</summary>
public sealed class SiloOptions
{
    public const string Section = "Cluster";

    /// <summary>The cluster this silo joins; silos on one database with the same id form one cluster. Default: <c>coordinator</c>.</summary>
    [Required]
    public string ClusterId { get; set; } = "coordinator";

    /// <summary>The port other silos reach this one on. Default: 11111 (Orleans' own default).</summary>
    [Range(1, 65535)]
    public int SiloPort { get; set; } = 11111;

    /// <summary>The port external Orleans clients would use; 0 turns the gateway off. Default: 30000 (Orleans' own default).</summary>
    [Range(0, 65535)]
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// The address this silo advertises to the others. Default: 127.0.0.1, which is right for silos on one machine; on
    /// several hosts set it to an address the other silos can reach (silo traffic stays on the operator's network).
    /// </summary>
    [Required]
    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// How long a probe of another silo may take before it counts as missed. Default: 5 s (Orleans' default): with
    /// <see cref="MissedProbesLimit"/> 3 a killed silo is declared dead in about 10–12 s. Tests use 1 s.
    /// </summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Missed probes before a silo suspects another. Default: 3 (Orleans' default).</summary>
    [Range(1, 10)]
    public int MissedProbesLimit { get; set; } = 3;

    /// <summary>How often a silo rereads the membership table. Default: 60 s (Orleans' default). Tests use 2 s.</summary>
    public TimeSpan TableRefreshTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Run as a Kubernetes pod (Orleans' <c>UseKubernetesHosting</c>): the silo takes its name from <c>POD_NAME</c>, watches
    /// the pods labelled <c>orleans/serviceId</c> and <c>orleans/clusterId</c> in <c>POD_NAMESPACE</c>, and declares a silo
    /// dead as soon as its pod is deleted instead of waiting for the failure detector. Needs the RBAC of
    /// deploy/kubernetes/rbac.yaml. Default: false, and nothing changes outside Kubernetes.
    /// </summary>
    public bool KubernetesHosting { get; set; }
}

/// <summary>Makes the web host a silo: clustering on the coordinator's PostgreSQL, ports and failure detection from configuration.</summary>
public static class SiloSetup
{
    /// <summary>
    /// Orleans' ServiceId of every coordinator cluster (the ADO.NET providers key their rows by ClusterId). Kubernetes
    /// pods carry it as the <c>orleans/serviceId</c> label (deploy/kubernetes/silo.yaml).
    /// </summary>
    public const string ServiceId = "coordinator";

    /// <summary>
    /// A worker's poll is a grain call that lasts its window (up to <see cref="Coordinator.Grains.DispatchOptions.MaxLongPollTimeout"/>):
    /// only a call longer than that is worth a warning.
    /// </summary>
    public static readonly TimeSpan LongRequestWarning = TimeSpan.FromMinutes(5);

    public static WebApplicationBuilder UseCoordinatorSilo(this WebApplicationBuilder builder, string connectionString)
    {
        builder.Services.AddOptions<SiloOptions>().Bind(builder.Configuration.GetSection(SiloOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        var options = builder.Configuration.GetSection(SiloOptions.Section).Get<SiloOptions>() ?? new SiloOptions();
        if (!IPAddress.TryParse(options.AdvertisedAddress, out var advertised))
        {
            throw new OptionsValidationException(SiloOptions.Section, typeof(SiloOptions),
                [$"Cluster:AdvertisedAddress '{options.AdvertisedAddress}' is not an IP address."]);
        }
        if (options.KubernetesHosting && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST")))
        {
            throw new OptionsValidationException(SiloOptions.Section, typeof(SiloOptions),
                ["Cluster:KubernetesHosting is on, but this process is not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set). Turn it off outside Kubernetes."]);
        }

        var tls = builder.Configuration.GetSection(SiloTlsOptions.Section).Get<SiloTlsOptions>() ?? new SiloTlsOptions();

        // The providers get their own small pool: membership and heartbeats are a few statements a second at most, and
        // they must not queue behind the engine's hot path or take its session settings.
        var providerConnections = new NpgsqlConnectionStringBuilder(connectionString) { MaxPoolSize = 10, ApplicationName = "coordinator-silo" };
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(cluster =>
            {
                cluster.ClusterId = options.ClusterId;
                cluster.ServiceId = ServiceId;
            });
            silo.ConfigureEndpoints(advertised, options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: true);
            silo.UseAdoNetClustering(clustering =>
            {
                clustering.Invariant = "Npgsql";
                clustering.ConnectionString = providerConnections.ConnectionString;
            });
            silo.Configure<ClusterMembershipOptions>(membership =>
            {
                membership.ProbeTimeout = options.ProbeTimeout;
                membership.NumMissedProbesLimit = options.MissedProbesLimit;
                membership.TableRefreshTimeout = options.TableRefreshTimeout;
            });
            silo.Configure<SiloMessagingOptions>(messaging => messaging.RequestProcessingWarningTime = LongRequestWarning);
            // Mixed versions during a rolling upgrade (deploy/README.md, "Mixed versions during a roll"): Orleans' own
            // defaults, set here so that an Orleans upgrade cannot change them unnoticed. A call made for a grain
            // interface's [Version(n)] goes to an activation of version n or higher; a new activation takes any compatible
            // version, so the first new silos of a roll are not handed every new activation.
            silo.Configure<GrainVersioningOptions>(versioning =>
            {
                versioning.DefaultCompatibilityStrategy = nameof(Orleans.Versions.Compatibility.BackwardCompatible);
                versioning.DefaultVersionSelectorStrategy = nameof(Orleans.Versions.Selector.AllCompatibleVersions);
            });
            // Grain calls inside a sampled trace carry it (W3C traceparent), so one job's path (HTTP request, grain calls,
            // statements) is one trace; calls outside one carry nothing (SampledTracePropagation, in place of Orleans' own).
            silo.AddOutgoingGrainCallFilter<Coordinator.Grains.Telemetry.SampledTracePropagation>();
            silo.AddIncomingGrainCallFilter<Coordinator.Grains.Telemetry.SampledTracePropagation>();
            // Mutual TLS on the silo and gateway ports when Cluster:Tls:CertificatePath is set (deploy/README.md, "Silos on several hosts").
            silo.UseCoordinatorTls(tls);
            // The Orleans Dashboard, only where operator keys gate it (/operator/dashboard, Coordinator.Api/Operator).
            if (Coordinator.Api.Operator.OperatorOptions.DashboardOn(builder.Configuration)) Orleans.Dashboard.ServiceCollectionExtensions.AddDashboard(silo);
            if (options.KubernetesHosting)
            {
                // After the ClusterOptions above: ORLEANS_CLUSTER_ID / ORLEANS_SERVICE_ID, when the pod sets them, win.
                // The advertised address stays Cluster:AdvertisedAddress (the manifests set it to the pod's IP).
                silo.UseKubernetesHosting();
            }
        });
        return builder;
    }
}
