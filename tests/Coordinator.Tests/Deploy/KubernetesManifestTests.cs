using System.Text.Json;
using Coordinator.Silo;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// deploy/kubernetes/: every manifest against the Kubernetes JSON schemas (kubernetes-models), then what the schemas
/// cannot know: that the pieces name each other, that Orleans' Kubernetes hosting gets what it reads, and the
/// resource rules. That the probes' paths answer is checked on a running silo (<see cref="PublishedSiloTests"/>).
/// </summary>
public sealed class KubernetesManifestTests
{
    private static readonly Lazy<Task<JsonElement>> Manifests = new(() =>
        DeployFiles.ValidateAsync(["kubernetes", .. Directory.GetFiles(DeployFiles.PathOf("deploy/kubernetes"), "*.yaml").Order()]));

    [Fact]
    public async Task EveryManifest_IsValidAgainstTheKubernetesSchemas()
    {
        var manifests = await Manifests.Value;

        Assert.All(manifests.EnumerateArray(), manifest => Assert.True(manifest.GetProperty("errors").GetArrayLength() == 0,
            $"{manifest.GetProperty("file")}: {manifest.GetProperty("kind")} {manifest.GetProperty("name")}: {manifest.GetProperty("errors")}"));
        var kinds = manifests.EnumerateArray().Select(m => m.GetProperty("kind").GetString()).ToHashSet();
        Assert.Superset(new HashSet<string?> { "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget", "ConfigMap" }, kinds);
    }

    [Fact]
    public async Task SiloPods_CarryTheOrleansLabels_OfTheSilosOwnIds()
    {
        var pod = (await DocumentAsync("Deployment", "coordinator-silo")).Get("spec", "template");
        var config = (await DocumentAsync("ConfigMap", "coordinator")).GetProperty("data");

        var labels = pod.Get("metadata", "labels");
        Assert.Equal(SiloSetup.ServiceId, labels.GetProperty("orleans/serviceId").GetString());
        Assert.Equal(config.GetProperty("Cluster__ClusterId").GetString(), labels.GetProperty("orleans/clusterId").GetString());
    }

    [Fact]
    public async Task SiloContainer_GetsWhatOrleansKubernetesHostingReads()
    {
        var container = SiloContainer(await DocumentAsync("Deployment", "coordinator-silo"));
        var env = container.GetProperty("env").EnumerateArray().ToList();
        var names = env.Select(e => e.GetProperty("name").GetString()).ToList();

        Assert.Equal("metadata.name", FieldRef(env, "POD_NAME"));
        Assert.Equal("metadata.namespace", FieldRef(env, "POD_NAMESPACE"));
        Assert.Equal("status.podIP", FieldRef(env, "POD_IP"));
        Assert.Equal("true", Value(env, "Cluster__KubernetesHosting"));
        // $(POD_IP) is expanded only when POD_IP is defined earlier in the list.
        Assert.Equal("$(POD_IP)", Value(env, "Cluster__AdvertisedAddress"));
        Assert.True(names.IndexOf("POD_IP") < names.IndexOf("Cluster__AdvertisedAddress"));
        var secret = env.Single(e => e.GetProperty("name").GetString() == "ConnectionStrings__Postgres").Get("valueFrom", "secretKeyRef");
        Assert.Equal("coordinator-postgres", secret.GetProperty("name").GetString());
    }

    [Fact]
    public async Task TheSilosServiceAccount_MayGetListWatchAndDeletePods()
    {
        var deployment = await DocumentAsync("Deployment", "coordinator-silo");
        var account = deployment.Get("spec", "template", "spec", "serviceAccountName").GetString()!;
        await DocumentAsync("ServiceAccount", account);
        var binding = (await All()).Single(m => m.GetProperty("kind").GetString() == "RoleBinding").GetProperty("document");
        Assert.Contains(binding.GetProperty("subjects").EnumerateArray(),
            s => s.GetProperty("kind").GetString() == "ServiceAccount" && s.GetProperty("name").GetString() == account);
        var role = await DocumentAsync("Role", binding.Get("roleRef", "name").GetString()!);

        var rule = Assert.Single(role.GetProperty("rules").EnumerateArray());
        Assert.Equal([""], rule.GetProperty("apiGroups").EnumerateArray().Select(g => g.GetString()));
        Assert.Equal(["pods"], rule.GetProperty("resources").EnumerateArray().Select(g => g.GetString()));
        Assert.Superset(new HashSet<string?> { "get", "list", "watch", "delete" },
            rule.GetProperty("verbs").EnumerateArray().Select(v => v.GetString()).ToHashSet());
    }

