-- 0013: the AITBC front door (issue #17): miners, signed receipts, the keys that sign them, and the ledger of blocks.

-- An AITBC miner is a worker. Its miner_id is the name AITBC clients and receipts know it by: unique in the grid, so
-- that a receipt's provider names one worker. Workers that never registered through AITBC have none and appear as
-- `worker-<id>`, a form a miner_id may not take.
ALTER TABLE workers ADD COLUMN miner_id text UNIQUE CHECK (miner_id !~ '^worker-[0-9]+$');

-- The coordinator's Ed25519 receipt signing keys. The private key is kept only protected with the grid's shared Data
-- Protection key ring; the public key is published. Rotation retires the active key and adds a new one; retired keys
-- stay, so that every receipt they signed can still be verified.
CREATE TABLE receipt_signing_keys (
    -- The receipts' signature.key_id: the base64url public key, without padding.
    key_id      text        PRIMARY KEY,
    public_key  bytea       NOT NULL,
    -- The 32-byte private key, protected (IDataProtector) as base64 text; never in clear.
    private_key text        NOT NULL,
    created_at  timestamptz NOT NULL,
    -- Null for the active key; at most one is active.
    retired_at  timestamptz
);
CREATE UNIQUE INDEX receipt_signing_keys_one_active ON receipt_signing_keys ((true)) WHERE retired_at IS NULL;

-- A signed receipt for each completed job, written in the same transaction as the completion.
CREATE TABLE receipts (
    -- Issue order; the ledger seals unsealed receipts in this order.
    seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receipt_id   text        NOT NULL UNIQUE,
    job_id       bigint      NOT NULL REFERENCES jobs (id),
    -- The client (the job's account) and the provider (the worker that ran it), as ids for scoping and as the
    -- receipt's strings for filtering.
    account_id   bigint      NOT NULL REFERENCES accounts (id),
    worker_id    bigint      NOT NULL REFERENCES workers (id),
    client       text        NOT NULL,
    provider     text        NOT NULL,
    price        numeric     NOT NULL,
    key_id       text        NOT NULL REFERENCES receipt_signing_keys (key_id),
    -- The signed receipt's JSON text, exactly as it is served (never re-serialised).
    body         text        NOT NULL,
    -- SHA-256 of body's UTF-8 bytes: the receipt's leaf in its block's Merkle tree.
    hash         bytea       NOT NULL,
    issued_at    timestamptz NOT NULL,
    -- The block that sealed it; null until sealed.
    block_height bigint
);
CREATE INDEX receipts_job ON receipts (job_id, seq);
CREATE INDEX receipts_account ON receipts (account_id, seq DESC);
CREATE INDEX receipts_worker ON receipts (worker_id, seq DESC);
CREATE INDEX receipts_provider ON receipts (provider, seq DESC);
CREATE INDEX receipts_unsealed ON receipts (seq) WHERE block_height IS NULL;
CREATE INDEX receipts_block ON receipts (block_height, seq) WHERE block_height IS NOT NULL;

-- The ledger: blocks of receipts, each chained to the one before by its hash. Sealed by one grain in the cluster.
CREATE TABLE ledger_blocks (
    height        bigint      PRIMARY KEY,
    sealed_at     timestamptz NOT NULL,
    -- 32 zero bytes for the first block.
    prev_hash     bytea       NOT NULL,
    merkle_root   bytea       NOT NULL,
    hash          bytea       NOT NULL UNIQUE,
    receipt_count integer     NOT NULL
);
