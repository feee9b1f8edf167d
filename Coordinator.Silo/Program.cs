using Coordinator.Api;
using Coordinator.Api.Aitbc;
using Coordinator.Api.Lightning;
using Coordinator.Grains;
using Coordinator.Grains.Lightning.Agent;
using Coordinator.Silo;
using Coordinator.Silo.Operator;
using Coordinator.Silo.Telemetry;

// Settings files sit beside the binary, wherever it is started from.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });

// A new operator key needs no database.
if (args is ["operator-key", .. var operatorKeyArgs])
{
    return await OperatorKeyCommands.RunAsync(operatorKeyArgs, Console.Out);
}

var connectionString = builder.Configuration.GetConnectionString("Postgres");
if (string.IsNullOrWhiteSpace(connectionString))
{
    await Console.Error.WriteLineAsync(
        "No database is configured. Set ConnectionStrings__Postgres (e.g. \"Host=127.0.0.1;Port=5432;Username=coordinator;Database=coordinator\"), " +
        "or start with ./run.sh, which runs a private PostgreSQL under .data/.");
    return 2;
}

// The spec's local server is http://localhost:3000/api/v1; PORT moves it. The AITBC API has a port of its own
// (Aitbc:Port, default 8001, its spec's local server; 0 turns it off), added to whatever the main address is.
var urls = builder.Configuration["urls"] ?? builder.Configuration["ASPNETCORE_URLS"];
if (string.IsNullOrEmpty(urls)) urls = $"http://0.0.0.0:{builder.Configuration["PORT"] ?? "3000"}";
var aitbcPort = builder.Configuration.GetValue<int?>($"{AitbcOptions.Section}:{nameof(AitbcOptions.Port)}") ?? new AitbcOptions().Port;
if (aitbcPort > 0) urls += $";http://0.0.0.0:{aitbcPort}";
// The Prometheus scrape endpoint, when on, has an operator port of its own (Telemetry:Prometheus:Port).
foreach (var extra in TelemetrySetup.ExtraUrls(builder.Configuration)) urls += $";{extra}";
builder.WebHost.UseUrls(urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
// Under systemd (deploy/coordinator.service, Type=notify) it reports ready once started and logs with journald's levels;
// anywhere else this does nothing.
builder.Host.UseSystemd();
builder.WebHost.ConfigureKestrel(kestrel =>
    kestrel.Limits.MaxRequestBodySize = builder.Configuration.GetValue<long?>("Http:MaxRequestBodyBytes") ?? 8 * 1024 * 1024);

builder.Services.AddGrid(builder.Configuration, connectionString);
builder.Services.AddCoordinatorApi();
builder.Services.AddLightningAgent(builder.Configuration);
builder.Services.AddAgentSessionsApi(builder.Configuration);
builder.Services.AddAgentDemoApi(builder.Configuration);
builder.UseCoordinatorSilo(connectionString);
// SIGTERM: not ready, polls answered, in-flight requests finished, the silo leaves the cluster (Shutdown:Timeout).
builder.UseGracefulStop();
builder.AddCoordinatorTelemetry();

var app = builder.Build();
app.UseCoordinatorTelemetry();
app.MapCoordinatorApi();

if (!await Startup.PrepareDatabaseAsync(app))
{
    return 1;
}
if (args is ["payouts", .. var payoutArgs])
{
    return await PayoutCommands.RunAsync(app.Services, payoutArgs, Console.Out);
}
if (args is ["receipt-keys", .. var receiptKeyArgs])
{
    return await ReceiptKeyCommands.RunAsync(app.Services, receiptKeyArgs, Console.Out);
}
if (args is ["data-protection", .. var dataProtectionArgs])
{
    return await DataProtectionCommands.RunAsync(app.Services, dataProtectionArgs, Console.Out);
}
if (args is ["ledger", .. var ledgerArgs])
{
    return await LedgerCommands.RunAsync(app.Services, ledgerArgs, Console.Out);
}
await app.RunAsync();
return 0;

/// <summary>The entry point, visible to WebApplicationFactory in tests.</summary>
public partial class Program;
