using System.ComponentModel;
using Coordinator.Api.Infrastructure;
using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Workers;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Api.Models;

/// <summary>
/// A model with an online worker, how many jobs wait for it and how fast its workers take them. <c>queue_depth</c>:
/// dispatchable pending jobs that name the model (its exact and family jobs, not held ones), exact up to
/// <see cref="QueueCounts.ExactUpTo"/> and an estimate above. <c>jobs_per_minute</c>: jobs that name the model handed
/// to workers per minute over the last <see cref="DispatchOptions.ThroughputWindow"/>, as the family's dispatcher
/// counted them since it last started.
/// </summary>
public sealed record GridModelDto(string Name, string Family, string DisplayName, string? Description, int WorkerCount, int FamilyWorkerCount,
    [property: Description("Dispatchable pending jobs that name this model (exact and family jobs; held jobs are not counted). Exact up to 1000; a value above 1000 is an estimate.")]
    long QueueDepth,
    [property: Description("Jobs naming this model handed to workers per minute, over the last 5 minutes by default (Dispatch:ThroughputWindow); counted since the family's dispatcher last started.")]
    double JobsPerMinute);

/// <summary><c>GET /api/v1/models</c>: models with at least one online worker.</summary>
public static class ModelsApi
{
    public static IEndpointRouteBuilder MapModels(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/models", ListAsync).WithTags("Models").RequireApiKey();
        return routes;
    }

    public static async Task<Ok<List<GridModelDto>>> ListAsync(HttpContext context, WorkerStore workers, QueueCounts counts, Dispatchers dispatchers)
    {
        var models = await workers.ListModelsAsync(context.RequestAborted);
        var depths = counts.DepthsAsync(models.Select(m => m.Name).ToList(), context.RequestAborted);
        // Each family's dispatcher counts the jobs it handed out.
        var perFamily = await Task.WhenAll(models.GroupBy(m => m.Family, StringComparer.Ordinal).Select(async family =>
        {
            var names = family.Select(m => m.Name).ToList();
            return names.Zip(await dispatchers.Of(family.Key).ModelThroughputAsync(names));
        }));
        var perSecond = perFamily.SelectMany(rates => rates).ToDictionary(rate => rate.First, rate => rate.Second, StringComparer.Ordinal);
        var depth = await depths;
        return TypedResults.Ok(models.Select((m, i) => new GridModelDto(m.Name, m.Family, m.DisplayName, m.Description, m.WorkerCount, m.FamilyWorkerCount,
            depth[i], Math.Round(perSecond[m.Name] * 60, 2))).ToList());
    }
}
