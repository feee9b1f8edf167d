using Coordinator.Grains.Lightning.Bolt11;
using Coordinator.Grains.Lightning.Payments;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>How a refund claim ended; <see cref="Message"/> is for the client.</summary>
public enum RefundOutcomeKind
{
    Paid,
    NotFound,
    /// <summary>Not complete, no refund owed, or already paid or being paid (409).</summary>
    Conflict,
    /// <summary>The invoice is not one the refund may be paid to (400).</summary>
    BadInvoice,
    /// <summary>The node failed to pay; the refund is owed still (500).</summary>
    NodeFailed,
}

public sealed record RefundOutcome(RefundOutcomeKind Kind, string Message, long AmountSats = 0, string? PaymentHash = null);

/// <summary>
/// Pays a complete job's refund to the client's BOLT11 invoice, once: the invoice is checked (<see cref="Bolt11RefundCheck"/>,
/// for exactly the refund owed, on <see cref="AgentOptions.RefundNetwork"/>), then the refund is claimed by one conditional
/// UPDATE (pending → paying) that only one of any number of concurrent claims wins, and only the winner pays. A payment
/// the node refuses puts the refund back to pending.
/// </summary>
public sealed partial class AgentRefunds(AgentJobStore store, ILightningNode node, TimeProvider time, IOptions<AgentOptions> options, ILogger<AgentRefunds> logger)
{
    public async Task<RefundOutcome> ClaimAsync(string id, string invoice, CancellationToken cancellationToken = default)
    {
        if (await store.GetAsync(id, cancellationToken) is not { } job) return new(RefundOutcomeKind.NotFound, $"no job {id}");
        if (job.Phase != AgentJobState.Complete)
        {
            return new(RefundOutcomeKind.Conflict, $"the job is {job.State}: a refund can be claimed only once it is complete");
        }
        var amount = job.RefundAmountSats ?? 0;
        switch (job.RefundState)
        {
            case RefundStates.Paid: return new(RefundOutcomeKind.Conflict, "the refund has already been paid");
            case RefundStates.Paying: return new(RefundOutcomeKind.Conflict, "the refund is being paid to another claim");
            case not RefundStates.Pending: return new(RefundOutcomeKind.Conflict, "no refund is owed: the work cost what its invoice charged");
        }

        var check = Bolt11RefundCheck.Check(invoice, amount, options.Value.RefundNetwork(node.IsStub), time.GetUtcNow());
        if (!check.IsOk) return new(RefundOutcomeKind.BadInvoice, check.Message);
        if (!await store.ClaimRefundAsync(id)) return new(RefundOutcomeKind.Conflict, "the refund has already been claimed");

        LightningPayment payment;
        try
        {
            // Not the client's token: once the claim is won the payment goes through to an answer, whoever is still listening.
            payment = await node.PayAsync(invoice, amount, CancellationToken.None);
        }
        catch (LightningException exception)
        {
            await store.ReleaseRefundAsync(id);
            LogRefundFailed(logger, exception.Message);
            return new(RefundOutcomeKind.NodeFailed, $"the Lightning node could not pay the refund ({exception.Message}); it is still owed, claim it again");
        }
        await store.MarkRefundPaidAsync(id, payment.PaymentHash);
        return new(RefundOutcomeKind.Paid, $"refund of {amount} sats sent", amount, payment.PaymentHash);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "A Lightning agent refund failed and is owed again: {Reason}")]
    private static partial void LogRefundFailed(ILogger logger, string reason);
}
