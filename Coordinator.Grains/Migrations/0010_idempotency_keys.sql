-- 0010: Idempotency-Key on POST /jobs. A client that lost the answer to a submission (a node died mid-reply) retries
-- with the same key, on any node, and gets the first job instead of a second one. The primary key is what makes that
-- hold when the retries race on two nodes: the statement that inserts a job inserts its key first, ON CONFLICT.

CREATE TABLE idempotency_keys (
    account_id      bigint      NOT NULL REFERENCES accounts (id),
    -- The client's Idempotency-Key header: 1 to 255 printable ASCII characters, chosen by the client (a UUID, say).
    idempotency_key text        NOT NULL,
    -- SHA-256 of the canonical request body (object members sorted by name, no insignificant whitespace): the same key
    -- with another request is refused rather than answered with a job that is not what was asked for.
    request_hash    bytea       NOT NULL,
    -- The job the key created. Its id is drawn from the jobs sequence before the job row exists, in the same statement.
    job_id          bigint      NOT NULL REFERENCES jobs (id),
    -- When the key was first used (or last reused after it expired): for 24 hours from then it answers job_id, after
    -- that it creates a new job and the row is overwritten.
    created_at      timestamptz NOT NULL,
    -- Keys are per account: another account's identical key is unrelated.
    PRIMARY KEY (account_id, idempotency_key)
);
COMMENT ON TABLE idempotency_keys IS 'Idempotency-Key of POST /jobs: which job a key made, for 24 hours, per account.';
