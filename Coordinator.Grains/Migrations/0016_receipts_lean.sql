-- 0016: receipts cost less to issue and to seal (issue #17's figure: the lifecycle with receipts at most 10% below the
-- one without). A receipt is now written once and never rewritten:
--  * no foreign keys: a receipt is inserted only by the completion statement, from the job row that statement updates
--    (its account, its worker) and the key that signed it; the checks would lock the account's, the worker's and the
--    active signing key's rows (FOR KEY SHARE) in every completion, the last one shared by every completion in the grid;
--  * no index on provider: receipts are read by account, by worker and by job, never by the provider string alone;
--  * sealing no longer sets receipts.block_height (an UPDATE that rewrote each receipt and every one of its index
--    entries): a receipt waits in unsealed_receipts, written with it, and the block that seals it lists its seq.

ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_job_id_fkey;
ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_account_id_fkey;
ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_worker_id_fkey;
ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_key_id_fkey;
DROP INDEX receipts_provider;

-- Receipts issued and not yet sealed, with the hash the block's Merkle tree takes; the sealer deletes what it seals.
CREATE TABLE unsealed_receipts (
    seq  bigint PRIMARY KEY,
    hash bytea  NOT NULL
);
INSERT INTO unsealed_receipts (seq, hash) SELECT seq, hash FROM receipts WHERE block_height IS NULL;

-- The receipts each block sealed, by seq, in order; first_seq and last_seq bound them so that a receipt's block is
-- found along ledger_blocks_last_seq. Not part of the block's hash: the Merkle root over the listed receipts' hashes is.
ALTER TABLE ledger_blocks ADD COLUMN seqs bigint[];
UPDATE ledger_blocks b SET seqs = (SELECT array_agg(r.seq ORDER BY r.seq) FROM receipts r WHERE r.block_height = b.height);
ALTER TABLE ledger_blocks ALTER COLUMN seqs SET NOT NULL;
ALTER TABLE ledger_blocks ADD COLUMN first_seq bigint GENERATED ALWAYS AS (seqs[1]) STORED;
ALTER TABLE ledger_blocks ADD COLUMN last_seq bigint GENERATED ALWAYS AS (seqs[array_upper(seqs, 1)]) STORED;
ALTER TABLE ledger_blocks ADD CONSTRAINT ledger_blocks_seqs_count CHECK (cardinality(seqs) = receipt_count);
CREATE INDEX ledger_blocks_last_seq ON ledger_blocks (last_seq);

DROP INDEX receipts_unsealed;
DROP INDEX receipts_block;
ALTER TABLE receipts DROP COLUMN block_height;
