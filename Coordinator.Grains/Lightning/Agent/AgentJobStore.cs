using System.Security.Cryptography;
using Dapper;
using Npgsql;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// <c>lightning_agent_jobs</c>. Every step is one conditional UPDATE on the state it leaves, answering the row it wrote or
/// null when the job was not in that state (another silo moved it first): a step happens once, whoever races it.
/// </summary>
public sealed class AgentJobStore(NpgsqlDataSource dataSource, TimeProvider time)
{
    private const string Columns = """
        id, request, state, created_at, completed_at, eval_payment_hash, eval_payment_request, eval_amount_sats, eval_grid_job_id,
        reason, estimated_tokens, work_payment_hash, work_payment_request, work_amount_sats, estimated_cost_usd, margin_pct,
        btc_price_usd, work_grid_job_id, result, actual_input_tokens, actual_output_tokens, actual_cost_usd, actual_charge_usd,
        actual_amount_sats, refund_amount_sats, refund_state, refund_payment_hash, error_message
        """;

    /// <summary>A new id: 128 random bits in hex, so that nobody finds a job (its result, its refund) by guessing.</summary>
    public static string NewId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    public async Task<AgentJobRow> CreateAsync(string id, string request, string evalPaymentHash, string evalPaymentRequest, long evalAmountSats,
        CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleAsync<AgentJobRow>(new CommandDefinition($"""
            INSERT INTO lightning_agent_jobs (id, request, state, created_at, eval_payment_hash, eval_payment_request, eval_amount_sats)
            VALUES (@id, @request, 'awaiting_eval_payment', @now, @evalPaymentHash, @evalPaymentRequest, @evalAmountSats)
            RETURNING {Columns}
            """, new { id, request, now = time.GetUtcNow(), evalPaymentHash, evalPaymentRequest, evalAmountSats }, cancellationToken: cancellationToken));
    }

    public async Task<AgentJobRow?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<AgentJobRow>(new CommandDefinition(
            $"SELECT {Columns} FROM lightning_agent_jobs WHERE id = @id", new { id }, cancellationToken: cancellationToken));
    }

    /// <summary>awaiting_eval_payment → evaluating, with the eval's grid job.</summary>
    public Task<AgentJobRow?> StartEvaluatingAsync(string id, long gridJobId) =>
        StepAsync(id, AgentJobState.AwaitingEvalPayment, AgentJobState.Evaluating, "eval_grid_job_id = @gridJobId", new { gridJobId });

    /// <summary>evaluating → rejected, with the evaluator's reason.</summary>
    public Task<AgentJobRow?> RejectAsync(string id, string reason, long estimatedTokens) =>
        StepAsync(id, AgentJobState.Evaluating, AgentJobState.Rejected, "reason = @reason, estimated_tokens = @estimatedTokens", new { reason, estimatedTokens });

    /// <summary>evaluating → awaiting_work_payment, with the work invoice and its locked price.</summary>
    public Task<AgentJobRow?> QuoteAsync(string id, WorkQuote quote) =>
        StepAsync(id, AgentJobState.Evaluating, AgentJobState.AwaitingWorkPayment, """
            reason = @Reason, estimated_tokens = @EstimatedTokens, work_payment_hash = @PaymentHash, work_payment_request = @PaymentRequest,
            work_amount_sats = @AmountSats, estimated_cost_usd = @EstimatedCostUsd, margin_pct = @MarginPct, btc_price_usd = @BtcPriceUsd
            """, quote);

    /// <summary>awaiting_work_payment → executing, with the work's grid job.</summary>
    public Task<AgentJobRow?> StartExecutingAsync(string id, long gridJobId) =>
        StepAsync(id, AgentJobState.AwaitingWorkPayment, AgentJobState.Executing, "work_grid_job_id = @gridJobId", new { gridJobId });

    /// <summary>executing → complete, with the result and the cost ledger; the refund is pending when one is owed.</summary>
    public Task<AgentJobRow?> CompleteAsync(string id, string result, CostLedger ledger) =>
        StepAsync(id, AgentJobState.Executing, AgentJobState.Complete, """
            result = @result, completed_at = @now, actual_input_tokens = @ActualInputTokens, actual_output_tokens = @ActualOutputTokens,
            actual_cost_usd = @ActualCostUsd, actual_charge_usd = @ActualChargeUsd, actual_amount_sats = @ActualAmountSats,
            refund_amount_sats = @RefundAmountSats, refund_state = CASE WHEN @RefundAmountSats > 0 THEN 'pending' ELSE 'not_applicable' END
            """, new
            {
                result, now = time.GetUtcNow(), ledger.ActualInputTokens, ledger.ActualOutputTokens, ledger.ActualCostUsd, ledger.ActualChargeUsd,
                ledger.ActualAmountSats, ledger.RefundAmountSats,
            });

    /// <summary><paramref name="from"/> (evaluating or executing) → failed, saying why.</summary>
    public Task<AgentJobRow?> FailAsync(string id, AgentJobState from, string errorMessage) =>
        StepAsync(id, from, AgentJobState.Failed, "error_message = @errorMessage", new { errorMessage });

    /// <summary>Claims a complete job's pending refund for one payer: pending → paying. False when it was not pending.</summary>
    public Task<bool> ClaimRefundAsync(string id) => RefundStepAsync(id, RefundStates.Pending, "refund_state = 'paying'", null);

    /// <summary>A claim's payment failed: paying → pending, so that it can be claimed again.</summary>
    public Task<bool> ReleaseRefundAsync(string id) => RefundStepAsync(id, RefundStates.Paying, "refund_state = 'pending'", null);

    /// <summary>A claim's payment went out: paying → paid, with the payment's hash.</summary>
    public Task<bool> MarkRefundPaidAsync(string id, string paymentHash) =>
        RefundStepAsync(id, RefundStates.Paying, "refund_state = 'paid', refund_payment_hash = @paymentHash, refund_paid_at = @now",
            new { paymentHash, now = time.GetUtcNow() });

    private async Task<AgentJobRow?> StepAsync(string id, AgentJobState from, AgentJobState to, string set, object values)
    {
        var parameters = new DynamicParameters(values);
        parameters.AddDynamicParams(new { id, from = from.Name(), to = to.Name() });
        await using var connection = await dataSource.OpenConnectionAsync();
        return await connection.QuerySingleOrDefaultAsync<AgentJobRow>($"""
            UPDATE lightning_agent_jobs SET state = @to, {set}
            WHERE id = @id AND state = @from
            RETURNING {Columns}
            """, parameters);
    }

    private async Task<bool> RefundStepAsync(string id, string from, string set, object? values)
    {
        var parameters = new DynamicParameters(values);
        parameters.AddDynamicParams(new { id, from });
        await using var connection = await dataSource.OpenConnectionAsync();
        return await connection.ExecuteAsync($"""
            UPDATE lightning_agent_jobs SET {set}
            WHERE id = @id AND state = 'complete' AND refund_state = @from
            """, parameters) == 1;
    }
}
