-- 0011: streams. A job whose output someone follows (GET /jobs/{id}/stream, an OpenAI-compatible request, or a worker
-- streaming chunks of it) is marked watched, and every statement that ends, restarts or cancels a job returns the mark,
-- so that whoever made the change tells the job's grain, which holds the stream. Unwatched jobs cost nothing more.

ALTER TABLE jobs ADD COLUMN watched boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN jobs.watched IS 'Someone follows this job''s stream: a change to its state is told to its grain (no index covers it, so setting it is a HOT update).';
