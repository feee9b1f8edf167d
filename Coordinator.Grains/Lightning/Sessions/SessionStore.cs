using Dapper;
using Npgsql;

namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>What one request cost and how it ended, to be debited from its session and recorded.</summary>
[GenerateSerializer, Immutable]
public sealed record SessionCharge(
    [property: Id(0)] string RequestId,
    [property: Id(1)] string State,
    [property: Id(2)] long EvalSats,
    [property: Id(3)] long WorkSats,
    [property: Id(4)] decimal BtcPriceUsd,
    [property: Id(5)] long? EvalJobId,
    [property: Id(6)] long? WorkJobId)
{
    public long TotalSats => EvalSats + WorkSats;
}

/// <summary>A charge as debited: <paramref name="DebitedSats"/> is the charge, or the whole balance when that was less.</summary>
[GenerateSerializer, Immutable]
public sealed record SessionDebit([property: Id(0)] long DebitedSats, [property: Id(1)] long BalanceRemaining);

/// <summary>
/// The sessions' rows (migration 0021). Every change is one conditional statement, or one transaction that locks the
/// session's row first, so that the database decides between two silos: a payment is credited once, a debit is applied
/// once, and a balance never goes below 0. Times are the caller's clock, passed in, so that tests move them.
/// </summary>
public sealed class SessionStore(NpgsqlDataSource dataSource)
{
    private const string SelectSession = """
        SELECT s.id, s.state, s.deposit_sats, s.deposit_payment_hash, s.deposit_payment_request, s.balance_sats, s.last_activity_at,
               t.payment_hash AS topup_payment_hash, t.payment_request AS topup_payment_request, t.amount_sats AS topup_amount_sats
        FROM lightning_sessions s
        LEFT JOIN lightning_session_topups t ON t.session_id = s.id AND t.credited_at IS NULL
        WHERE s.id = @id
        """;

