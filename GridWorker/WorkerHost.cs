using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace GridWorker;

/// <summary>The Generic Host that <c>grid-worker run</c> runs the agent on.</summary>
public static class WorkerHost
{
    /// <summary>The one named client for the coordinator, the backend and attachment downloads.</summary>
    public const string HttpClientName = "grid-worker";

    /// <summary>
    /// A host builder with the agent as its <see cref="WorkerService"/>, reporting to <paramref name="output"/> on
    /// <paramref name="time"/>, and <see cref="SignalLifetime"/> for Ctrl-C and SIGTERM.
    /// </summary>
    public static HostApplicationBuilder CreateBuilder(WorkerSettings settings, TextWriter output, TimeProvider time)
    {
        // No default configuration sources (appsettings.json, DOTNET_ variables, the command line) and no logging
        // providers: the settings are WorkerSettings.Parse's alone, and the console is the reporter's.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var services = builder.Services;
        // The agent bounds its own shutdown (the grace period, then the running jobs are failed and reported; a second
        // signal fails them at once), so the host waits for it instead of giving up after its default 30 s.
        services.Configure<HostOptions>(options => options.ShutdownTimeout = Timeout.InfiniteTimeSpan);
        services.AddSingleton(settings);
        services.AddSingleton(time);
        services.AddSingleton(new Reporter(output, settings.JsonOutput, time));
        services.AddHttpClient(HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(CreateHandler)
            .ConfigureHttpClient(ConfigureClient)
            // The agent holds its one client for the whole run, so the factory would never get to rotate its handler.
            .SetHandlerLifetime(Timeout.InfiniteTimeSpan)
            // The reporter says what the operator needs; per-request log scopes would go to no provider anyway.
            .RemoveAllLoggers();
        services.AddSingleton(provider => new WorkerAgent(
            settings,
            provider.GetRequiredService<IHttpClientFactory>().CreateClient(HttpClientName),
            provider.GetRequiredService<Reporter>(),
            provider.GetRequiredService<TimeProvider>()));
        services.AddSingleton<WorkerService>();
        services.AddHostedService(provider => provider.GetRequiredService<WorkerService>());
        services.AddSingleton<IHostLifetime, SignalLifetime>();
        return builder;
    }

    /// <summary>Each call sets its own deadline, so the handler only bounds connecting and idle connections.</summary>
    internal static SocketsHttpHandler CreateHandler() => new()
    {
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
        ConnectTimeout = TimeSpan.FromSeconds(10),
    };

    internal static void ConfigureClient(HttpClient client)
    {
        client.Timeout = Timeout.InfiniteTimeSpan;
        client.DefaultRequestHeaders.Add("User-Agent", "grid-worker/" + WorkerAgent.AgentVersion);
    }
}
