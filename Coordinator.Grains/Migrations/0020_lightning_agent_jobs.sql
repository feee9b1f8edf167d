-- 0020: the Lightning agent's pay-per-job jobs (issue #18, POST /api/jobs) and the grid account its grid jobs run under.
-- A Lightning job is paid for without an account: its eval and its work are grid jobs of the grid's own agent account,
-- which this migration creates once (migrations run under an advisory lock, so two silos starting together make one).

-- The agent's plan: no daily limits, so a busy day never holds a paid job behind a quota.
INSERT INTO plans (id, name, daily_requests, daily_tokens, priority_boost) VALUES ('lightning-agent', 'Lightning agent', NULL, NULL, 0);

CREATE TABLE lightning_agent (
    -- Always true: the table holds one row, the agent's single account.
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    account_id bigint  NOT NULL UNIQUE REFERENCES accounts (id)
);
COMMENT ON TABLE lightning_agent IS 'The grid account that the Lightning agent''s grid jobs (evals and work) run under; one row.';

WITH account AS (
    INSERT INTO accounts (name, created_at, plan) VALUES ('lightning-agent', now(), 'lightning-agent') RETURNING id
)
INSERT INTO lightning_agent (account_id) SELECT id FROM account;

CREATE TABLE lightning_agent_jobs (
    -- Unguessable: whoever knows the id can read the result and claim the refund.
    id                   text        PRIMARY KEY,
    request              text        NOT NULL,
    state                text        NOT NULL CHECK (state IN
                             ('awaiting_eval_payment', 'evaluating', 'rejected', 'awaiting_work_payment', 'executing', 'complete', 'failed')),
    created_at           timestamptz NOT NULL,
    -- Set when the job reaches complete.
    completed_at         timestamptz,
    eval_payment_hash    text        NOT NULL,
    eval_payment_request text        NOT NULL,
    eval_amount_sats     bigint      NOT NULL CHECK (eval_amount_sats > 0),
    eval_grid_job_id     bigint      REFERENCES jobs (id),
    -- The evaluator's reason (shown for rejected jobs) and its token estimate (prices the work invoice).
    reason               text,
    estimated_tokens     bigint,
    work_payment_hash    text,
    work_payment_request text,
    work_amount_sats     bigint      CHECK (work_amount_sats > 0),
    -- The work invoice's price: the estimate's charge in USD (token cost + infrastructure, with the margin), the margin in
    -- percent, and the BTC/USD price it was converted at, locked for the refund.
    estimated_cost_usd   numeric,
    margin_pct           numeric,
    btc_price_usd        numeric     CHECK (btc_price_usd > 0),
    work_grid_job_id     bigint      REFERENCES jobs (id),
    result               text,
    actual_input_tokens  bigint,
    actual_output_tokens bigint,
    -- Raw token cost of the work, and what it comes to with infrastructure and margin.
    actual_cost_usd      numeric,
    actual_charge_usd    numeric,
    actual_amount_sats   bigint,
    refund_amount_sats   bigint      CHECK (refund_amount_sats >= 0),
    -- not_applicable: none owed; pending: owed, unclaimed; paying: a claim is paying it now (the API shows pending);
    -- paid: sent to refund_payment_hash. Only the claim that moves pending to paying pays.
    refund_state         text        CHECK (refund_state IN ('not_applicable', 'pending', 'paying', 'paid')),
    refund_payment_hash  text,
    refund_paid_at       timestamptz,
    error_message        text
);
COMMENT ON TABLE lightning_agent_jobs IS 'Pay-per-job jobs of the Lightning agent API (/api/jobs): two invoices, two grid jobs, a cost ledger and a refund.';
