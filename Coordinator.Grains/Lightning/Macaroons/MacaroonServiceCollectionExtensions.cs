using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.Grains.Lightning.Macaroons;

public static class MacaroonServiceCollectionExtensions
{
    /// <summary>
    /// Adds session macaroons: the grid's root keys and <see cref="SessionMacaroons"/>. Needs what <c>AddGrid</c> adds:
    /// the <c>NpgsqlDataSource</c>, the shared Data Protection key ring and a <see cref="TimeProvider"/>.
    /// </summary>
    public static IServiceCollection AddSessionMacaroons(this IServiceCollection services)
    {
        services.AddSingleton<MacaroonRootKeys>();
        services.AddSingleton<SessionMacaroons>();
        return services;
    }
}
