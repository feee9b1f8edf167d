using System.Text.Json.Serialization;
using Coordinator.Grains.Lightning.Agent;

namespace Coordinator.Api.Lightning;

// The agent spec names its fields in camelCase, where the Grid API's JSON is snake_case: every field is named here, so
// the host's naming policy cannot reach them. Optional fields the job does not have yet are left out rather than null.

/// <summary>The spec's <c>ErrorResponse</c>: <c>{"error": "…"}</c>, the only error body of the agent API.</summary>
public sealed record AgentError([property: JsonPropertyName("error")] string Error);

/// <summary>The spec's <c>HealthStatus</c>.</summary>
public sealed record AgentHealthDto([property: JsonPropertyName("status")] string Status);

/// <summary>
/// The spec's <c>InvoiceInfo</c>, and its <c>SessionInvoiceInfo</c> (the same fields). In stub mode it also carries
/// <c>paymentHash</c> (the spec's README: stub invoices "expose paymentHash"), which the development route pays by.
/// </summary>
public sealed record InvoiceDto(
    [property: JsonPropertyName("paymentRequest")] string PaymentRequest,
    [property: JsonPropertyName("amountSats")] long AmountSats,
    [property: JsonPropertyName("paymentHash"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? PaymentHash)
{
    /// <summary>A session's deposit or top-up invoice; <paramref name="showHash"/> in stub mode.</summary>
    public static InvoiceDto Of(Coordinator.Grains.Lightning.Sessions.SessionInvoice invoice, bool showHash) =>
        new(invoice.PaymentRequest, invoice.AmountSats, showHash ? invoice.PaymentHash : null);
}

/// <summary>The spec's <c>CreateJobResponse</c>.</summary>
public sealed record CreateJobDto(
    [property: JsonPropertyName("jobId")] string JobId,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("evalInvoice")] InvoiceDto EvalInvoice);

/// <summary>The spec's <c>PricingBreakdown</c>: the work invoice's price as it was quoted.</summary>
public sealed record PricingBreakdownDto(
    [property: JsonPropertyName("estimatedCostUsd")] decimal EstimatedCostUsd,
    [property: JsonPropertyName("marginPct")] decimal MarginPct,
    [property: JsonPropertyName("btcPriceUsd")] decimal BtcPriceUsd);

/// <summary>The spec's <c>CostLedger</c>.</summary>
public sealed record CostLedgerDto(
    [property: JsonPropertyName("actualInputTokens")] long ActualInputTokens,
    [property: JsonPropertyName("actualOutputTokens")] long ActualOutputTokens,
    [property: JsonPropertyName("totalTokens")] long TotalTokens,
    [property: JsonPropertyName("actualCostUsd")] decimal ActualCostUsd,
    [property: JsonPropertyName("actualChargeUsd")] decimal ActualChargeUsd,
    [property: JsonPropertyName("estimatedCostUsd")] decimal EstimatedCostUsd,
    [property: JsonPropertyName("actualAmountSats")] long ActualAmountSats,
    [property: JsonPropertyName("workAmountSats")] long WorkAmountSats,
    [property: JsonPropertyName("refundAmountSats")] long RefundAmountSats,
    [property: JsonPropertyName("refundState")] string RefundState,
    [property: JsonPropertyName("marginPct")] decimal MarginPct,
    [property: JsonPropertyName("btcPriceUsd")] decimal BtcPriceUsd);

/// <summary>The spec's <c>JobStatusResponse</c>.</summary>
public sealed record JobStatusDto(
    [property: JsonPropertyName("jobId")] string JobId,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("createdAt")] DateTimeOffset CreatedAt)
{
    [JsonPropertyName("completedAt"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public DateTimeOffset? CompletedAt { get; init; }

    [JsonPropertyName("evalInvoice"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public InvoiceDto? EvalInvoice { get; init; }

    [JsonPropertyName("workInvoice"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public InvoiceDto? WorkInvoice { get; init; }

    [JsonPropertyName("pricingBreakdown"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public PricingBreakdownDto? PricingBreakdown { get; init; }

    [JsonPropertyName("reason"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reason { get; init; }

    [JsonPropertyName("result"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Result { get; init; }

    [JsonPropertyName("costLedger"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public CostLedgerDto? CostLedger { get; init; }

    [JsonPropertyName("errorMessage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ErrorMessage { get; init; }

    /// <summary>The job as the spec shows it; <paramref name="stub"/> adds each invoice's payment hash.</summary>
    public static JobStatusDto Of(AgentJobRow job, bool stub) => new(job.Id, job.State, Utc(job.CreatedAt))
    {
        CompletedAt = job.CompletedAt is { } completed ? Utc(completed) : null,
        EvalInvoice = new InvoiceDto(job.EvalPaymentRequest, job.EvalAmountSats, stub ? job.EvalPaymentHash : null),
        WorkInvoice = job.WorkPaymentRequest is { } request ? new InvoiceDto(request, job.WorkAmountSats!.Value, stub ? job.WorkPaymentHash : null) : null,
        PricingBreakdown = job.EstimatedCostUsd is { } estimated ? new PricingBreakdownDto(estimated, job.MarginPct!.Value, job.BtcPriceUsd!.Value) : null,
        Reason = job.Reason,
        Result = job.Phase == AgentJobState.Complete ? job.Result : null,
        // A failed job's ledger, when its paid work failed: nothing charged, the whole work invoice owed back.
        CostLedger = job.RefundState is not null ? LedgerOf(job) : null,
        ErrorMessage = job.ErrorMessage,
    };

    public static DateTimeOffset Utc(DateTime time) => new(DateTime.SpecifyKind(time, DateTimeKind.Utc));

    private static CostLedgerDto LedgerOf(AgentJobRow job) => new(
        job.ActualInputTokens!.Value, job.ActualOutputTokens!.Value, job.ActualInputTokens.Value + job.ActualOutputTokens.Value,
        job.ActualCostUsd!.Value, job.ActualChargeUsd!.Value, job.EstimatedCostUsd!.Value, job.ActualAmountSats!.Value, job.WorkAmountSats!.Value,
        job.RefundAmountSats!.Value,
        // A claim paying it now has not paid it yet: the spec knows only pending and paid.
        job.RefundState == RefundStates.Paying ? RefundStates.Pending : job.RefundState!,
        job.MarginPct!.Value, job.BtcPriceUsd!.Value);
}

/// <summary>The spec's <c>ClaimRefundResponse</c>.</summary>
public sealed record ClaimRefundDto(
    [property: JsonPropertyName("ok")] bool Ok,
    [property: JsonPropertyName("refundAmountSats")] long RefundAmountSats,
    [property: JsonPropertyName("paymentHash")] string PaymentHash,
    [property: JsonPropertyName("message")] string Message);
