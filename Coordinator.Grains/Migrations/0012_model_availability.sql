-- 0012: whether an online worker would take a job (issue #16: submissions warn, /v1 refuses at once, when none would).
-- The questions are the dispatch rule asked of the registered workers: a worker declaring the job's model
-- (worker_models_model answers it), for a family job one declaring the family with serves_family, for a catch-all job an
-- online catch-all worker, and for the answer "never known" the registry by family. Without these the last three read
-- every row; each index holds only the rows that can answer.
CREATE INDEX worker_models_family ON worker_models (family) WHERE serves_family;
CREATE INDEX workers_catch_all_online ON workers (last_seen_at) WHERE online AND catch_all;
CREATE INDEX models_family ON models (family);
