-- 0006: usage and credits become columns of the completed job row, so that a result is one row update.
-- Every fact of a usage_ledger row and of a worker_credits entry was already on the job (account, tag, model, tokens,
-- duration, worker, completion time) except the credits amount and the payout batch; the two extra INSERTs per result
-- (with their seven indexes) were most of a completion's cost in CPU and WAL.

ALTER TABLE jobs
    -- Credits the worker earned with this result: output_tokens / 1000 × rate, rounded to 4 decimal places. Set by the
    -- statement that completes the job; 0 is an entry too (it is listed in the worker's history).
    ADD COLUMN credits         numeric(18, 4),
    -- The batch that paid this job's credits; NULL while unpaid.
    ADD COLUMN payout_batch_id bigint REFERENCES payout_batches (id);

-- Both tables were written by the statement that completed the job, so each row belongs to a completed job with the same
-- facts. Refuse to drop them if that ever did not hold.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM usage_ledger l LEFT JOIN jobs j ON j.id = l.job_id
        WHERE j.status IS DISTINCT FROM 'completed' OR j.account_id IS DISTINCT FROM l.account_id OR j.tag IS DISTINCT FROM l.tag
           OR COALESCE(j.model_used, j.model) IS DISTINCT FROM l.model OR COALESCE(j.input_tokens, 0) IS DISTINCT FROM l.input_tokens
           OR j.output_tokens IS DISTINCT FROM l.output_tokens OR j.completed_at IS DISTINCT FROM l.created_at)
    THEN
        RAISE EXCEPTION 'usage_ledger has rows that do not match their completed job';
    END IF;
    IF EXISTS (
        SELECT 1 FROM worker_credits c LEFT JOIN jobs j ON j.id = c.job_id
        WHERE j.status IS DISTINCT FROM 'completed' OR j.worker_id IS DISTINCT FROM c.worker_id OR j.completed_at IS DISTINCT FROM c.created_at
           OR j.output_tokens IS DISTINCT FROM c.output_tokens OR j.duration_ms IS DISTINCT FROM c.duration_ms)
    THEN
        RAISE EXCEPTION 'worker_credits has entries that do not match their completed job';
    END IF;
    IF EXISTS (SELECT 1 FROM jobs j WHERE j.status = 'completed' AND NOT EXISTS (SELECT 1 FROM worker_credits c WHERE c.job_id = j.id))
    THEN
        RAISE EXCEPTION 'completed jobs without a worker_credits entry';
    END IF;
END $$;

UPDATE jobs j SET credits = c.credits, payout_batch_id = c.payout_batch_id
FROM worker_credits c WHERE c.job_id = j.id;

-- A completed job always carries its credits (the statement that completes it sets them).
ALTER TABLE jobs ADD CONSTRAINT jobs_completed_credits CHECK (status <> 'completed' OR credits IS NOT NULL);

DROP TABLE usage_ledger;
DROP TABLE worker_credits;

-- /usage, the dashboard's tokens per day and usage per tag: an account's completed jobs since a time.
CREATE INDEX jobs_usage ON jobs (account_id, completed_at) WHERE status = 'completed';
-- A worker's credit history, newest first (GET /worker/credits, the dashboard's worker page).
CREATE INDEX jobs_credits ON jobs (worker_id, completed_at DESC, id DESC) WHERE status = 'completed';
-- The unpaid balance and the entries a payout claims. Zero-credit entries stay in it until a payout marks them paid,
-- as before (the history shows them paid out from then on).
CREATE INDEX jobs_unpaid ON jobs (worker_id) WHERE status = 'completed' AND payout_batch_id IS NULL;
