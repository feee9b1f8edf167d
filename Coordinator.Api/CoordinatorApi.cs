using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Coordinator.Api.Accounts;
using Coordinator.Api.Aitbc;
using Coordinator.Api.Billing;
using Coordinator.Api.Blobs;
using Coordinator.Api.Dashboard;
using Coordinator.Api.Gemini;
using Coordinator.Api.Health;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Api.Lightning;
using Coordinator.Api.Models;
using Coordinator.Api.OpenAi;
using Coordinator.Api.Operator;
using Coordinator.Api.RateLimits;
using Coordinator.Api.Usage;
using Coordinator.Api.Webhooks;
using Coordinator.Api.Workers;

namespace Coordinator.Api;

/// <summary>The front end that each silo co-hosts: the Grid API under <c>/api/v1</c>, its OpenAPI document and docs, the OpenAI-compatible <c>/v1</c>, and the dashboard.</summary>
public static class CoordinatorApi
{
    /// <summary>Registers what the endpoint groups need: JSON settings, error mapping, the OpenAPI document and the dashboard.</summary>
    public static IServiceCollection AddCoordinatorApi(this IServiceCollection services)
    {
        services.ConfigureHttpJsonOptions(json =>
        {
            json.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
            json.SerializerOptions.DictionaryKeyPolicy = JsonNamingPolicy.SnakeCaseLower;
            json.SerializerOptions.TypeInfoResolver = (json.SerializerOptions.TypeInfoResolver ?? new DefaultJsonTypeInfoResolver())
                .WithAddedModifier(JobDto.WriteEtaWithPosition);
        });
        services.AddSingleton<QueueStandings>();
        services.AddTransient<PriorityBoosts>();
        services.AddSingleton<Coordinator.Grains.Webhooks.IJobRenderer, JobJsonRenderer>();
        services.AddSingleton<Workers.PollsWaiting>();
        services.AddTransient<OpenAiCompletions>();
        services.AddGeminiApi();
        services.AddOptions<AitbcOptions>().BindConfiguration(AitbcOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddRateLimits();
        services.AddExceptionHandler<ErrorHandling>();
        services.AddProblemDetails();
        services.AddOpenApi("v1", openApi => openApi.AddOperationTransformer(RateLimitOpenApi.DescribeAsync));
        services.AddDashboard();
        services.AddOperator();
        return services;
    }

    /// <summary>Maps the endpoint groups, the error pages, the OpenAPI document, the API docs and the dashboard.</summary>
    public static WebApplication MapCoordinatorApi(this WebApplication app)
    {
        // First: everything after it reads the client address as the trusted proxies' X-Forwarded-For says.
        app.UseTrustedProxies();
        app.UseExceptionHandler();
        app.UseStatusCodePages(async context =>
        {
            // Unknown routes and wrong methods answer in the spec's error shape too.
            var response = context.HttpContext.Response;
            if (response.ContentLength is null && response.ContentType is null && AitbcFrontDoor.Serves(context.HttpContext))
            {
                await response.WriteAsJsonAsync(AitbcFrontDoor.StatusPage(response.StatusCode));
            }
            else if (response.ContentLength is null && response.ContentType is null && OpenAiFrontDoor.Serves(context.HttpContext))
            {
                await response.WriteAsJsonAsync(OpenAiFrontDoor.StatusPage(response.StatusCode));
            }
            else if (response.ContentLength is null && response.ContentType is null && AgentErrors.Serves(context.HttpContext))
            {
                await response.WriteAsJsonAsync(AgentErrors.StatusPage(response.StatusCode));
            }
            else if (response.ContentLength is null && response.ContentType is null)
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

        // Operator authentication on every /operator path (after the trusted proxies: it counts failures per client address).
        app.UseOperatorGate();
        app.UseRouting();
        app.UseJobLogScopes();
        app.UseAitbcPort();
        // After routing (the policy is the endpoint group's) and after the trusted proxies (the client address).
        app.UseRateLimiter();
        app.UseFailedAuthenticationLimit();

        // Each group's rate limit is its own policy (RateLimitPolicies); an inner group's or endpoint's policy wins over
        // the outer group's: the worker protocol, sign-up, the long poll and health have their own.
        var api = app.MapGroup("/api/v1").RequireRateLimiting(RateLimitPolicies.Grid);
        api.MapHealth();
        api.MapAccounts();
        api.MapJobs();
        api.MapWorkers().RequireRateLimiting(RateLimitPolicies.Workers);
        api.MapModels();
        api.MapUsage();
        api.MapBilling();
        api.MapWebhooks();
        api.MapBlobs();
        app.MapOpenAi().RequireRateLimiting(RateLimitPolicies.OpenAi);
        app.MapGeminiApi().RequireRateLimiting(RateLimitPolicies.Agent);
        app.MapLightningAgentApi().RequireRateLimiting(RateLimitPolicies.Agent);
        app.MapAgentSessionsApi().RequireRateLimiting(RateLimitPolicies.Agent);
        // The free demo counts per address in PostgreSQL (DemoRateLimiter), before anything else.
        app.MapAgentDemoApi().DisableRateLimiting();
        app.MapAitbc();
        app.MapOpenApi("/api/v1/openapi/{documentName}.json");
        app.UseSwaggerUI(ui =>
        {
            ui.RoutePrefix = "api/docs";
            ui.SwaggerEndpoint("/api/v1/openapi/v1.json", "Coordinator API v1");
        });
        app.MapDashboard();
        app.MapOperator();
        return app;
    }
}
