namespace Coordinator.Grains.Lightning.Agent;

/// <summary>A row of <c>lightning_agent_jobs</c>: a pay-per-job job with its invoices, grid jobs, price and cost ledger.</summary>
[GenerateSerializer, Immutable]
public sealed class AgentJobRow
{
    [Id(0)] public string Id { get; init; } = "";
    [Id(1)] public string Request { get; init; } = "";
    /// <summary>The state's name (<see cref="AgentJobStates"/>); read it through <see cref="Phase"/>.</summary>
    [Id(2)] public string State { get; init; } = "";
    [Id(3)] public DateTime CreatedAt { get; init; }
    [Id(4)] public DateTime? CompletedAt { get; init; }
    [Id(5)] public string EvalPaymentHash { get; init; } = "";
    [Id(6)] public string EvalPaymentRequest { get; init; } = "";
    [Id(7)] public long EvalAmountSats { get; init; }
    [Id(8)] public long? EvalGridJobId { get; init; }
    [Id(9)] public string? Reason { get; init; }
    [Id(10)] public long? EstimatedTokens { get; init; }
    [Id(11)] public string? WorkPaymentHash { get; init; }
    [Id(12)] public string? WorkPaymentRequest { get; init; }
    [Id(13)] public long? WorkAmountSats { get; init; }
    [Id(14)] public decimal? EstimatedCostUsd { get; init; }
    [Id(15)] public decimal? MarginPct { get; init; }
    [Id(16)] public decimal? BtcPriceUsd { get; init; }
    [Id(17)] public long? WorkGridJobId { get; init; }
    [Id(18)] public string? Result { get; init; }
    [Id(19)] public long? ActualInputTokens { get; init; }
    [Id(20)] public long? ActualOutputTokens { get; init; }
    [Id(21)] public decimal? ActualCostUsd { get; init; }
    [Id(22)] public decimal? ActualChargeUsd { get; init; }
    [Id(23)] public long? ActualAmountSats { get; init; }
    [Id(24)] public long? RefundAmountSats { get; init; }
    /// <summary>One of <see cref="RefundStates"/>, once the job is complete, or failed after its work was paid for.</summary>
    [Id(25)] public string? RefundState { get; init; }
    /// <summary>The hash of the invoice the refund is paid to, from the claim that won it.</summary>
    [Id(26)] public string? RefundPaymentHash { get; init; }
    [Id(27)] public string? ErrorMessage { get; init; }
    /// <summary>When the claim paying the refund won it; with <see cref="RefundStates.Paying"/>.</summary>
    [Id(28)] public DateTime? RefundClaimedAt { get; init; }

    public AgentJobState Phase => AgentJobStates.Parse(State);
}

/// <summary>The work invoice and its price, stored together as the job moves to awaiting_work_payment.</summary>
public sealed record WorkQuote(
    string Reason, long EstimatedTokens, string PaymentHash, string PaymentRequest, long AmountSats, decimal EstimatedCostUsd, decimal MarginPct, decimal BtcPriceUsd);

/// <summary>The honest accounting of a complete job's work (all zero, and the whole work invoice owed back, when the work failed).</summary>
public sealed record CostLedger(
    long ActualInputTokens, long ActualOutputTokens, decimal ActualCostUsd, decimal ActualChargeUsd, long ActualAmountSats, long RefundAmountSats);
