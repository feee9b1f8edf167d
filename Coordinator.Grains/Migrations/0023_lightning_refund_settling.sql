-- 0023: refunds that a Lightning node without an answer, or a silo that dies while paying, cannot pay twice or lose
-- (issue #18), and refunds of paid work that failed.
-- A claim stores the hash of the invoice it pays before it pays (refund_payment_hash) and when it won (refund_claimed_at).
-- A refund left paying is settled by asking the node what became of that payment: settled is paid, failed is owed again,
-- unknown is owed again only once the claim is older than the settle window (so a payment still on its way is not paid
-- a second time to another invoice).
ALTER TABLE lightning_agent_jobs ADD COLUMN refund_claimed_at timestamptz;

COMMENT ON COLUMN lightning_agent_jobs.refund_state IS
    'Complete jobs, and failed jobs whose paid work failed (the whole work invoice is owed back). not_applicable: none owed; '
    'pending: owed, unclaimed; paying: a claim is paying refund_payment_hash (the API shows pending); paid: sent.';
COMMENT ON COLUMN lightning_agent_jobs.refund_payment_hash IS
    'The payment hash of the invoice the refund is paid to: set when a claim wins (paying), kept once paid.';
COMMENT ON COLUMN lightning_agent_jobs.refund_claimed_at IS 'When the claim that is paying the refund won it.';
COMMENT ON COLUMN lightning_stub_payments.payment_hash IS
    'The paid invoice''s own payment hash, which the caller decoded: an invoice is paid once, as on a real network.';
