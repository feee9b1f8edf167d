using System.Globalization;
using System.Text.Json;
using Coordinator.Api.Aitbc;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Jobs;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Webhooks;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Webhooks;

public sealed record WebhookDeliveryDto(
    long Id, long JobId, string Url, string Event, string Status, int Attempts, int? LastStatusCode, string? LastError,
    DateTime CreatedAt, DateTime? NextAttemptAt, DateTime? DeliveredAt);

/// <summary><c>GET /api/v1/webhooks/deliveries?job_id=</c>: the account's recent deliveries and their state.</summary>
public static class WebhooksApi
{
    public static IEndpointRouteBuilder MapWebhooks(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/webhooks/deliveries", ListAsync).WithTags("Webhooks").RequireApiKey();
        return routes;
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1707:Identifiers should not contain underscores", Justification = "binds the spec's job_id query parameter by name")]
    public static async Task<Results<Ok<List<WebhookDeliveryDto>>, UnprocessableEntity<ValidationErrors>>> ListAsync(
        HttpContext context, WebhookDeliveries deliveries, string? job_id)
    {
        long? jobId = null;
        if (job_id is not null)
        {
            if (!long.TryParse(job_id, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed)) return ApiErrors.Validation(["job_id must be a job id"]);
            jobId = parsed;
        }
        var rows = await deliveries.ListAsync(context.GetCaller().AccountId, jobId, context.RequestAborted);
        return TypedResults.Ok(rows.Select(r => new WebhookDeliveryDto(r.Id, r.JobId, r.Url, r.Event, r.Status, r.Attempts, r.LastStatusCode,
            r.LastError, r.CreatedAt, r.NextAttemptAt, r.DeliveredAt)).ToList());
    }
}

/// <summary>
/// Webhook bodies are the job exactly as <c>GET /jobs/{id}</c> shows it, with the API's JSON settings; its
/// <c>receipt_url</c> needs <see cref="AitbcOptions.PublicBaseUrl"/>, as there is no request to take the host from.
/// </summary>
public sealed class JobJsonRenderer(IOptions<JsonOptions> json, IOptions<AitbcOptions> aitbc) : IJobRenderer
{
    public string Render(JobRow job) => JsonSerializer.Serialize(JobDto.From(job).LinkReceipt(aitbc.Value, request: null), json.Value.SerializerOptions);
}