    [Fact]
    public async Task SiloContainer_RequestsResources_WithoutACpuLimit_AndProbesItsNamedPorts()
    {
        var container = SiloContainer(await DocumentAsync("Deployment", "coordinator-silo"));

        var resources = container.GetProperty("resources");
        Assert.True(resources.GetProperty("requests").TryGetProperty("cpu", out _));
        Assert.True(resources.GetProperty("requests").TryGetProperty("memory", out _));
        Assert.False(resources.TryGetProperty("limits", out var limits) && limits.TryGetProperty("cpu", out _), "the silo must have no CPU limit");

        var ports = container.GetProperty("ports").EnumerateArray().ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("containerPort").GetInt32());
        Assert.Equal(3000, ports["http"]);
        Assert.Equal(8001, ports["aitbc"]);
        Assert.Equal(11111, ports["silo"]);
        Assert.Equal(30000, ports["gateway"]);
        Assert.Equal("/api/v1/health", container.Get("readinessProbe", "httpGet", "path").GetString());
        // preStop's sleep, then the silo's graceful stop (ASP.NET Core's 30 s), before Kubernetes sends SIGKILL.
        var grace = (await DocumentAsync("Deployment", "coordinator-silo")).Get("spec", "template", "spec", "terminationGracePeriodSeconds").GetInt32();
        Assert.True(grace >= 40, $"terminationGracePeriodSeconds {grace} is shorter than preStop plus the graceful stop");
        Assert.Equal("/api/healthz", container.Get("livenessProbe", "httpGet", "path").GetString());
        foreach (var probe in new[] { "startupProbe", "readinessProbe", "livenessProbe" })
        {
            Assert.Contains(container.Get(probe, "httpGet", "port").GetString()!, ports.Keys);
        }
    }

    [Fact]
    public async Task TheServiceAndTheDisruptionBudget_SelectTheSiloPods()
    {
        var deployment = await DocumentAsync("Deployment", "coordinator-silo");
        var labels = deployment.Get("spec", "template", "metadata", "labels");
        var ports = SiloContainer(deployment).GetProperty("ports").EnumerateArray().Select(p => p.GetProperty("name").GetString()).ToHashSet();
        var service = await DocumentAsync("Service", "coordinator");
        var budget = await DocumentAsync("PodDisruptionBudget", "coordinator-silo");

        AssertSelects(labels, service.Get("spec", "selector"));
        AssertSelects(labels, budget.Get("spec", "selector", "matchLabels"));
        AssertSelects(labels, deployment.Get("spec", "selector", "matchLabels"));
        Assert.All(service.Get("spec", "ports").EnumerateArray(), port => Assert.Contains(port.GetProperty("targetPort").GetString(), ports));
        Assert.Equal(1, budget.Get("spec", "maxUnavailable").GetInt32());
    }

    internal static async Task<JsonElement> SiloDeploymentAsync() => await DocumentAsync("Deployment", "coordinator-silo");

    internal static JsonElement SiloContainer(JsonElement deployment) =>
        deployment.Get("spec", "template", "spec", "containers").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "silo");

    private static async Task<IEnumerable<JsonElement>> All() => (await Manifests.Value).EnumerateArray();

    private static async Task<JsonElement> DocumentAsync(string kind, string name) =>
        (await All()).Single(m => m.GetProperty("kind").GetString() == kind && m.GetProperty("name").GetString() == name).GetProperty("document");

    private static string? FieldRef(List<JsonElement> env, string name) =>
        env.Single(e => e.GetProperty("name").GetString() == name).Get("valueFrom", "fieldRef", "fieldPath").GetString();

    private static string? Value(List<JsonElement> env, string name) =>
        env.Single(e => e.GetProperty("name").GetString() == name).GetProperty("value").GetString();

    private static void AssertSelects(JsonElement labels, JsonElement selector)
    {
        foreach (var wanted in selector.EnumerateObject())
        {
            Assert.True(labels.TryGetProperty(wanted.Name, out var value) && value.GetString() == wanted.Value.GetString(),
                $"the silo pods lack the label {wanted.Name}={wanted.Value}");
        }
    }
}

internal static class JsonPath
{
    /// <summary>The element at a path of property names; fails the test naming the path when one is missing.</summary>
    public static JsonElement Get(this JsonElement element, params string[] path)
    {
        foreach (var name in path)
        {
            Assert.True(element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out element), $"missing: {string.Join('.', path)}");
        }
        return element;
    }
}
