namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>An invoice as a session shows it: <paramref name="PaymentHash"/> is shown to clients in stub mode only.</summary>
[GenerateSerializer, Immutable]
public sealed record SessionInvoice([property: Id(0)] string PaymentRequest, [property: Id(1)] long AmountSats, [property: Id(2)] string PaymentHash);

/// <summary>
/// A session as it is at <paramref name="AsOf"/>: its state (expired derived from its activity), balance and invoices.
/// <paramref name="ExpiresAt"/> is null until the deposit is paid: an unpaid session has no activity to be idle from.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SessionSnapshot(
    [property: Id(0)] string Id,
    [property: Id(1)] AgentSessionState State,
    [property: Id(2)] long BalanceSats,
    [property: Id(3)] SessionInvoice Deposit,
    [property: Id(4)] SessionInvoice? PendingTopup,
    [property: Id(5)] DateTimeOffset? ExpiresAt,
    [property: Id(6)] DateTimeOffset AsOf)
{
    /// <summary>Whether the session's holder may use it: a macaroon is shown, requests and top-ups are taken.</summary>
    public bool IsLive => State is AgentSessionState.Active or AgentSessionState.Paused;
}
