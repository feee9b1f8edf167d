namespace Coordinator.Grains.Lightning.Payments;

/// <summary>
/// The Lightning wallet the agent API takes payments into and pays refunds from. One contract for the two kinds of node:
/// LNbits over its REST API (<see cref="LnbitsLightningNode"/>) and the stub that needs no node at all
/// (<see cref="StubLightningNode"/>), so the job and session state machines never ask which one they talk to.
/// Failures of the node (unreachable, an error answer, a payment that failed) come out as <see cref="LightningException"/>.
/// </summary>
public interface ILightningNode
{
    /// <summary>
    /// Whether this is the stub: invoices are <c>lnbcrt&lt;N&gt;u1stub_…</c>, nothing moves on a real network, and the API may
    /// show each invoice's payment hash and mark it paid through the development route.
    /// </summary>
    bool IsStub { get; }

    /// <summary>An invoice for <paramref name="amountSats"/> (at least 1) with <paramref name="memo"/> as its description.</summary>
    Task<LightningInvoice> CreateInvoiceAsync(long amountSats, string memo, CancellationToken cancellationToken);

    /// <summary>
    /// Whether the invoice with <paramref name="paymentHash"/>, made by <see cref="CreateInvoiceAsync"/>, has been paid.
    /// An invoice the node does not know is a <see cref="LightningException"/>, not "unpaid": it means the node or its
    /// wallet changed under us, which polling would never fix.
    /// </summary>
    Task<bool> IsPaidAsync(string paymentHash, CancellationToken cancellationToken);

    /// <summary>
    /// Pays the BOLT11 invoice <paramref name="bolt11"/>, which the caller has decoded and checked to be for
    /// <paramref name="expectedAmountSats"/> with <paramref name="paymentHash"/>. Answers once the node accepted the payment;
    /// a payment the node reports as failed is a <see cref="LightningException"/>. A node that did not answer
    /// (<see cref="LightningException.NodeAnswered"/> false) may have paid all the same: ask <see cref="GetPaymentAsync"/>.
    /// </summary>
    Task<LightningPayment> PayAsync(string bolt11, string paymentHash, long expectedAmountSats, CancellationToken cancellationToken);

    /// <summary>
    /// What became of an outgoing payment to the invoice with <paramref name="paymentHash"/>, as far as the node knows:
    /// how a payment whose <see cref="PayAsync"/> had no clear answer (a timeout, a crash) is settled later.
    /// </summary>
    Task<OutgoingPaymentStatus> GetPaymentAsync(string paymentHash, CancellationToken cancellationToken);
}

/// <summary>An outgoing payment as the node knows it.</summary>
public enum OutgoingPaymentStatus
{
    /// <summary>The node has no payment to this hash: it never started one, or (LNbits before 1.0) dropped a failed one.</summary>
    Unknown,
    /// <summary>Sent, not yet settled: it may still succeed or fail.</summary>
    Pending,
    Succeeded,
    /// <summary>Failed for good: nothing was paid, the funds are back in the wallet.</summary>
    Failed,
}

/// <summary>An invoice to show a payer: its BOLT11 <paramref name="PaymentRequest"/> and the hash that identifies it to the node.</summary>
public sealed record LightningInvoice(string PaymentHash, string PaymentRequest, long AmountSats);

/// <summary>
/// An outgoing payment the node accepted. <paramref name="AmountSats"/> is what the node says it sent when it says so,
/// else the amount asked for. <paramref name="IsPending"/>: the node has sent it but not yet heard that it settled (an
/// LNbits payment in flight, status <c>pending</c>); it may still fail later, and the node then returns the funds.
/// </summary>
public sealed record LightningPayment(string PaymentHash, long AmountSats, bool IsPending);
