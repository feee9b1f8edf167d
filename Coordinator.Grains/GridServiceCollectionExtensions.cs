using Coordinator.Grains.Accounting;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Billing;
using Coordinator.Grains.Blobs;
using Coordinator.Grains.Database;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Duties;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Ledger;
using Coordinator.Grains.Receipts;
using Coordinator.Grains.Secrets;
using Coordinator.Grains.Webhooks;
using Coordinator.Grains.Workers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Npgsql;

namespace Coordinator.Grains;

public static class GridServiceCollectionExtensions
{
    /// <summary>
    /// Adds the grid engine's services to a silo: one <see cref="NpgsqlDataSource"/> for <paramref name="connectionString"/>,
    /// the stores the grains write through, and what keeps the duties singleton running.
    /// </summary>
    public static IServiceCollection AddGrid(this IServiceCollection services, IConfiguration configuration, string connectionString)
    {
        services.AddOptions<DispatchOptions>().Bind(configuration.GetSection(DispatchOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<JobLimitsOptions>().Bind(configuration.GetSection(JobLimitsOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<AccountOptions>().Bind(configuration.GetSection(AccountOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<BillingOptions>().Bind(configuration.GetSection(BillingOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<AccountingOptions>().Bind(configuration.GetSection(AccountingOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        // Columns are snake_case (created_at), properties PascalCase (CreatedAt).
        Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true;

        services.AddSingleton(_ => BuildDataSource(connectionString));
        services.AddSingleton<Migrator>();
        services.AddSingleton<AccountStore>();
        services.AddSingleton<JobStore>();
        services.AddSingleton<Dispatch.DispatchInFlight>();
        services.AddSingleton<WorkerStore>();
        services.AddSingleton<Aitbc.AitbcStore>();
        services.AddSingleton<ReceiptStore>();
        services.AddSingleton<QueueCounts>();
        services.AddSingleton<Quotas>();
        services.AddSingleton<QuotaCounting>();
        services.AddHostedService(sp => sp.GetRequiredService<QuotaCounting>());
        services.AddSingleton<ILifecycleParticipant<Orleans.Runtime.ISiloLifecycle>>(sp => sp.GetRequiredService<QuotaCounting>());
        services.AddSingleton<Credits>();
        // The operator surfaces' account switch and cluster reads.
        services.AddSingleton<Operator.AccountControl>();
        services.AddSingleton<Operator.ClusterReads>();
        services.AddSingleton<Usage>();
        services.AddSingleton<BillingStore>();

        services.AddOptions<WebhookOptions>().Bind(configuration.GetSection(WebhookOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<NetworkGuard>();
        services.AddSingleton<WebhookSender>();
        services.AddSingleton<WebhookDeliveries>();
        services.AddHostedService<WebhookSenderService>();
        // Every node must read what any node protected: the key ring lives in PostgreSQL, encrypted at rest when configured.
        services.AddSharedKeyRing(configuration);
        services.AddHttpClient(WebhookSender.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(sp => new SocketsHttpHandler
            {
                // The SSRF guard runs on the resolved addresses, at connect time.
                ConnectCallback = (context, cancellationToken) => sp.GetRequiredService<NetworkGuard>().ConnectAsync(context.DnsEndPoint.Host, context.DnsEndPoint.Port, cancellationToken),
                AllowAutoRedirect = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            });
        services.AddStripePayments();
        services.AddSingleton<IIncomingGrainCallFilter, DatabaseUnavailableFilter>();
        services.AddSingleton<IIncomingGrainCallFilter, Telemetry.JobLogScopeFilter>();
        services.AddSingleton<DispatchMetrics>();
        services.AddSingleton<Telemetry.CoordinatorMetrics>();
        services.AddSingleton<Telemetry.PendingJobsGauges>();
        services.AddSingleton<Dispatchers>();
        services.AddSingleton<PollClaims>();
        services.AddSingleton<GridDuties>();
        services.AddHostedService<DutiesKeeper>();
        services.AddOptions<LedgerOptions>().Bind(configuration.GetSection(LedgerOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<LedgerSealer>();
        services.AddSingleton<LedgerStore>();
        services.AddHostedService<LedgerKeeper>();
        services.AddSingleton<IReceiptsIssuedListener, LedgerReceiptsListener>();
        services.AddBlobs(configuration);
        services.AddReceipts(configuration);
        return services;
    }

    public static NpgsqlDataSource BuildDataSource(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        // Fail fast when PostgreSQL is down, rather than hanging requests: 503 within seconds.
        if (!connectionString.Contains("Timeout", StringComparison.OrdinalIgnoreCase)) builder.Timeout = 3;
        if (!connectionString.Contains("Maximum Pool Size", StringComparison.OrdinalIgnoreCase)) builder.MaxPoolSize = 100;
        // No session state outlives a pooled use (locks are transaction-scoped), so skip
        // the DISCARD ALL that Npgsql would otherwise send with each reuse: it was most of the statements per job.
        if (!connectionString.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase)) builder.NoResetOnClose = true;
        // The hot statements (insert, claim, start, result) are planned once per connection, not on every call.
        if (!connectionString.Contains("Auto Prepare", StringComparison.OrdinalIgnoreCase)) builder.MaxAutoPrepare = 32;
        // ...and really once. By default PostgreSQL plans a prepared statement afresh on every call when its generic plan
        // looks dearer than the custom ones, and the hot statements' CTEs cost 0.3-0.6 ms to plan, more than they take to
        // run. Every statement here is parameterized and anchored on an index, and none takes a parameter where a plan
        // depends on its value (the claim's LIMIT is a literal for that reason), so the generic plan is the plan. Measured
        // in bench/: engine latency p50 1.7 -> 1.0 ms; claim latency at a backlog of 1M unchanged.
        // A generic plan made while a table is nearly empty reads it whole (a seq scan is cheapest for a few rows), and it
        // stays the plan until autovacuum next analyzes the table, while the table grows: start and result each scanned
        // all of jobs, 1.4 ms a call at 10k rows, in bench/'s lifecycle run on a fresh database. No statement here wants
        // a whole-table read, so scans are ruled out where an index can serve. And no JIT: ruling a scan out prices it at
        // 10^10, far above jit_above_cost, so a statement left with one (a duty's read of a small table) was compiled
        // with LLVM on every call — 200 ms of CPU for a statement that runs in microseconds.
        if (!connectionString.Contains("Options", StringComparison.OrdinalIgnoreCase)) builder.Options = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c jit=off";
        var dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString);
        // Telemetry: a statement gets a span only inside a sampled trace. Unfiltered, Npgsql starts an activity for every
        // statement once traces are on, sampled or not (BENCHMARKS.md, "The cost of telemetry").
        dataSource.ConfigureTracing(tracing => tracing.ConfigureCommandFilter(_ => InSampledTrace()).ConfigureBatchFilter(_ => InSampledTrace()));
        return dataSource.Build();
    }

    private static bool InSampledTrace() => System.Diagnostics.Activity.Current is { Recorded: true };
}
