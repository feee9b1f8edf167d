using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Workers;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Api.Models;

public sealed record GridModelDto(string Name, string Family, string DisplayName, string? Description, int WorkerCount, int FamilyWorkerCount);

/// <summary><c>GET /api/v1/models</c>: models with at least one online worker.</summary>
public static class ModelsApi
{
    public static IEndpointRouteBuilder MapModels(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/models", ListAsync).WithTags("Models").RequireApiKey();
        return routes;
    }

    public static async Task<Ok<List<GridModelDto>>> ListAsync(HttpContext context, WorkerStore workers)
    {
        var models = await workers.ListModelsAsync(context.RequestAborted);
        return TypedResults.Ok(models.Select(m => new GridModelDto(m.Name, m.Family, m.DisplayName, m.Description, m.WorkerCount, m.FamilyWorkerCount)).ToList());
    }
}
