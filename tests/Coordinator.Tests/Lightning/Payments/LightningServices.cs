using System.Collections.Concurrent;
using Coordinator.Grains.Lightning;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Coordinator.Tests.Lightning.Payments;

/// <summary>
/// The services <c>AddLightningPayments</c> registers, built from in-memory configuration as a silo would build them, with
/// every log line kept (at Trace, HttpClient's request logs included) so that tests can look for what must never be logged.
/// </summary>
public sealed class LightningServices : IAsyncDisposable
{
    private readonly ServiceProvider _provider;

    public LightningServices(IDictionary<string, string?> settings, TimeProvider? time = null, Action<IServiceCollection>? configure = null)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Trace).AddProvider(Logs));
        if (time is not null) services.AddSingleton(time);
        configure?.Invoke(services);
        services.AddLightningPayments(configuration);
        _provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true });
    }

    public CollectingLoggerProvider Logs { get; } = new();

    public T Get<T>() where T : notnull => _provider.GetRequiredService<T>();

    /// <summary>Settings for an LNbits node at <paramref name="fake"/>, with its keys unless others are given.</summary>
    public static Dictionary<string, string?> Lnbits(FakeLnbits fake, string invoiceKey = FakeLnbits.InvoiceKey, string adminKey = FakeLnbits.AdminKey) => new()
    {
        ["Lightning:LnbitsUrl"] = fake.BaseAddress.ToString(),
        ["Lightning:InvoiceKey"] = invoiceKey,
        ["Lightning:AdminKey"] = adminKey,
    };

    public ValueTask DisposeAsync() => _provider.DisposeAsync();
}

/// <summary>Keeps every formatted log line (and its exception's text).</summary>
public sealed class CollectingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines.ToList();

    public ILogger CreateLogger(string categoryName) => new Collector(categoryName, _lines);

    public void Dispose()
    {
    }

    private sealed class Collector(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception} {state}");
    }
}
