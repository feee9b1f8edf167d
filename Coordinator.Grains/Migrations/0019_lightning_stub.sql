-- 0019: the stub Lightning node (issue #18). With no LNbits configured the agent API takes "payments" that only the
-- development route POST /api/dev/stub/pay/{paymentHash} completes. Its invoices live here, not in a silo's memory, so
-- that every silo sees an invoice made on another and a payment marked on any.

-- Invoices the stub made: lnbcrt<N>u1stub_… requests that no wallet can pay.
CREATE TABLE lightning_stub_invoices (
    -- 32 random bytes in lower-case hex, as a real invoice's payment hash looks.
    payment_hash    text        PRIMARY KEY CHECK (payment_hash ~ '^[0-9a-f]{64}$'),
    payment_request text        NOT NULL UNIQUE,
    amount_sats     bigint      NOT NULL CHECK (amount_sats > 0),
    memo            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    -- Set once, by the first mark; null while unpaid.
    paid_at         timestamptz
);

-- Payments the stub "sent" (refunds in stub mode): recorded, never sent anywhere.
CREATE TABLE lightning_stub_payments (
    -- Random, like the invoices': the stub decodes nothing, so it cannot know the paid invoice's own hash.
    payment_hash text        PRIMARY KEY CHECK (payment_hash ~ '^[0-9a-f]{64}$'),
    bolt11       text        NOT NULL,
    -- What the caller said the invoice is for (it decoded and checked it).
    amount_sats  bigint      NOT NULL CHECK (amount_sats > 0),
    created_at   timestamptz NOT NULL
);

COMMENT ON TABLE lightning_stub_invoices IS 'Invoices of the stub Lightning node (no LNbits configured); paid only through the development route.';
COMMENT ON TABLE lightning_stub_payments IS 'Outgoing payments of the stub Lightning node: recorded, never sent.';
