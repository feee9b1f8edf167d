using Coordinator.Grains.Lightning.Payments;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>Why a request was not admitted, or that it was.</summary>
public enum AdmissionOutcome
{
    Admitted,
    NotFound,
    Expired,
    /// <summary>Awaiting its deposit, or paused.</summary>
    NotActive,
    /// <summary>Active, but its balance is below the minimum.</summary>
    InsufficientBalance,
}

/// <summary>The answer to <see cref="ISessionGrain.AdmitAsync"/>, with the session as it was when decided.</summary>
[GenerateSerializer, Immutable]
public sealed record Admission([property: Id(0)] AdmissionOutcome Outcome, [property: Id(1)] SessionSnapshot? Session);

/// <summary>How a top-up request ended.</summary>
public enum TopupOutcome
{
    Created,
    NotFound,
    /// <summary>The session is awaiting its deposit or expired.</summary>
    NotLive,
    /// <summary>The session already has an outstanding top-up.</summary>
    AlreadyPending,
}

[GenerateSerializer, Immutable]
public sealed record TopupAnswer([property: Id(0)] TopupOutcome Outcome, [property: Id(1)] SessionInvoice? Invoice);

/// <summary>
/// One prepaid session (key: its id): opening it, advancing it when its invoices are paid, admitting and debiting its
/// requests, and its top-ups. The grain runs one call at a time, so one silo never checks the same invoice twice at
/// once; the conditional statements of <see cref="SessionStore"/> decide between two activations (a silo that died,
/// a partition), so nothing here trusts memory: the row is the state.
/// </summary>
public interface ISessionGrain : IGrainWithStringKey
{
    /// <summary>Opens this session with a deposit invoice for <paramref name="depositSats"/>; answers the invoice.</summary>
    Task<SessionInvoice> OpenAsync(long depositSats);

    /// <summary>
    /// The session after crediting what has been paid: a paid deposit activates it, a paid top-up adds its amount once and
    /// resumes it; null when there is no such session.
    /// </summary>
    Task<SessionSnapshot?> AdvanceAsync();

    /// <summary>Admits one request, marking it as activity, or says why not.</summary>
    Task<Admission> AdmitAsync();

    /// <summary>Debits and records what an admitted request cost (once per request id).</summary>
    Task<SessionDebit> DebitAsync(SessionCharge charge);

    /// <summary>Creates the session's one outstanding top-up invoice, for <paramref name="amountSats"/>.</summary>
    Task<TopupAnswer> RequestTopupAsync(long amountSats);
}

public sealed class SessionGrain(SessionStore store, ILightningNode node, TimeProvider time, IOptions<AgentSessionOptions> options) : Grain, ISessionGrain
{
    private string Id => this.GetPrimaryKeyString();

    private AgentSessionOptions Settings => options.Value;

    public async Task<SessionInvoice> OpenAsync(long depositSats)
    {
        var invoice = await node.CreateInvoiceAsync(depositSats, $"Lightning agent session {Id}: deposit", CancellationToken.None);
        await store.CreateAsync(Id, invoice.AmountSats, invoice.PaymentHash, invoice.PaymentRequest, time.GetUtcNow(), CancellationToken.None);
        return new SessionInvoice(invoice.PaymentRequest, invoice.AmountSats, invoice.PaymentHash);
    }

    public async Task<SessionSnapshot?> AdvanceAsync()
    {
        var session = await FindAsync();
        if (session is null) return null;
        if (session.State == AgentSessionState.AwaitingPayment && await node.IsPaidAsync(session.Deposit.PaymentHash, CancellationToken.None))
        {
            await store.ActivateAsync(Id, time.GetUtcNow(), CancellationToken.None);
            session = await FindAsync();
        }
        // A top-up paid after its session expired is still credited: the balance then shows what was paid.
        if (session?.PendingTopup is { } topup && await node.IsPaidAsync(topup.PaymentHash, CancellationToken.None))
        {
            await store.CreditTopupAsync(Id, topup.PaymentHash, time.GetUtcNow(), Settings.IdleTimeout, CancellationToken.None);
            session = await FindAsync();
        }
        return session;
    }

    public async Task<Admission> AdmitAsync()
    {
        if (await store.AdmitAsync(Id, time.GetUtcNow(), Settings.IdleTimeout, Settings.MinimumBalanceSats, CancellationToken.None))
        {
            return new Admission(AdmissionOutcome.Admitted, await FindAsync());
        }
        var session = await AdvanceAsync();
        var outcome = session switch
        {
            null => AdmissionOutcome.NotFound,
            { State: AgentSessionState.Expired } => AdmissionOutcome.Expired,
            { State: AgentSessionState.Active } when session.BalanceSats < Settings.MinimumBalanceSats => AdmissionOutcome.InsufficientBalance,
            // Active and enough now: a top-up this advance credited. Try once more.
            { State: AgentSessionState.Active } => await store.AdmitAsync(Id, time.GetUtcNow(), Settings.IdleTimeout, Settings.MinimumBalanceSats, CancellationToken.None)
                ? AdmissionOutcome.Admitted
                : AdmissionOutcome.NotActive,
            _ => AdmissionOutcome.NotActive,
        };
        return new Admission(outcome, outcome == AdmissionOutcome.Admitted ? await FindAsync() : session);
    }

    public Task<SessionDebit> DebitAsync(SessionCharge charge) =>
        store.DebitAsync(Id, charge, time.GetUtcNow(), Settings.IdleTimeout, Settings.MinimumBalanceSats, CancellationToken.None);

    public async Task<TopupAnswer> RequestTopupAsync(long amountSats)
    {
        var session = await AdvanceAsync();
        if (session is null) return new TopupAnswer(TopupOutcome.NotFound, null);
        if (!session.IsLive) return new TopupAnswer(TopupOutcome.NotLive, null);
        if (session.PendingTopup is not null) return new TopupAnswer(TopupOutcome.AlreadyPending, null);
        var invoice = await node.CreateInvoiceAsync(amountSats, $"Lightning agent session {Id}: top-up", CancellationToken.None);
        // Another activation may have added one since the read: then this invoice is never shown, and never paid.
        return await store.AddTopupAsync(Id, invoice.PaymentHash, invoice.PaymentRequest, invoice.AmountSats, time.GetUtcNow(), CancellationToken.None)
            ? new TopupAnswer(TopupOutcome.Created, new SessionInvoice(invoice.PaymentRequest, invoice.AmountSats, invoice.PaymentHash))
            : new TopupAnswer(TopupOutcome.AlreadyPending, null);
    }

    private Task<SessionSnapshot?> FindAsync() => store.FindAsync(Id, time.GetUtcNow(), Settings.IdleTimeout, CancellationToken.None);
}
