-- 0007: one in-flight index, not two.
-- The timeout sweep cannot search jobs_in_flight_claimed_at by its key: its deadline is claimed_at plus each job's own
-- timeout_seconds. So it read the whole partial index, as it can read jobs_in_flight, which holds the same rows (the jobs
-- out with a worker; few at any time). The second index only cost every claim, start-on-claim and requeue one more index
-- entry: about 5% of the WAL per job in the engine drain benchmark (1,269 → 1,202 bytes).
DROP INDEX jobs_in_flight_claimed_at;
