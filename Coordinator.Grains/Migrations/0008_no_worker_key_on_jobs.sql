-- 0008: jobs.worker_id keeps no foreign key to workers.
-- Every claim, lease and hand-off writes worker_id, and the key made PostgreSQL look up and share-lock the worker's row
-- for each job it touched: 2.8–3.5 µs of the claim's 14–15 µs per job (./bench/transitions.sh prices a copy of jobs
-- with the key). The key guarded against nothing the code does: worker_id comes only from a worker
-- row the same request authenticated (or, in the engine, a registered worker), and workers are never deleted (a worker
-- that re-registers under its name keeps its row). Dropping it is also the first step of the batch-lease plan
-- (docs/ARCHITECTURE.md, "Planned: batch leases").
ALTER TABLE jobs DROP CONSTRAINT jobs_worker_id_fkey;
