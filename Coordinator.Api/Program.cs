using System.Text.Json;
using Coordinator.Api;
using Coordinator.Api.Accounts;
using Coordinator.Api.Billing;
using Coordinator.Api.Blobs;
using Coordinator.Api.Dashboard;
using Coordinator.Api.Health;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Api.Models;
using Coordinator.Api.Operator;
using Coordinator.Api.Usage;
using Coordinator.Api.Webhooks;
using Coordinator.Api.Workers;
using Coordinator.Grid;

// Settings files sit beside the binary, wherever it is started from.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });

var connectionString = builder.Configuration.GetConnectionString("Postgres");
if (string.IsNullOrWhiteSpace(connectionString))
{
    Console.Error.WriteLine(
        "No database is configured. Set ConnectionStrings__Postgres (e.g. \"Host=127.0.0.1;Port=5432;Username=coordinator;Database=coordinator\"), " +
        "or start with ./run.sh, which runs a private PostgreSQL under .data/.");
    return 2;
}

// The spec's local server is http://localhost:3000/api/v1; PORT moves it.
if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]))
{
    builder.WebHost.UseUrls($"http://0.0.0.0:{builder.Configuration["PORT"] ?? "3000"}");
}
builder.WebHost.ConfigureKestrel(kestrel =>
    kestrel.Limits.MaxRequestBodySize = builder.Configuration.GetValue<long?>("Http:MaxRequestBodyBytes") ?? 8 * 1024 * 1024);

builder.Services.ConfigureHttpJsonOptions(json =>
{
    json.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
    json.SerializerOptions.DictionaryKeyPolicy = JsonNamingPolicy.SnakeCaseLower;
});
builder.Services.AddGrid(builder.Configuration, connectionString);
builder.Services.AddTransient<PriorityBoosts>();
builder.Services.AddSingleton<Coordinator.Grid.Webhooks.IJobRenderer, JobJsonRenderer>();
builder.Services.AddExceptionHandler<ErrorHandling>();
builder.Services.AddProblemDetails();
builder.Services.AddOpenApi("v1");
builder.Services.AddDashboard();

var app = builder.Build();

app.UseExceptionHandler();
app.UseStatusCodePages(async context =>
{
    // Unknown routes and wrong methods answer in the spec's error shape too.
    var response = context.HttpContext.Response;
    if (response.ContentLength is null && response.ContentType is null)
    {
        var error = response.StatusCode switch
        {
            404 => new ApiError("not_found", "no such endpoint"),
            405 => new ApiError("method_not_allowed", "this endpoint does not accept that method"),
            _ => new ApiError("error"),
        };
        await response.WriteAsJsonAsync(error);
    }
});

var api = app.MapGroup("/api/v1");
api.MapHealth();
api.MapAccounts();
api.MapJobs();
api.MapWorkers();
api.MapModels();
api.MapUsage();
api.MapBilling();
api.MapWebhooks();
api.MapBlobs();
app.MapOpenApi("/api/v1/openapi/{documentName}.json");
app.UseSwaggerUI(ui =>
{
    ui.RoutePrefix = "api/docs";
    ui.SwaggerEndpoint("/api/v1/openapi/v1.json", "Coordinator API v1");
});
app.MapDashboard();

if (!await Startup.PrepareDatabaseAsync(app))
{
    return 1;
}
if (args is ["payouts", .. var payoutArgs])
{
    return await PayoutCommands.RunAsync(app.Services, payoutArgs, Console.Out);
}
await app.RunAsync();
return 0;

/// <summary>The entry point, visible to WebApplicationFactory in tests.</summary>
public partial class Program;
