using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Lightning.Agent;
using Coordinator.Grains.Lightning.Payments;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Lightning;

/// <summary>
/// The Lightning agent API's <c>health</c> and <c>jobs</c> paths under <c>/api</c> (the spec's base): pay-per-job jobs
/// that anyone may create and read by their unguessable id, without an account. Not in the Grid API's OpenAPI document:
/// their contract is the Lightning agent spec's. Every error is the spec's <c>{"error": "…"}</c>.
/// </summary>
public static class AgentJobsApi
{
    /// <summary>
    /// Maps <c>/api/healthz</c>, <c>/api/jobs…</c>, and the stub's development route where it may exist; needs
    /// <see cref="AgentServiceCollectionExtensions.AddLightningAgent"/>.
    /// </summary>
    public static RouteGroupBuilder MapLightningAgentApi(this IEndpointRouteBuilder routes)
    {
        routes.MapLightningStubRoutes();
        var group = routes.MapGroup("/api").ExcludeFromDescription();
        group.MapGet("/healthz", () => TypedResults.Ok(new AgentHealthDto("ok")));
        group.MapPost("/jobs", CreateAsync);
        group.MapGet("/jobs/{id}", GetAsync);
        group.MapPost("/jobs/{id}/refund", ClaimRefundAsync);
        return group;
    }

    public static async Task<IResult> CreateAsync(HttpContext context, AgentJobs jobs, ILightningNode node, IOptions<AgentOptions> options)
    {
        var (fields, error) = await JsonFields.ReadJsonAsync(context.Request);
        if (fields is null) return AgentErrors.BadRequest(error!);
        var request = fields.String("request", required: true, maxUtf8Bytes: options.Value.MaxRequestBytes);
        if (!fields.IsValid) return AgentErrors.BadRequest(string.Join("; ", fields.Errors));

        var job = await jobs.CreateAsync(request!, context.RequestAborted);
        var invoice = new InvoiceDto(job.EvalPaymentRequest, job.EvalAmountSats, node.IsStub ? job.EvalPaymentHash : null);
        return TypedResults.Json(new CreateJobDto(job.Id, JobStatusDto.Utc(job.CreatedAt), invoice), statusCode: StatusCodes.Status201Created);
    }

    public static async Task<IResult> GetAsync(string id, AgentJobs jobs, ILightningNode node) =>
        await jobs.AdvanceAsync(id) is { } job ? TypedResults.Json(JobStatusDto.Of(job, node.IsStub)) : AgentErrors.JobNotFound(id);

    public static async Task<IResult> ClaimRefundAsync(string id, HttpContext context, AgentRefunds refunds)
    {
        var (fields, error) = await JsonFields.ReadJsonAsync(context.Request);
        if (fields is null) return AgentErrors.BadRequest(error!);
        var invoice = fields.String("invoice", required: true, maxLength: 4096);
        if (!fields.IsValid) return AgentErrors.BadRequest(string.Join("; ", fields.Errors));

        var outcome = await refunds.ClaimAsync(id, invoice!.Trim(), context.RequestAborted);
        return outcome.Kind switch
        {
            RefundOutcomeKind.Paid => TypedResults.Json(new ClaimRefundDto(true, outcome.AmountSats, outcome.PaymentHash!, outcome.Message)),
            RefundOutcomeKind.NotFound => AgentErrors.JobNotFound(id),
            RefundOutcomeKind.Conflict => AgentErrors.Error(StatusCodes.Status409Conflict, outcome.Message),
            RefundOutcomeKind.BadInvoice => AgentErrors.BadRequest(outcome.Message),
            _ => AgentErrors.Error(StatusCodes.Status500InternalServerError, outcome.Message),
        };
    }
}

/// <summary>The only way the agent endpoints fail: a status and the spec's <c>ErrorResponse</c>.</summary>
public static class AgentErrors
{
    public static IResult Error(int status, string message) => TypedResults.Json(new AgentError(message), statusCode: status);

    public static IResult BadRequest(string message) => Error(StatusCodes.Status400BadRequest, message);

    public static IResult JobNotFound(string id) => Error(StatusCodes.Status404NotFound, $"no job has the id '{id}'");

    /// <summary>
    /// Whether the request is the agent API's: under the spec's base <c>/api</c> but not the Grid API's <c>/api/v1</c> nor
    /// its docs. Its answers the host makes itself (an unknown route, a wrong method, a body past the server's limit) are
    /// <see cref="AgentError"/>s too.
    /// </summary>
    public static bool Serves(HttpContext context)
    {
        var path = context.Request.Path;
        return path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase)
            && !path.StartsWithSegments("/api/v1", StringComparison.OrdinalIgnoreCase)
            && !path.StartsWithSegments("/api/docs", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>An unknown route or a wrong method.</summary>
    public static AgentError StatusPage(int status) => new(status switch
    {
        StatusCodes.Status404NotFound =>
            "no such endpoint: the agent API serves /api/healthz, /api/jobs, /api/sessions, /api/demo and /api/gemini (whose conversation ids are integers)",
        StatusCodes.Status405MethodNotAllowed => "this endpoint does not accept that method",
        _ => "the request failed",
    });

    /// <summary>The host's error for an exception, as a sentence.</summary>
    public static AgentError ErrorOf(Infrastructure.ApiError error) => new(error.Message ?? error.Error.Replace('_', ' '));
}
