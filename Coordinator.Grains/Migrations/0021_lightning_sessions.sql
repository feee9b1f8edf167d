-- 0021: the Lightning agent's prepaid sessions (issue #18, "Sessions"): a deposit paid once, then many requests debited
-- from its balance. Every change of a balance is one conditional statement (or one transaction) on these rows, so that
-- two silos advancing or debiting one session at once credit a payment once and apply each debit once.

CREATE TABLE lightning_sessions (
    -- 'ses_' and 32 random lower-case hex digits: the session's name in URLs and in its macaroons' caveats.
    id                      text        PRIMARY KEY CHECK (id ~ '^ses_[0-9a-f]{32}$'),
    -- Stored states only: 'expired' is not stored but read from last_activity_at (idle past the session's idle timeout),
    -- so that a session expires without anything running at that moment.
    state                   text        NOT NULL CHECK (state IN ('awaiting_payment', 'active', 'paused')),
    -- The deposit invoice (100-10,000 sats, the spec's range); credited once, when the session becomes active.
    deposit_sats            bigint      NOT NULL CHECK (deposit_sats BETWEEN 100 AND 10000),
    deposit_payment_hash    text        NOT NULL UNIQUE,
    deposit_payment_request text        NOT NULL,
    balance_sats            bigint      NOT NULL DEFAULT 0 CHECK (balance_sats >= 0),
    created_at              timestamptz NOT NULL,
    -- Null until the deposit is paid; then the last request admitted, top-up credited or activation. The session expires
    -- at last_activity_at + the idle timeout (24 h), and once past it the column no longer moves.
    last_activity_at        timestamptz,
    CHECK ((state = 'awaiting_payment') = (last_activity_at IS NULL))
);

-- Top-up invoices of sessions: the one outstanding (credited_at null; at most one per session) and those credited.
CREATE TABLE lightning_session_topups (
    payment_hash    text        PRIMARY KEY,
    session_id      text        NOT NULL REFERENCES lightning_sessions (id),
    amount_sats     bigint      NOT NULL CHECK (amount_sats BETWEEN 100 AND 10000),
    payment_request text        NOT NULL,
    created_at      timestamptz NOT NULL,
    -- Set in the transaction that adds amount_sats to the balance: a top-up is credited once.
    credited_at     timestamptz
);
-- The spec's "only one pending topup at a time", kept by the database whatever silo asks.
CREATE UNIQUE INDEX lightning_session_topups_one_pending ON lightning_session_topups (session_id) WHERE credited_at IS NULL;

-- Requests run against a session's balance, each written with its debit in one transaction.
CREATE TABLE lightning_session_requests (
    -- 'req_' and 32 random hex digits, made when the request arrives; the grid jobs' idempotency keys derive from it,
    -- and its uniqueness is what makes a debit impossible to apply twice.
    request_id    text          PRIMARY KEY,
    session_id    text          NOT NULL REFERENCES lightning_sessions (id),
    state         text          NOT NULL CHECK (state IN ('complete', 'rejected', 'failed')),
    -- What the request cost (eval fee + work at the actual tokens, margin applied) and what was taken: less when the
    -- balance could not cover it, since a balance never goes below 0.
    eval_sats     bigint        NOT NULL CHECK (eval_sats >= 0),
    work_sats     bigint        NOT NULL CHECK (work_sats >= 0),
    debited_sats  bigint        NOT NULL CHECK (debited_sats >= 0 AND debited_sats <= eval_sats + work_sats),
    balance_after bigint        NOT NULL CHECK (balance_after >= 0),
    btc_price_usd numeric(20,8) NOT NULL,
    eval_job_id   bigint,
    work_job_id   bigint,
    created_at    timestamptz   NOT NULL
);
CREATE INDEX lightning_session_requests_session ON lightning_session_requests (session_id, created_at);

COMMENT ON TABLE lightning_sessions IS 'Prepaid Lightning agent sessions: deposit, balance and activity (issue #18); expired is derived from last_activity_at.';
COMMENT ON TABLE lightning_session_topups IS 'Top-up invoices of Lightning sessions; at most one outstanding per session, each credited once.';
COMMENT ON TABLE lightning_session_requests IS 'Requests run against Lightning session balances, each recorded with its debit in one transaction.';
