using System.Text.Json.Serialization;
using Coordinator.Grains.Lightning.Sessions;

namespace Coordinator.Api.Lightning;

/// <summary>The spec's <c>CreateSessionResponse</c>.</summary>
public sealed record CreateSessionResponseDto(
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("invoice")] InvoiceDto Invoice);

/// <summary>The spec's <c>SessionStatusResponse</c>; absent fields are left out, not null.</summary>
public sealed record SessionStatusDto(
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("balanceSats")] long BalanceSats,
    [property: JsonPropertyName("minimumBalanceSats")] long MinimumBalanceSats,
    [property: JsonPropertyName("macaroon"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Macaroon,
    [property: JsonPropertyName("expiresAt"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? ExpiresAt,
    [property: JsonPropertyName("invoice"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] InvoiceDto? Invoice,
    [property: JsonPropertyName("pendingTopup"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] InvoiceDto? PendingTopup);

/// <summary>The spec's <c>SessionCostBreakdown</c>.</summary>
public sealed record SessionCostDto(
    [property: JsonPropertyName("evalSats")] long EvalSats,
    [property: JsonPropertyName("workSats")] long WorkSats,
    [property: JsonPropertyName("totalSats")] long TotalSats,
    [property: JsonPropertyName("btcPriceUsd")] decimal BtcPriceUsd);

/// <summary>The spec's <c>SessionRequestResponse</c>.</summary>
public sealed record SessionRequestResponseDto(
    [property: JsonPropertyName("requestId")] string RequestId,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("result"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Result,
    [property: JsonPropertyName("reason"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Reason,
    [property: JsonPropertyName("errorMessage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ErrorMessage,
    [property: JsonPropertyName("debitedSats")] long DebitedSats,
    [property: JsonPropertyName("balanceRemaining")] long BalanceRemaining,
    [property: JsonPropertyName("cost")] SessionCostDto Cost)
{
    public static SessionRequestResponseDto Of(SessionRequestResult run) => new(run.RequestId, run.State, run.Result, run.Reason, run.ErrorMessage,
        run.Debit.DebitedSats, run.Debit.BalanceRemaining, new SessionCostDto(run.Charge.EvalSats, run.Charge.WorkSats, run.Charge.TotalSats, run.Charge.BtcPriceUsd));
}

/// <summary>The spec's <c>TopupSessionResponse</c>.</summary>
public sealed record TopupSessionResponseDto(
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("topup")] InvoiceDto Topup);

/// <summary>The spec's <c>DemoResponse</c>.</summary>
public sealed record DemoResponseDto([property: JsonPropertyName("result")] string Result);
