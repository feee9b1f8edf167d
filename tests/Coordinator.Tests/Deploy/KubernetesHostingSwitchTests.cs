using Coordinator.Silo;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Coordinator.Tests.Deploy;

/// <summary>
/// <c>Cluster:KubernetesHosting</c> switches Orleans' Kubernetes hosting on; off (the default) the silo is set up as
/// before, and on outside a pod the start-up says what is wrong instead of failing later in the Kubernetes client.
/// </summary>
public sealed class KubernetesHostingSwitchTests
{
    private const string ConnectionString = "Host=127.0.0.1;Port=1;Username=nobody;Database=nothing";

    [Fact]
    public void Off_ByDefault_RegistersNothingOfKubernetes()
    {
        var builder = WebApplication.CreateBuilder();
        builder.UseCoordinatorSilo(ConnectionString);

        Assert.DoesNotContain(builder.Services, service => IsKubernetesHosting(service.ImplementationType ?? service.ServiceType));
    }

    [Fact]
    public void On_OutsideAPod_StopsWithAClearMessage()
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Cluster:KubernetesHosting"] = "true" });

        var error = Assert.Throws<OptionsValidationException>(() => builder.UseCoordinatorSilo(ConnectionString));
        Assert.Contains("KUBERNETES_SERVICE_HOST", error.Message, StringComparison.Ordinal);
    }

    // The tests of this class run one after another, and nothing else in the assembly reads this variable.
    [Fact]
    public void On_InAPod_AddsOrleansKubernetesHosting()
    {
        var before = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
        Environment.SetEnvironmentVariable("KUBERNETES_SERVICE_HOST", "10.0.0.1");
        try
        {
            var builder = WebApplication.CreateBuilder();
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Cluster:KubernetesHosting"] = "true" });
            builder.UseCoordinatorSilo(ConnectionString);

            Assert.Contains(builder.Services, service => IsKubernetesHosting(service.ImplementationType ?? service.ServiceType));
        }
        finally
        {
            Environment.SetEnvironmentVariable("KUBERNETES_SERVICE_HOST", before);
        }
    }

    private static bool IsKubernetesHosting(Type type) => type.Namespace == "Orleans.Hosting.Kubernetes";
}
