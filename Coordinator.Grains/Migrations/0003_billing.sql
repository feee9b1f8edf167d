-- 0003: Stripe billing: customers and subscriptions on accounts, processed webhook events, priority boosts on jobs.

ALTER TABLE accounts
    ADD COLUMN stripe_customer_id       text,
    ADD COLUMN stripe_subscription_id   text,
    -- The subscription's default payment method, charged off-session for priority boosts.
    ADD COLUMN stripe_payment_method_id text;
CREATE UNIQUE INDEX accounts_stripe_customer ON accounts (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;

-- Webhook events already applied: the same event id twice changes nothing.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text        NOT NULL,
    received_at timestamptz NOT NULL
);
COMMENT ON TABLE stripe_events IS 'Stripe webhook event ids already processed (idempotency).';

-- A one-time paid priority boost requested with priority_boost: true.
ALTER TABLE jobs
    ADD COLUMN boost_status         text CHECK (boost_status IN ('charged', 'failed')),
    -- Why the charge failed, shown to the client; the job then keeps its unboosted priority.
    ADD COLUMN boost_error          text,
    ADD COLUMN boost_payment_intent text;
