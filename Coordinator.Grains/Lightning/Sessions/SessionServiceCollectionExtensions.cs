using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Grains.Lightning.Sessions;

public static class SessionServiceCollectionExtensions
{
    /// <summary>
    /// Adds prepaid sessions: their store, the request runner and the <c>Lightning:Sessions</c> settings (validated at
    /// start-up). Needs <c>AddGrid</c>, <c>AddLightningPayments</c>, <c>AddSessionMacaroons</c>, the agent's options and an
    /// <see cref="Agent.IAgentRunner"/>.
    /// </summary>
    public static IServiceCollection AddLightningSessions(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<AgentSessionOptions>().Bind(configuration.GetSection(AgentSessionOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SessionStore>();
        services.AddSingleton<SessionRequests>();
        return services;
    }
}
