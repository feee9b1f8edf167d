using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Grains.Lightning.Agent;

public static class AgentServiceCollectionExtensions
{
    /// <summary>
    /// Adds the Lightning agent: the Lightning node and the price oracle (<see cref="LightningServiceCollectionExtensions.AddLightningPayments"/>),
    /// <see cref="AgentOptions"/> (section <c>Lightning:Agent</c>, validated at start-up), and the grid runner
    /// (<see cref="IAgentRunner"/>) with its account, and the pay-per-job jobs (<see cref="AgentJobs"/>, <see cref="AgentRefunds"/>). Needs <see cref="GridServiceCollectionExtensions.AddGrid"/>.
    /// </summary>
    public static IServiceCollection AddLightningAgent(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddLightningPayments(configuration);
        services.AddOptions<AgentOptions>().Bind(configuration.GetSection(AgentOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<AgentAccount>();
        services.AddSingleton<AgentRunner>();
        services.AddSingleton<IAgentRunner>(sp => sp.GetRequiredService<AgentRunner>());
        services.AddSingleton<AgentJobStore>();
        services.AddSingleton<AgentJobMachine>();
        services.AddSingleton<AgentJobs>();
        services.AddSingleton<AgentRefunds>();
        return services;
    }
}
