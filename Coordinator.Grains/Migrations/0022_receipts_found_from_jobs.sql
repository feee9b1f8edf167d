-- 0022: a job names its receipt (issue #17's figure, continued). The completion statement sets jobs.receipt_seq in the
-- update it makes anyway, and receipts are found from their jobs, along the jobs' indexes: receipts needs no index of
-- its own but its primary key and receipt_id, so a receipt costs two index entries instead of five.

-- The receipt the job's completion issued: a job completes once, so it has at most one.
ALTER TABLE jobs ADD COLUMN receipt_seq bigint;
UPDATE jobs j SET receipt_seq = r.seq
FROM (SELECT DISTINCT ON (job_id) job_id, seq FROM receipts ORDER BY job_id, seq DESC) r
WHERE j.id = r.job_id;

-- An account's receipts are its completed jobs' (jobs_usage), a worker's are its completed jobs' (jobs_credits), and a
-- job's is jobs.receipt_seq.
DROP INDEX receipts_job;
DROP INDEX receipts_account;
DROP INDEX receipts_worker;
