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
    /// <summary>The node failed to pay, or has not said whether it paid (500); the job shows which when it is known.</summary>
    NodeFailed,
}

public sealed record RefundOutcome(RefundOutcomeKind Kind, string Message, long AmountSats = 0, string? PaymentHash = null);

/// <summary>
/// Pays a refund to the client's BOLT11 invoice, once. The refund of a complete job (what its work invoice charged above
/// the actual cost) and of a failed one whose paid work was not done (the whole work invoice) are claimed alike.
/// <list type="number">
/// <item>The invoice is checked (<see cref="Bolt11RefundCheck"/>: for exactly the refund owed, on
/// <see cref="AgentOptions.RefundNetwork"/>).</item>
/// <item>The refund is claimed by one conditional UPDATE (pending → paying, with the invoice's payment hash) that only one
/// of any number of concurrent claims wins, and only the winner pays.</item>
/// <item>A payment the node settles is paid; one it refuses or fails is owed again (paying → pending).</item>
/// <item>A payment without a clear answer (the node timed out, or was unreachable halfway) stays paying: it may have gone
/// out, and paying another invoice could pay twice. <see cref="SettleAsync"/> later asks the node what became of that
/// payment hash, on the next read or claim of the job; so does it for a claim whose silo died while paying.</item>
/// </list>
/// </summary>
public sealed partial class AgentRefunds(
    AgentJobStore store, ILightningNode node, TimeProvider time, IOptions<AgentOptions> options, IOptions<LightningOptions> lightning,
    ILogger<AgentRefunds> logger)
{
    /// <summary>
    /// How old a paying claim must be before a payment the node does not know of counts as never made: long enough for the
    /// claim's own payment request (bounded by <see cref="LightningOptions.RequestTimeout"/>) to have ended either way.
    /// </summary>
    public TimeSpan SettleWindow => lightning.Value.RequestTimeout * 3;

    public async Task<RefundOutcome> ClaimAsync(string id, string invoice, CancellationToken cancellationToken = default)
    {
        if (await store.GetAsync(id, cancellationToken) is not { } job) return new(RefundOutcomeKind.NotFound, $"no job {id}");
        job = await SettleAsync(job, cancellationToken);
        if (job.Phase is not (AgentJobState.Complete or AgentJobState.Failed) || job.RefundState is null)
        {
            return new(RefundOutcomeKind.Conflict, job.Phase == AgentJobState.Failed
                ? "the job failed before its work was paid for: no refund is owed"
                : $"the job is {job.State}: a refund can be claimed only once it is complete");
        }
        var amount = job.RefundAmountSats ?? 0;
        switch (job.RefundState)
        {
            case RefundStates.Paid: return new(RefundOutcomeKind.Conflict, "the refund has already been paid");
            case RefundStates.Paying:
                return new(RefundOutcomeKind.Conflict,
                    $"the refund is being paid to the invoice with payment hash {job.RefundPaymentHash}; read the job to see when it is paid");
            case not RefundStates.Pending: return new(RefundOutcomeKind.Conflict, "no refund is owed: the work cost what its invoice charged");
        }

        var check = Bolt11RefundCheck.Check(invoice, amount, options.Value.RefundNetwork(node.IsStub), time.GetUtcNow());
        if (!check.IsOk) return new(RefundOutcomeKind.BadInvoice, check.Message);
        var paymentHash = check.Invoice!.PaymentHash;
        if (!await store.ClaimRefundAsync(id, paymentHash)) return new(RefundOutcomeKind.Conflict, "the refund has already been claimed");

        LightningPayment payment;
        try
        {
            // Not the client's token: once the claim is won the payment goes through to an answer, whoever is still listening.
            payment = await node.PayAsync(invoice, paymentHash, amount, CancellationToken.None);
        }
        catch (LightningException exception)
        {
            LogRefundFailed(logger, paymentHash, exception.Message);
            return await AfterFailedPaymentAsync(id, paymentHash, amount, exception);
        }
        if (payment.IsPending)
        {
            return new(RefundOutcomeKind.Paid, $"refund of {amount} sats sent; the node is still settling it, and the job shows it paid once it has",
                amount, paymentHash);
        }
        await store.MarkRefundPaidAsync(id, paymentHash);
        return new(RefundOutcomeKind.Paid, $"refund of {amount} sats sent", amount, paymentHash);
    }

    /// <summary>
    /// The job, with a refund that is paying settled as far as the node can tell now: paid when the node settled the payment,
    /// owed again when it failed, or when the node never heard of it and the claim is older than <see cref="SettleWindow"/>.
    /// A node that cannot be asked leaves it paying.
    /// </summary>
    public async Task<AgentJobRow> SettleAsync(AgentJobRow job, CancellationToken cancellationToken = default)
    {
        if (job.RefundState != RefundStates.Paying || job.RefundPaymentHash is not { } paymentHash) return job;
        OutgoingPaymentStatus status;
        try
        {
            status = await node.GetPaymentAsync(paymentHash, cancellationToken);
        }
        catch (LightningException exception)
        {
            LogSettleFailed(logger, paymentHash, exception.Message);
            return job;
        }
        var claimedAt = new DateTimeOffset(DateTime.SpecifyKind(job.RefundClaimedAt ?? DateTime.MinValue, DateTimeKind.Utc));
        var fate = await ApplyAsync(job.Id, paymentHash, status, unknownIsUnpaid: time.GetUtcNow() - claimedAt >= SettleWindow);
        return fate == RefundFate.Held ? job : await store.GetAsync(job.Id, cancellationToken) ?? job;
    }

    /// <summary>The claim's payment threw: settle it by what the node says of it, and tell the client where the refund stands.</summary>
    private async Task<RefundOutcome> AfterFailedPaymentAsync(string id, string paymentHash, long amount, LightningException exception)
    {
        RefundFate fate;
        try
        {
            // The node answered the payment with an error: if it holds no payment to the hash, it made none.
            fate = await ApplyAsync(id, paymentHash, await node.GetPaymentAsync(paymentHash, CancellationToken.None), unknownIsUnpaid: exception.NodeAnswered);
        }
        catch (LightningException)
        {
            fate = RefundFate.Held;
        }
        return fate switch
        {
            RefundFate.Paid => new(RefundOutcomeKind.Paid, $"refund of {amount} sats sent", amount, paymentHash),
            RefundFate.Owed => new(RefundOutcomeKind.NodeFailed, $"the Lightning node could not pay the refund ({exception.Message}); it is still owed, claim it again"),
            _ => new(RefundOutcomeKind.NodeFailed,
                $"the Lightning node has not said whether it paid the refund ({exception.Message}). It is held for the invoice you sent " +
                $"(payment hash {paymentHash}) until the node does: read the job, which shows it paid, or pending again " +
                "if the payment did not go out, and then claim it again"),
        };
    }

    /// <summary>Where a paying refund stands once the node has said what became of its payment.</summary>
    private enum RefundFate
    {
        Paid,
        /// <summary>Owed again: the payment did not go out.</summary>
        Owed,
        /// <summary>Still paying: the payment may yet go out, or the node could not say.</summary>
        Held,
    }

    /// <summary>
    /// Applies the node's <paramref name="status"/> of the payment to <paramref name="paymentHash"/>: settled is paid,
    /// failed is owed again, and so is a payment the node never heard of when <paramref name="unknownIsUnpaid"/>.
    /// </summary>
    private async Task<RefundFate> ApplyAsync(string id, string paymentHash, OutgoingPaymentStatus status, bool unknownIsUnpaid)
    {
        switch (status)
        {
            case OutgoingPaymentStatus.Succeeded:
                await store.MarkRefundPaidAsync(id, paymentHash);
                return RefundFate.Paid;
            case OutgoingPaymentStatus.Failed:
            case OutgoingPaymentStatus.Unknown when unknownIsUnpaid:
                await store.ReleaseRefundAsync(id, paymentHash);
                return RefundFate.Owed;
            default:
                return RefundFate.Held;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "A Lightning agent refund to payment hash {PaymentHash} failed or has no answer: {Reason}")]
    private static partial void LogRefundFailed(ILogger logger, string paymentHash, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A Lightning agent refund to payment hash {PaymentHash} stays paying: the node could not be asked about it ({Reason})")]
    private static partial void LogSettleFailed(ILogger logger, string paymentHash, string reason);
}
