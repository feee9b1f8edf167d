using Coordinator.Grains.Jobs;
using Coordinator.Grains.Lightning.Agent;
using Coordinator.Grains.Lightning.Pricing;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>The states a session request ends in, as the spec spells them.</summary>
public static class SessionRequestStates
{
    public const string Complete = "complete";
    public const string Rejected = "rejected";
    public const string Failed = "failed";
}

/// <summary>What a request against a session came to: the agent's answer, its cost, and what was debited.</summary>
public sealed record SessionRequestResult(
    string RequestId,
    string State,
    string? Result,
    string? Reason,
    string? ErrorMessage,
    SessionCharge Charge,
    SessionDebit Debit);

/// <summary>
/// Runs one admitted request against a session: the eval and, when it accepts, the work, as grid jobs through
/// <see cref="IAgentRunner"/> with idempotency keys derived from the request id; then debits the actual cost with the
/// margin in one transaction with the request's record. The eval fee is charged whenever the eval ran to completion
/// (accepted, rejected, or with a verdict that could not be read); the work is charged at its actual tokens when it
/// completed. A grid job that failed, or that no worker took in time, costs nothing. The run does not follow the client's
/// cancellation: work done is debited whether or not the client stayed for the answer.
/// </summary>
public sealed class SessionRequests(
    IGrainFactory grains, IAgentRunner runner, IBtcPriceOracle prices, IOptions<AgentOptions> agentOptions)
{
    /// <summary>Runs <paramref name="request"/> on the session <paramref name="sessionId"/>, which <see cref="ISessionGrain.AdmitAsync"/> admitted.</summary>
    public async Task<SessionRequestResult> RunAsync(string sessionId, string request)
    {
        var agent = agentOptions.Value;
        var requestId = SessionIds.NewRequestId();
        var btc = await prices.GetBtcUsdAsync(CancellationToken.None);

        var (evalJob, eval) = await RunJobAsync(agent.EvalModel, AgentEval.Prompt(request), $"lightning-session:{requestId}:eval");
        string state;
        long evalSats = 0, workSats = 0;
        long? workJob = null;
        string? result = null, reason = null, error = null;
        if (eval.Status != JobStatus.Completed)
        {
            (state, error) = (SessionRequestStates.Failed, FailureOf("eval", eval));
        }
        else if (AgentEval.Parse(eval.Output, agent.MaxEstimatedTokens) is not { } verdict)
        {
            (state, evalSats, error) = (SessionRequestStates.Failed, agent.EvalFeeSats, "the evaluator's answer could not be read");
        }
        else if (!verdict.Accept)
        {
            (state, evalSats, reason) = (SessionRequestStates.Rejected, agent.EvalFeeSats, verdict.Reason);
        }
        else
        {
            evalSats = agent.EvalFeeSats;
            reason = verdict.Reason;
            (var workJobId, var work) = await RunJobAsync(agent.WorkModel, request, $"lightning-session:{requestId}:work");
            workJob = workJobId;
            if (work.Status == JobStatus.Completed)
            {
                var tokens = (long)(work.InputTokens ?? 0) + (work.OutputTokens ?? 0);
                var chargeUsd = AgentPricing.ChargeUsd(AgentPricing.TokenCostUsd(tokens, agent.RateOf(agent.WorkModel)), agent.InfrastructureUsd, agent.MarginPercent);
                (state, workSats, result) = (SessionRequestStates.Complete, AgentPricing.InvoiceSats(chargeUsd, btc.Usd), work.Output ?? "");
            }
            else
            {
                (state, error) = (SessionRequestStates.Failed, FailureOf("work", work));
            }
        }

        var charge = new SessionCharge(requestId, state, evalSats, workSats, btc.Usd, evalJob, workJob);
        var debit = await grains.GetGrain<ISessionGrain>(sessionId).DebitAsync(charge);
        return new SessionRequestResult(requestId, state, result, reason, error, charge, debit);
    }

    /// <summary>Submits a grid job and waits for its end (the runner cancels one that no worker takes in time).</summary>
    private async Task<(long JobId, JobRow Job)> RunJobAsync(string model, string prompt, string idempotencyKey)
    {
        var jobId = await runner.SubmitAsync(model, prompt, idempotencyKey, CancellationToken.None);
        return (jobId, await runner.WaitAsync(jobId, CancellationToken.None));
    }

    private static string FailureOf(string step, JobRow job) => job.Status == JobStatus.Cancelled
        ? $"the {step} was cancelled: {job.Error ?? "no worker took it in time"}"
        : $"the {step} failed: {job.Error ?? "the worker gave no reason"}";
}
