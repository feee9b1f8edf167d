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
        actual_amount_sats, refund_amount_sats, refund_state, refund_payment_hash, error_message, refund_claimed_at
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

    /// <summary>evaluating → failed, saying why.</summary>
    public Task<AgentJobRow?> FailEvaluationAsync(string id, string errorMessage) =>
        StepAsync(id, AgentJobState.Evaluating, AgentJobState.Failed, "error_message = @errorMessage", new { errorMessage });

    /// <summary>
    /// executing → failed, saying why. The work was paid for and not done: it charged nothing, and its whole invoice is
    /// owed back as a refund, claimed as a complete job's is.
    /// </summary>
    public Task<AgentJobRow?> FailWorkAsync(string id, string errorMessage) =>
        StepAsync(id, AgentJobState.Executing, AgentJobState.Failed, """
            error_message = @errorMessage, actual_input_tokens = 0, actual_output_tokens = 0, actual_cost_usd = 0, actual_charge_usd = 0,
            actual_amount_sats = 0, refund_amount_sats = work_amount_sats, refund_state = 'pending'
            """, new { errorMessage });

    /// <summary>
    /// Claims a pending refund for one payer, who will pay the invoice with <paramref name="paymentHash"/>: pending → paying.
    /// False when it was not pending.
    /// </summary>
    public Task<bool> ClaimRefundAsync(string id, string paymentHash) =>
        RefundStepAsync(id, RefundStates.Pending, null, "refund_state = 'paying', refund_payment_hash = @paymentHash, refund_claimed_at = @now",
            new { paymentHash, now = time.GetUtcNow() });

    /// <summary>The payment to <paramref name="paymentHash"/> did not go out: paying → pending, so that it can be claimed again.</summary>
    public Task<bool> ReleaseRefundAsync(string id, string paymentHash) =>
        RefundStepAsync(id, RefundStates.Paying, paymentHash, "refund_state = 'pending', refund_payment_hash = NULL, refund_claimed_at = NULL", null);

    /// <summary>The payment to <paramref name="paymentHash"/> went out: paying → paid.</summary>
    public Task<bool> MarkRefundPaidAsync(string id, string paymentHash) =>
        RefundStepAsync(id, RefundStates.Paying, paymentHash, "refund_state = 'paid', refund_paid_at = @now", new { now = time.GetUtcNow() });

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

    /// <summary>A refund step from <paramref name="from"/>, of the claim paying <paramref name="paymentHash"/> when it is given.</summary>
    private async Task<bool> RefundStepAsync(string id, string from, string? paymentHash, string set, object? values)
    {
        var parameters = new DynamicParameters(values);
        parameters.AddDynamicParams(new { id, from, claimedHash = paymentHash });
        await using var connection = await dataSource.OpenConnectionAsync();
        return await connection.ExecuteAsync($"""
            UPDATE lightning_agent_jobs SET {set}
            WHERE id = @id AND state IN ('complete', 'failed') AND refund_state = @from
              AND (@claimedHash::text IS NULL OR refund_payment_hash = @claimedHash)
            """, parameters) == 1;
    }
}
