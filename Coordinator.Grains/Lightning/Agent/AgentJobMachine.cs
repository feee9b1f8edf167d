using System.Globalization;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Lightning.Payments;
using Coordinator.Grains.Lightning.Pricing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// The pay-per-job state machine: moves a job on as far as its invoices and grid jobs allow right now, one
/// <see cref="AgentJobStore"/> step at a time. Its callers are serialised per job by <see cref="ILightningJobGrain"/>; what
/// keeps a step single across silos regardless is the store's conditional UPDATE and the runner's idempotency keys (one
/// eval and one work grid job per Lightning job, whoever submits them). When the Lightning node cannot be reached the job
/// stays where it is, and the next read tries again. Paid work that fails owes its whole invoice back (<see cref="AgentRefunds"/>).
/// </summary>
public sealed partial class AgentJobMachine(
    AgentJobStore store, IAgentRunner runner, ILightningNode node, IBtcPriceOracle oracle, AgentRefunds refunds, IOptions<AgentOptions> options,
    ILogger<AgentJobMachine> logger)
{
    /// <summary>Advances the job as far as it goes now and answers it; null when there is no such job.</summary>
    public async Task<AgentJobRow?> AdvanceAsync(string id, CancellationToken cancellationToken = default)
    {
        var job = await store.GetAsync(id, cancellationToken);
        while (job is not null)
        {
            AgentJobRow? next;
            try
            {
                next = await StepAsync(job, cancellationToken);
            }
            catch (LightningException exception)
            {
                LogNodeFailed(logger, job.State, exception.Message);
                return job;
            }
            // Ended, or waiting: a refund whose payment had no answer is settled on the way (AgentRefunds.SettleAsync).
            if (next is null) return await refunds.SettleAsync(job, cancellationToken);
            job = next;
        }
        return null;
    }

    /// <summary>One step: the job after it (re-read when another silo took the step), or null when nothing can happen yet.</summary>
    private async Task<AgentJobRow?> StepAsync(AgentJobRow job, CancellationToken cancellationToken) => job.Phase switch
    {
        AgentJobState.AwaitingEvalPayment => await StartEvalAsync(job, cancellationToken),
        AgentJobState.Evaluating => await ReadEvalAsync(job, cancellationToken),
        AgentJobState.AwaitingWorkPayment => await StartWorkAsync(job, cancellationToken),
        AgentJobState.Executing => await ReadWorkAsync(job, cancellationToken),
        _ => null,
    };

    private async Task<AgentJobRow?> StartEvalAsync(AgentJobRow job, CancellationToken cancellationToken)
    {
        if (!await node.IsPaidAsync(job.EvalPaymentHash, cancellationToken)) return null;
        var gridJobId = await runner.SubmitAsync(options.Value.EvalModel, AgentEval.Prompt(job.Request), $"lightning-job:{job.Id}:eval", cancellationToken);
        return await store.StartEvaluatingAsync(job.Id, gridJobId) ?? await store.GetAsync(job.Id, cancellationToken);
    }

    private async Task<AgentJobRow?> ReadEvalAsync(AgentJobRow job, CancellationToken cancellationToken)
    {
        var eval = await runner.GetAsync(job.EvalGridJobId!.Value, cancellationToken);
        if (!AgentRunner.IsEnded(eval)) return null;
        if (eval.Status != JobStatus.Completed) return await FailAsync(job, Ended("eval", eval), cancellationToken);
        if (AgentEval.Parse(eval.Output, options.Value.MaxEstimatedTokens) is not { } verdict)
        {
            return await FailAsync(job, $"the evaluator's answer (grid job {eval.Id}) holds no verdict: no JSON object with \"accept\" true or false", cancellationToken);
        }
        if (!verdict.Accept) return await store.RejectAsync(job.Id, verdict.Reason, verdict.EstimatedTokens) ?? await store.GetAsync(job.Id, cancellationToken);

        var agent = options.Value;
        var estimatedCostUsd = AgentPricing.ChargeUsd(
            AgentPricing.TokenCostUsd(verdict.EstimatedTokens, agent.RateOf(agent.WorkModel)), agent.InfrastructureUsd, agent.MarginPercent);
        var price = await oracle.GetBtcUsdAsync(cancellationToken);
        var amountSats = AgentPricing.InvoiceSats(estimatedCostUsd, price.Usd);
        var invoice = await node.CreateInvoiceAsync(amountSats, $"Lightning agent job {job.Id}: work", cancellationToken);
        var quote = new WorkQuote(verdict.Reason, verdict.EstimatedTokens, invoice.PaymentHash, invoice.PaymentRequest, invoice.AmountSats,
            estimatedCostUsd, agent.MarginPercent, price.Usd);
        return await store.QuoteAsync(job.Id, quote) ?? await store.GetAsync(job.Id, cancellationToken);
    }

    private async Task<AgentJobRow?> StartWorkAsync(AgentJobRow job, CancellationToken cancellationToken)
    {
        if (!await node.IsPaidAsync(job.WorkPaymentHash!, cancellationToken)) return null;
        var gridJobId = await runner.SubmitAsync(options.Value.WorkModel, job.Request, $"lightning-job:{job.Id}:work", cancellationToken);
        return await store.StartExecutingAsync(job.Id, gridJobId) ?? await store.GetAsync(job.Id, cancellationToken);
    }

    private async Task<AgentJobRow?> ReadWorkAsync(AgentJobRow job, CancellationToken cancellationToken)
    {
        var work = await runner.GetAsync(job.WorkGridJobId!.Value, cancellationToken);
        if (!AgentRunner.IsEnded(work)) return null;
        if (work.Status != JobStatus.Completed) return await FailAsync(job, Ended("work", work), cancellationToken);
        return await store.CompleteAsync(job.Id, work.Output ?? "", LedgerOf(job, work)) ?? await store.GetAsync(job.Id, cancellationToken);
    }

    /// <summary>The cost ledger of the work: its actual tokens at the work model's rate, at the margin and BTC price the invoice locked.</summary>
    public CostLedger LedgerOf(AgentJobRow job, JobRow work)
    {
        var agent = options.Value;
        long input = work.InputTokens ?? 0, output = work.OutputTokens ?? 0;
        var costUsd = AgentPricing.TokenCostUsd(input + output, agent.RateOf(agent.WorkModel));
        var chargeUsd = AgentPricing.ChargeUsd(costUsd, agent.InfrastructureUsd, job.MarginPct!.Value);
        var btcUsd = job.BtcPriceUsd!.Value;
        return new CostLedger(input, output, costUsd, chargeUsd, AgentPricing.Sats(chargeUsd, btcUsd),
            AgentPricing.RefundSats(job.WorkAmountSats!.Value, chargeUsd, btcUsd));
    }

    /// <summary>Fails the eval, or the paid work, whose whole invoice then is owed back.</summary>
    private async Task<AgentJobRow?> FailAsync(AgentJobRow job, string errorMessage, CancellationToken cancellationToken) =>
        await (job.Phase == AgentJobState.Executing ? store.FailWorkAsync(job.Id, errorMessage) : store.FailEvaluationAsync(job.Id, errorMessage))
        ?? await store.GetAsync(job.Id, cancellationToken);

    private string Ended(string what, JobRow gridJob) => gridJob.Status == JobStatus.Cancelled
        ? string.Create(CultureInfo.InvariantCulture, $"no worker took the {what} grid job {gridJob.Id} within {options.Value.JobTimeoutSeconds} seconds")
        : $"the {what} grid job {gridJob.Id} failed: {gridJob.Error ?? "no reason given"}";

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lightning agent job stays {State}: the Lightning node failed ({Reason})")]
    private static partial void LogNodeFailed(ILogger logger, string state, string reason);
}
