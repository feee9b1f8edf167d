-- 0004: webhook outbox, the key copies webhooks are signed with, generation parameters, shared Data Protection keys.

-- The submitting key, encrypted with ASP.NET Data Protection: webhooks are signed with the raw key (the spec's
-- "HMAC-SHA256 of the JSON body using your API key as the secret"), and this copy serves that purpose only.
ALTER TABLE api_keys ADD COLUMN key_protected text;

ALTER TABLE jobs
    -- The key that submitted the job: its protected copy signs the job's webhooks.
    ADD COLUMN submitted_by_key_id bigint REFERENCES api_keys (id),
    -- Generation parameters (max_tokens, temperature, top_p, stop, seed), passed to the worker as given.
    ADD COLUMN params jsonb;

-- The outbox: one row per webhook to send, written in the same transaction that ends the job.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           bigint      NOT NULL REFERENCES jobs (id),
    account_id       bigint      NOT NULL REFERENCES accounts (id),
    url              text        NOT NULL,
    -- The job status that triggered it: completed, failed or cancelled.
    event            text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz
);
COMMENT ON TABLE webhook_deliveries IS 'Webhook outbox: retried with backoff for a day by any node (SKIP LOCKED).';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (account_id, job_id, id DESC);

-- A job that reaches a terminal state with a webhook_url gets its delivery in the same transaction, whichever
-- statement ended it (a result, a failure, a cancellation, a timeout or the offline sweep).
CREATE FUNCTION jobs_enqueue_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (job_id, account_id, url, event, next_attempt_at, created_at)
    VALUES (NEW.id, NEW.account_id, NEW.webhook_url, NEW.status, COALESCE(NEW.completed_at, now()), COALESCE(NEW.completed_at, now()));
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_webhook AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.webhook_url IS NOT NULL AND NEW.status IN ('completed', 'failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION jobs_enqueue_webhook();

-- ASP.NET Data Protection key ring, shared by every node (a key protected on one node must unprotect on another).
CREATE TABLE data_protection_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    friendly_name text NOT NULL,
    xml           text NOT NULL
);
