-- 0002: plans and quotas, the usage ledger, worker credits and payouts.

-- Plans set daily limits and the priority a job gets when it does not name one.
CREATE TABLE plans (
    id              text PRIMARY KEY,
    name            text    NOT NULL,
    -- NULL means no limit.
    daily_requests  integer,
    daily_tokens    bigint,
    -- Priority of jobs that omit `priority` (the spec's "subscription's priority boost").
    priority_boost  integer NOT NULL DEFAULT 0,
    -- The Stripe Price a Checkout Session subscribes to; NULL for plans that cannot be bought.
    stripe_price_id text
);
COMMENT ON TABLE plans IS 'Quota plans; free is the default for every account.';
INSERT INTO plans (id, name, daily_requests, daily_tokens, priority_boost) VALUES ('free', 'Free', 100, 50000, 0);

ALTER TABLE accounts
    ADD COLUMN plan text NOT NULL DEFAULT 'free' REFERENCES plans (id),
    -- Set to the UTC day on which the account reached a daily limit; its pending jobs are held until the day changes.
    ADD COLUMN quota_exhausted_on date;

-- Held jobs stay pending but are not dispatchable (their account is over quota today).
ALTER TABLE jobs ADD COLUMN held boolean NOT NULL DEFAULT false;
DROP INDEX jobs_dispatch_model;
DROP INDEX jobs_dispatch_family;
DROP INDEX jobs_dispatch_any;
CREATE INDEX jobs_dispatch_model  ON jobs (model, priority DESC, id) WHERE status = 'pending' AND NOT held AND model_match <> 'any';
CREATE INDEX jobs_dispatch_family ON jobs (family, priority DESC, id) WHERE status = 'pending' AND NOT held AND model_match = 'family';
CREATE INDEX jobs_dispatch_any    ON jobs (priority DESC, id) WHERE status = 'pending' AND NOT held AND model_match = 'any';
CREATE INDEX jobs_held ON jobs (account_id, id) WHERE held;

-- Daily quota counters, split into shards so that an account with many concurrent claims does not queue on one row.
CREATE TABLE quota_usage (
    account_id bigint   NOT NULL REFERENCES accounts (id),
    day        date     NOT NULL,
    -- Which of the account's counter rows for the day (the claiming worker's id modulo the shard count).
    shard      smallint NOT NULL,
    requests   integer  NOT NULL DEFAULT 0,
    tokens     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, shard)
);
COMMENT ON TABLE quota_usage IS 'Requests (counted at claim) and tokens (counted at result) per account per UTC day, sharded.';

-- One row per completed job: what /usage reports.
CREATE TABLE usage_ledger (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint      NOT NULL REFERENCES accounts (id),
    job_id        bigint      NOT NULL UNIQUE REFERENCES jobs (id),
    tag           text,
    model         text,
    input_tokens  integer     NOT NULL,
    output_tokens integer     NOT NULL,
    created_at    timestamptz NOT NULL
);
COMMENT ON TABLE usage_ledger IS 'Append-only usage: a row per completed job.';
CREATE INDEX usage_ledger_account_time ON usage_ledger (account_id, created_at);

-- Payout batches a worker requested; the operator marks them paid.
CREATE TABLE payout_batches (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id      bigint        NOT NULL REFERENCES workers (id),
    amount_credits numeric(18, 4) NOT NULL,
    amount_usd     numeric(18, 4) NOT NULL,
    status         text          NOT NULL CHECK (status IN ('pending', 'paid')),
    created_at     timestamptz   NOT NULL,
    paid_at        timestamptz
);
CREATE INDEX payout_batches_pending ON payout_batches (id) WHERE status = 'pending';

-- One credit entry per result a worker delivered.
CREATE TABLE worker_credits (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id       bigint         NOT NULL REFERENCES workers (id),
    job_id          bigint         NOT NULL UNIQUE REFERENCES jobs (id),
    -- output_tokens / 1000 × rate, rounded to 4 decimal places.
    credits         numeric(18, 4) NOT NULL,
    output_tokens   integer,
    duration_ms     integer,
    -- The batch that paid this entry; NULL while unpaid.
    payout_batch_id bigint         REFERENCES payout_batches (id),
    created_at      timestamptz    NOT NULL
);
COMMENT ON TABLE worker_credits IS 'Credits earned per completed job; paid out in batches.';
CREATE INDEX worker_credits_worker ON worker_credits (worker_id, id DESC);
CREATE INDEX worker_credits_unpaid ON worker_credits (worker_id) WHERE payout_batch_id IS NULL;

-- The plan now carries the default priority.
ALTER TABLE accounts DROP COLUMN default_priority;
