-- 0025: a claim made for a worker's poll names the poll (issue #19, the rolling-restart stall). When the answer to a
-- poll is lost (the silo of the worker's grain stopped or died with the answer in flight), the front end that took the
-- poll gives back at once the claims made for it, instead of leaving them to the claim lease. Nullable and without a
-- default, so adding it rewrites no row.
ALTER TABLE jobs ADD COLUMN poll_id uuid;

COMMENT ON COLUMN jobs.poll_id IS
    'The worker poll (GET /worker/jobs/next) the current claim was made for; null for a claim by id (AITBC). Every claim '
    'sets it; it means nothing once the job is no longer claimed.';
