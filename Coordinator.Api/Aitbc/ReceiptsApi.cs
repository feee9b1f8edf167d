using System.Text;
using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Receipts;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Api.Aitbc;

/// <summary>
/// The AITBC API's receipt reads: <c>GET /v1/receipts</c>, <c>GET /v1/receipts/{receipt_id}</c>, and the two its SDK
/// calls, <c>GET /v1/jobs/{job_id}/receipt</c> (the latest) and <c>GET /v1/jobs/{job_id}/receipts</c> (the history).
/// Each needs <c>X-Api-Key</c> and shows only the receipts the key's account may see (<see cref="ReceiptStore"/>); any
/// other is a 404. A receipt is served as the JSON text that was signed and stored, byte for byte: its signature covers
/// a canonical form of it, but a verifier parses what it receives, so nothing here parses or re-serialises it.
/// </summary>
public static class ReceiptsApi
{
    public const int DefaultLimit = 20;
    public const int MaxLimit = 100;

    // The receipts' client and provider strings are short names (account-7, worker-3, a miner id).
    private const int MaxFilterLength = 256;

    public static IEndpointRouteBuilder MapAitbcReceipts(this IEndpointRouteBuilder aitbc)
    {
        aitbc.MapGet("/v1/receipts", ListAsync).RequireAitbcKey();
        aitbc.MapGet("/v1/receipts/{receipt_id}", GetAsync).RequireAitbcKey();
        aitbc.MapGet("/v1/jobs/{job_id}/receipt", LatestOfJobAsync).RequireAitbcKey();
        aitbc.MapGet("/v1/jobs/{job_id}/receipts", OfJobAsync).RequireAitbcKey();
        return aitbc;
    }

    /// <summary>The caller's receipts, newest first, filtered by <c>client</c> and <c>provider</c>; <c>limit</c> 1 to 100, 20 by default.</summary>
    public static async Task<IResult> ListAsync(HttpContext context, ReceiptStore receipts, string? client, string? provider, string? limit)
    {
        if ((FilterProblem("client", client) ?? FilterProblem("provider", provider)) is { } problem) return AitbcFrontDoor.BadRequest(problem);
        var errors = new List<string>();
        var count = Jobs.JobsApi.ParseInt("limit", limit, DefaultLimit, 1, MaxLimit, errors);
        if (errors.Count > 0) return AitbcFrontDoor.BadRequest(errors[0]);
        var rows = await receipts.ListAsync(context.GetCaller().AccountId, client, provider, count, context.RequestAborted);
        return Array(rows);
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1707:Identifiers should not contain underscores", Justification = "binds the spec's receipt_id path parameter by name")]
    public static async Task<IResult> GetAsync(HttpContext context, ReceiptStore receipts, string receipt_id)
    {
        var row = await receipts.GetAsync(context.GetCaller().AccountId, receipt_id, context.RequestAborted);
        return row is null ? AitbcFrontDoor.NotFound($"no receipt {receipt_id}") : Verbatim(row.Body);
    }

    /// <summary>The job's latest receipt; 404 while it has none (or the caller is neither its client nor its provider's owner).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1707:Identifiers should not contain underscores", Justification = "binds the spec's job_id path parameter by name")]
    public static async Task<IResult> LatestOfJobAsync(HttpContext context, ReceiptStore receipts, string job_id)
    {
        var row = AitbcJobDto.ParseId(job_id) is { } jobId ? await receipts.LatestOfJobAsync(context.GetCaller().AccountId, jobId, context.RequestAborted) : null;
        return row is null ? AitbcFrontDoor.NotFound($"no receipt of job {job_id}") : Verbatim(row.Body);
    }

    /// <summary>
    /// The job's receipts, oldest first: an empty array for a job of the caller's that has none yet, 404 for a job
    /// that is neither the caller's nor run by one of its workers.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1707:Identifiers should not contain underscores", Justification = "binds the spec's job_id path parameter by name")]
    public static async Task<IResult> OfJobAsync(HttpContext context, ReceiptStore receipts, string job_id)
    {
        var rows = AitbcJobDto.ParseId(job_id) is { } jobId ? await receipts.OfJobAsync(context.GetCaller().AccountId, jobId, context.RequestAborted) : null;
        return rows is null ? AitbcFrontDoor.NotFound($"no job {job_id}") : Array(rows);
    }

    /// <summary>
    /// A receipt's absolute address on the AITBC front door: under <see cref="AitbcOptions.PublicBaseUrl"/> when it is
    /// set, otherwise on the host <paramref name="request"/> came to, at <see cref="AitbcOptions.Port"/> over http. Null
    /// when neither is known (no request, as for a webhook, and no public address) or the front door is off.
    /// </summary>
    public static string? UrlOf(string receiptId, AitbcOptions options, HttpRequest? request)
    {
        var path = "v1/receipts/" + Uri.EscapeDataString(receiptId);
        if (options.PublicBaseUrl is { } publicBase) return publicBase.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/" + path;
        if (request is null || options.Port <= 0) return null;
        return new UriBuilder(Uri.UriSchemeHttp, request.Host.Host, options.Port, path).Uri.AbsoluteUri;
    }

    private static string? FilterProblem(string name, string? value) => value switch
    {
        null => null,
        "" => $"{name} must not be empty; leave it out to list every {name}",
        { Length: > MaxFilterLength } => $"{name} must be at most {MaxFilterLength} characters",
        _ when value.Contains('\0', StringComparison.Ordinal) => $"{name} must not contain NUL characters",
        _ => null,
    };

    private static ContentHttpResult Verbatim(string json) => TypedResults.Text(json, "application/json", Encoding.UTF8);

    /// <summary>A JSON array of the stored receipts' texts, written as they are.</summary>
    private static ContentHttpResult Array(IReadOnlyList<ReceiptRow> rows)
    {
        var json = new StringBuilder("[");
        for (var i = 0; i < rows.Count; i++)
        {
            if (i > 0) json.Append(',');
            json.Append(rows[i].Body);
        }
        return Verbatim(json.Append(']').ToString());
    }
}