    public async Task CreateAsync(string id, long depositSats, string paymentHash, string paymentRequest, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO lightning_sessions (id, state, deposit_sats, deposit_payment_hash, deposit_payment_request, created_at)
            VALUES (@id, 'awaiting_payment', @depositSats, @paymentHash, @paymentRequest, @now)
            """, new { id, depositSats, paymentHash, paymentRequest, now }, cancellationToken: cancellationToken));
    }

    /// <summary>The session as it is at <paramref name="now"/>, or null when there is none.</summary>
    public async Task<SessionSnapshot?> FindAsync(string id, DateTimeOffset now, TimeSpan idleTimeout, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var row = await connection.QuerySingleOrDefaultAsync<SessionRow>(new CommandDefinition(SelectSession, new { id }, cancellationToken: cancellationToken));
        return row?.ToSnapshot(now, idleTimeout);
    }

    /// <summary>awaiting_payment → active with the deposit as its balance; false when another caller did it first.</summary>
    public async Task<bool> ActivateAsync(string id, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition("""
            UPDATE lightning_sessions SET state = 'active', balance_sats = deposit_sats, last_activity_at = @now
            WHERE id = @id AND state = 'awaiting_payment'
            """, new { id, now }, cancellationToken: cancellationToken)) == 1;
    }

    /// <summary>
    /// Records a top-up invoice as the session's outstanding one; false when the session already has one (the unique
    /// index decides between concurrent callers).
    /// </summary>
    public async Task<bool> AddTopupAsync(string id, string paymentHash, string paymentRequest, long amountSats, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO lightning_session_topups (payment_hash, session_id, amount_sats, payment_request, created_at)
            VALUES (@paymentHash, @id, @amountSats, @paymentRequest, @now)
            ON CONFLICT (session_id) WHERE credited_at IS NULL DO NOTHING
            """, new { id, paymentHash, paymentRequest, amountSats, now }, cancellationToken: cancellationToken)) == 1;
    }

    /// <summary>
    /// Credits the paid top-up <paramref name="paymentHash"/> once: marks it credited and adds its amount in one
    /// transaction, resumes a paused session, and counts as activity unless the session had already expired (expiry is
    /// final). False when another caller credited it first.
    /// </summary>
    public async Task<bool> CreditTopupAsync(string id, string paymentHash, DateTimeOffset now, TimeSpan idleTimeout, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var amount = await connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition("""
            UPDATE lightning_session_topups SET credited_at = @now
            WHERE payment_hash = @paymentHash AND session_id = @id AND credited_at IS NULL
            RETURNING amount_sats
            """, new { id, paymentHash, now }, transaction, cancellationToken: cancellationToken));
        if (amount is not { } sats) return false;
        var updated = await connection.ExecuteAsync(new CommandDefinition("""
            UPDATE lightning_sessions SET
                balance_sats = balance_sats + @sats,
                state = CASE WHEN state = 'paused' THEN 'active' ELSE state END,
                last_activity_at = CASE WHEN last_activity_at + @idleTimeout > @now THEN @now ELSE last_activity_at END
            WHERE id = @id AND state <> 'awaiting_payment'
            """, new { id, sats, now, idleTimeout }, transaction, cancellationToken: cancellationToken));
        if (updated != 1) throw new InvalidOperationException($"Session {id} has a top-up but no deposit paid; a top-up is only offered to a paid session.");
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>
    /// Admits a request: the session is active, not expired and holds at least <paramref name="minimumBalanceSats"/>; its
    /// activity moves to <paramref name="now"/>, so that a request in flight does not see its session expire. False when
    /// any of that does not hold (the caller reads the session to say which).
    /// </summary>
    public async Task<bool> AdmitAsync(string id, DateTimeOffset now, TimeSpan idleTimeout, long minimumBalanceSats, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteAsync(new CommandDefinition("""
            UPDATE lightning_sessions SET last_activity_at = @now
            WHERE id = @id AND state = 'active' AND last_activity_at + @idleTimeout > @now AND balance_sats >= @minimumBalanceSats
            """, new { id, now, idleTimeout, minimumBalanceSats }, cancellationToken: cancellationToken)) == 1;
    }

    /// <summary>
    /// Records <paramref name="charge"/> and debits it in one transaction that holds the session's row: the debit is the
    /// charge or the whole balance, whichever is less; an active session left below <paramref name="minimumBalanceSats"/>
    /// is paused; the request counts as activity unless the session had expired meanwhile. A charge whose request id is
    /// already recorded is not debited again: the recorded debit is answered.
    /// </summary>
    public async Task<SessionDebit> DebitAsync(string id, SessionCharge charge, DateTimeOffset now, TimeSpan idleTimeout, long minimumBalanceSats,
        CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var session = await connection.QuerySingleOrDefaultAsync<(string State, long Balance)>(new CommandDefinition(
            "SELECT state, balance_sats FROM lightning_sessions WHERE id = @id FOR UPDATE",
            new { id }, transaction, cancellationToken: cancellationToken));
        if (session.State is null or SessionStates.AwaitingPayment) throw new InvalidOperationException($"Session {id} is not paid; no request can have run on it.");

        var recorded = await connection.QuerySingleOrDefaultAsync<SessionDebit>(new CommandDefinition(
            "SELECT debited_sats AS DebitedSats, balance_after AS BalanceRemaining FROM lightning_session_requests WHERE request_id = @requestId",
            new { requestId = charge.RequestId }, transaction, cancellationToken: cancellationToken));
        if (recorded is not null) return recorded;

        var debited = Math.Min(session.Balance, charge.TotalSats);
        var balance = session.Balance - debited;
        await connection.ExecuteAsync(new CommandDefinition("""
            UPDATE lightning_sessions SET
                balance_sats = @balance,
                state = CASE WHEN state = 'active' AND @balance < @minimumBalanceSats THEN 'paused' ELSE state END,
                last_activity_at = CASE WHEN last_activity_at + @idleTimeout > @now THEN @now ELSE last_activity_at END
            WHERE id = @id;
            INSERT INTO lightning_session_requests
                (request_id, session_id, state, eval_sats, work_sats, debited_sats, balance_after, btc_price_usd, eval_job_id, work_job_id, created_at)
            VALUES (@requestId, @id, @state, @evalSats, @workSats, @debited, @balance, @btcPriceUsd, @evalJobId, @workJobId, @now);
            """, new
        {
            id, balance, minimumBalanceSats, idleTimeout, now, debited,
            requestId = charge.RequestId, state = charge.State, evalSats = charge.EvalSats, workSats = charge.WorkSats,
            btcPriceUsd = charge.BtcPriceUsd, evalJobId = charge.EvalJobId, workJobId = charge.WorkJobId,
        }, transaction, cancellationToken: cancellationToken));
        await transaction.CommitAsync(cancellationToken);
        return new SessionDebit(debited, balance);
    }

    private sealed class SessionRow
    {
        public string Id { get; init; } = "";
        public string State { get; init; } = "";
        public long DepositSats { get; init; }
        public string DepositPaymentHash { get; init; } = "";
        public string DepositPaymentRequest { get; init; } = "";
        public long BalanceSats { get; init; }
        public DateTime? LastActivityAt { get; init; }
        public string? TopupPaymentHash { get; init; }
        public string? TopupPaymentRequest { get; init; }
        public long? TopupAmountSats { get; init; }

        public SessionSnapshot ToSnapshot(DateTimeOffset now, TimeSpan idleTimeout)
        {
            var state = SessionStates.Parse(State);
            DateTimeOffset? expiresAt = LastActivityAt is { } activity ? new DateTimeOffset(DateTime.SpecifyKind(activity, DateTimeKind.Utc)) + idleTimeout : null;
            if (expiresAt <= now) state = AgentSessionState.Expired;
            var topup = TopupPaymentHash is null ? null : new SessionInvoice(TopupPaymentRequest!, TopupAmountSats!.Value, TopupPaymentHash);
            return new SessionSnapshot(Id, state, BalanceSats, new SessionInvoice(DepositPaymentRequest, DepositSats, DepositPaymentHash), topup, expiresAt, now);
        }
    }
}
