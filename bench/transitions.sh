#!/usr/bin/env bash
# bench/transitions.sh — what one job transition costs PostgreSQL, on the real jobs table and on a table where the
# same transitions are HOT updates. It backs the drain analysis in BENCHMARKS.md.
#
#   ./bench/transitions.sh            (about a minute)
#
# On a fresh private cluster (.data/transitions-pg, port $COORDINATOR_TRANSITIONS_PG_PORT, default 64352) it applies
# Coordinator.Grid/Migrations, fills 100,000 pending jobs, and runs with pgbench (one client, prepared statements):
#   - claim+start then result of 512 consecutive jobs, as plain UPDATEs, on `jobs` itself (its indexes and trigger), on
#     a copy of `jobs` with the worker foreign key that migration 0008 dropped, and on a copy with only the primary key and
#     (account_id, id) at fillfactor 40, where both transitions are heap-only (HOT) updates;
#   - the engine's own lease and result statements (Coordinator.Grid/Jobs/JobStore.Batched.cs), 512 jobs each: a copy
#     with the parameters written in and without the quota check's "reached" part, so a lower bound on their cost;
#   - a sketch of the leanest schema that keeps what a job row carries today: `jobs` with only keys that never change
#     (so both transitions are HOT), and the state-dependent indexes moved to side tables — a queue of pending jobs
#     (deleted from on claim), the leases out (inserted on claim, deleted on result) and the credit entries (inserted on
#     result). Claim locks, deletes and leases; the result completes, ends the lease and writes the credit entry;
#   - a batch-lease sketch on the same tables: a claim deletes from the queue and writes one lease row for all the jobs
#     it takes, leaving their rows alone; a result updates each job row once (HOT) and writes one credit entry and one
#     usage entry (per account, tag and model) for the whole report, instead of a credit entry per job.
# It prints microseconds per job per transition and the share of HOT updates; then, for the engine's statements and the
# two sketches, the drain rate the database reaches on its own with 2, 4 and 16 concurrent pgbench clients.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. scripts/common.sh
. scripts/pg.sh

pg_ensure_installed
export PGOPTIONS="-c client_min_messages=warning"
DIR="$ROOT/.data/transitions-pg"
port=${COORDINATOR_TRANSITIONS_PG_PORT:-64352}
pg_destroy_private "$DIR"
trap 'pg_stop_private "$DIR" || true' EXIT
pg_start_private "$DIR" "$port"

work=$(mktemp -d)
chmod 755 "$work"
psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d "$PG_DATABASE")
pgbench=("$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -n -M prepared -r)

cat Coordinator.Grid/Migrations/*.sql | "${psql[@]}" >/dev/null
"${psql[@]}" <<'SQL'
INSERT INTO plans (id, name, daily_requests, daily_tokens) VALUES ('bench-unlimited', 'bench', NULL, NULL);
INSERT INTO accounts (name, plan, created_at) VALUES ('bench', 'bench-unlimited', now());
INSERT INTO workers (account_id, name, last_seen_at, created_at) SELECT 1, 'w' || g, now(), now() FROM generate_series(1, 16) g;
CREATE TABLE jobs_worker_fk (LIKE jobs INCLUDING ALL);
ALTER TABLE jobs_worker_fk ADD FOREIGN KEY (worker_id) REFERENCES workers (id);
CREATE TABLE jobs_hot (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (fillfactor = 40);
ALTER TABLE jobs_hot ADD PRIMARY KEY (id);
CREATE INDEX ON jobs_hot (account_id, id DESC);
-- The side-table sketch: jobs_side keeps only keys that never change; what depends on the state lives elsewhere.
CREATE TABLE jobs_side (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (fillfactor = 50);
ALTER TABLE jobs_side ADD PRIMARY KEY (id);
ALTER TABLE jobs_side ADD FOREIGN KEY (account_id) REFERENCES accounts (id);
CREATE INDEX ON jobs_side (account_id, id DESC);
CREATE INDEX ON jobs_side (account_id, id) WHERE held;
CREATE TABLE side_queue (id bigint PRIMARY KEY, model text, family text, model_match text NOT NULL, priority integer NOT NULL);
CREATE INDEX ON side_queue (model, priority DESC, id) WHERE model_match <> 'any';
CREATE INDEX ON side_queue (family, priority DESC, id) WHERE model_match = 'family';
CREATE INDEX ON side_queue (priority DESC, id) WHERE model_match = 'any';
CREATE TABLE side_leases (job_id bigint PRIMARY KEY, worker_id bigint NOT NULL, claimed_at timestamptz NOT NULL);
CREATE INDEX ON side_leases (worker_id);
CREATE TABLE side_credits (job_id bigint PRIMARY KEY, account_id bigint NOT NULL, worker_id bigint NOT NULL, completed_at timestamptz NOT NULL,
                           credits numeric(18, 4) NOT NULL, payout_batch_id bigint);
CREATE INDEX ON side_credits (worker_id, completed_at DESC, job_id DESC);
CREATE INDEX ON side_credits (worker_id) WHERE payout_batch_id IS NULL;
CREATE INDEX ON side_credits (account_id, completed_at);
-- The batch-lease sketch: the same jobs_side and side_queue, but a claim writes one lease row for all the jobs it takes
-- and leaves their job rows alone; the result writes each job row once (HOT), one credit entry and one usage entry per
-- report.
CREATE TABLE batch_leases (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, worker_id bigint NOT NULL,
                           claimed_at timestamptz NOT NULL, job_ids bigint[] NOT NULL);
CREATE TABLE batch_credits (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, worker_id bigint NOT NULL,
                            completed_at timestamptz NOT NULL, jobs integer NOT NULL, credits numeric(18, 4) NOT NULL, payout_batch_id bigint);
CREATE INDEX ON batch_credits (worker_id, completed_at DESC);
CREATE INDEX ON batch_credits (worker_id) WHERE payout_batch_id IS NULL;
CREATE TABLE batch_usage (account_id bigint NOT NULL, completed_at timestamptz NOT NULL, tag text, model text, jobs integer NOT NULL,
                          input_tokens bigint NOT NULL, output_tokens bigint NOT NULL);
CREATE INDEX ON batch_usage (account_id, completed_at);
-- The counted-lease sketch: batch leases that keep the job row current (the claim writes status, worker and lease on
-- it, HOT), so every read of a job stays as it is; a lease counts its jobs still out and goes when none is left.
ALTER TABLE jobs_side ADD COLUMN lease_id bigint;
CREATE TABLE counted_leases (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, worker_id bigint NOT NULL,
                             claimed_at timestamptz NOT NULL, deadline timestamptz NOT NULL, remaining integer NOT NULL);
CREATE INDEX ON counted_leases (worker_id);
CREATE INDEX ON counted_leases (deadline);
CREATE FUNCTION fill(target regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('TRUNCATE %s CASCADE', target);
    EXECUTE format($f$INSERT INTO %s (id, account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
        OVERRIDING SYSTEM VALUE SELECT g, 1, 'pending', 'bench:1', 'bench', 'exact', 'x', 0, 600, now() FROM generate_series(1, 100000) g$f$, target);
    IF target = 'jobs_side'::regclass THEN
        TRUNCATE side_queue, side_leases, side_credits, batch_leases, batch_credits, batch_usage, counted_leases;
        INSERT INTO side_queue SELECT g, 'bench:1', 'bench', 'exact', 0 FROM generate_series(1, 100000) g;
        ANALYZE side_queue;
    END IF;
END $$;
SQL

# Plain transitions: claim+start, then the result, of 512 consecutive jobs (a random block each time).
for table in jobs jobs_worker_fk jobs_hot; do
  cat > "$work/$table.sql" <<SQL
\set w random(1, 16)
\set lo random(0, 194) * 512 + 1
UPDATE $table SET status = 'running', worker_id = :w, claimed_at = now(), started_at = now(), attempts = attempts + 1 WHERE id BETWEEN :lo AND :lo + 511;
UPDATE $table SET status = 'completed', output = 'ok', input_tokens = 1, output_tokens = 1, duration_ms = 1, model_used = 'bench:1', completed_at = now(), credits = 0 WHERE id BETWEEN :lo AND :lo + 511;
SQL
done

# The engine's statements, with the parameters written in (512 jobs for one worker).
cat > "$work/engine.sql" <<'SQL'
\set w random(1, 16)
WITH candidates AS (
    SELECT c.id, c.priority FROM unnest('{bench:1}'::text[]) AS m(name)
    CROSS JOIN LATERAL (SELECT id, priority FROM jobs WHERE status = 'pending' AND NOT held AND model_match <> 'any' AND model = m.name
                        ORDER BY priority DESC, id LIMIT 512 FOR UPDATE SKIP LOCKED) c
), ranked AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, id) AS rank FROM (SELECT DISTINCT id, priority FROM candidates) d
), paired AS (
    SELECT r.id, w.worker_id, w.shard, w.ord
    FROM ranked r JOIN unnest(array_fill(:w::bigint, ARRAY[512]), array_fill(0::smallint, ARRAY[512])) WITH ORDINALITY AS w(worker_id, shard, ord) ON w.ord = r.rank
), claimed AS (
    UPDATE jobs j SET status = 'running', worker_id = p.worker_id, claimed_at = now(), started_at = now(), attempts = j.attempts + 1
    FROM paired p WHERE j.id = p.id
    RETURNING p.ord, p.shard, j.id, j.model, j.family, j.model_match, j.prompt, j.priority, j.timeout_seconds, j.attempts, j.params::text AS params, j.account_id
), counted AS (
    INSERT INTO quota_usage (account_id, day, shard, requests)
    SELECT account_id, current_date, shard, count(*) FROM claimed GROUP BY account_id, shard ORDER BY account_id, shard
    ON CONFLICT (account_id, day, shard) DO UPDATE SET requests = quota_usage.requests + EXCLUDED.requests
    RETURNING account_id, shard, requests
)
SELECT min(c.id) AS lo, max(c.id) AS hi, bool_or(EXISTS (SELECT 1 FROM job_blobs jb WHERE jb.job_id = c.id)) AS has_blobs,
       (SELECT count(*) FROM counted) AS counters
FROM claimed c \gset
WITH done AS (
    UPDATE jobs j SET status = 'completed', output = u.output, input_tokens = u.input_tokens, output_tokens = u.output_tokens,
        duration_ms = u.duration_ms, model_used = u.model_used, completed_at = now(), credits = round(u.output_tokens / 1000.0, 4)
    FROM (SELECT g AS job_id, :w::bigint AS worker_id, 0::smallint AS shard, 'ok' AS output, 1 AS input_tokens, 1 AS output_tokens,
                 1 AS duration_ms, 'bench:1' AS model_used, 'running' AS expected FROM generate_series(:lo::bigint, :hi::bigint) g) u
    WHERE j.id = u.job_id AND j.worker_id = u.worker_id AND j.status = u.expected
    RETURNING u.shard, j.account_id, u.input_tokens, u.output_tokens
)
INSERT INTO quota_usage (account_id, day, shard, tokens)
SELECT account_id, current_date, shard, sum(COALESCE(input_tokens, 0) + output_tokens) FROM done GROUP BY account_id, shard ORDER BY account_id, shard
ON CONFLICT (account_id, day, shard) DO UPDATE SET tokens = quota_usage.tokens + EXCLUDED.tokens;
SQL

# Both sketches claim alike: the best 512 pending jobs for one worker leave the queue.
dequeue=$(cat <<'SQL'
\set w random(1, 16)
WITH picked AS (
    SELECT id FROM side_queue WHERE model_match <> 'any' AND model = 'bench:1' ORDER BY priority DESC, id LIMIT 512 FOR UPDATE SKIP LOCKED
), dequeued AS (
    DELETE FROM side_queue q USING picked WHERE q.id = picked.id RETURNING q.id
)
SQL
)

# The side-table sketch: claim+start of those jobs, then their results.
cat > "$work/side.sql" <<SQL
$dequeue, leased AS (
    INSERT INTO side_leases SELECT id, :w, now() FROM dequeued
), claimed AS (
    UPDATE jobs_side j SET status = 'running', worker_id = :w, claimed_at = now(), started_at = now(), attempts = j.attempts + 1
    FROM dequeued d WHERE j.id = d.id
    RETURNING j.id, j.model, j.prompt, j.priority, j.timeout_seconds, j.attempts, j.params::text AS params, j.account_id
)
SELECT min(id) AS lo, max(id) AS hi FROM claimed \gset
WITH ended AS (
    DELETE FROM side_leases l WHERE l.job_id BETWEEN :lo AND :hi AND l.worker_id = :w RETURNING l.job_id
), done AS (
    UPDATE jobs_side j SET status = 'completed', output = 'ok', input_tokens = 1, output_tokens = 1, duration_ms = 1, model_used = 'bench:1',
        completed_at = now(), credits = 0
    FROM ended e WHERE j.id = e.job_id AND j.status = 'running'
    RETURNING j.id, j.account_id, j.worker_id, j.completed_at, j.credits
)
INSERT INTO side_credits SELECT id, account_id, worker_id, completed_at, credits FROM done;
SQL

# The batch-lease sketch: one lease row per claim statement, and one credit entry and one usage entry (per account, tag
# and model) per report; each job row is updated once, by its result.
cat > "$work/batch.sql" <<SQL
$dequeue, leased AS (
    INSERT INTO batch_leases (worker_id, claimed_at, job_ids) SELECT :w, now(), array_agg(id) FROM dequeued RETURNING id
)
SELECT (SELECT id FROM leased) AS lease, count(j.prompt) AS jobs, max(j.timeout_seconds) AS timeout,
       bool_or(j.params IS NOT NULL) AS has_params
FROM dequeued d JOIN jobs_side j ON j.id = d.id \gset
WITH ended AS (
    DELETE FROM batch_leases l WHERE l.id = :lease AND l.worker_id = :w RETURNING l.worker_id, l.claimed_at, l.job_ids
), done AS (
    UPDATE jobs_side j SET status = 'completed', worker_id = e.worker_id, claimed_at = e.claimed_at, started_at = e.claimed_at,
        attempts = j.attempts + 1, output = 'ok', input_tokens = 1, output_tokens = 1, duration_ms = 1, model_used = 'bench:1',
        completed_at = now(), credits = 0
    FROM ended e CROSS JOIN LATERAL unnest(e.job_ids) AS u(id) WHERE j.id = u.id AND j.status = 'pending'
    RETURNING j.account_id, j.tag, j.model_used, j.input_tokens, j.output_tokens, j.credits
), usage AS (
    INSERT INTO batch_usage SELECT account_id, now(), tag, model_used, count(*), sum(input_tokens), sum(output_tokens) FROM done GROUP BY 1, 3, 4
)
INSERT INTO batch_credits (worker_id, completed_at, jobs, credits) SELECT :w, now(), count(*), COALESCE(sum(credits), 0) FROM done;
SQL

# The counted-lease sketch: the batch lease's claim also updates the job rows (HOT); the result finds its jobs by id and
# lease, counts them off their lease (deleting it when none is left), and writes the same credit and usage entries.
cat > "$work/counted.sql" <<SQL
$dequeue, leased AS (
    INSERT INTO counted_leases (worker_id, claimed_at, deadline, remaining)
    SELECT :w, now(), now() + interval '600 seconds', count(*) FROM dequeued RETURNING id
), claimed AS (
    UPDATE jobs_side j SET status = 'running', worker_id = :w, claimed_at = now(), started_at = now(), attempts = j.attempts + 1, lease_id = l.id
    FROM dequeued d, leased l WHERE j.id = d.id
    RETURNING j.id, j.model, j.prompt, j.priority, j.timeout_seconds, j.attempts, j.params::text AS params, j.account_id
)
SELECT (SELECT id FROM leased) AS lease, min(id) AS lo, max(id) AS hi FROM claimed \gset
WITH done AS (
    UPDATE jobs_side j SET status = 'completed', output = 'ok', input_tokens = 1, output_tokens = 1, duration_ms = 1, model_used = 'bench:1',
        completed_at = now(), credits = 0
    WHERE j.id BETWEEN :lo AND :hi AND j.lease_id = :lease AND j.worker_id = :w AND j.status = 'running'
    RETURNING j.lease_id, j.account_id, j.tag, j.model_used, j.input_tokens, j.output_tokens, j.credits
), counts AS (
    SELECT lease_id, count(*) AS n FROM done GROUP BY lease_id
), gone AS (
    DELETE FROM counted_leases l USING counts c WHERE l.id = c.lease_id AND l.remaining = c.n
), kept AS (
    UPDATE counted_leases l SET remaining = l.remaining - c.n FROM counts c WHERE l.id = c.lease_id AND l.remaining > c.n
), usage AS (
    INSERT INTO batch_usage SELECT account_id, now(), tag, model_used, count(*), sum(input_tokens), sum(output_tokens) FROM done GROUP BY 1, 3, 4
)
INSERT INTO batch_credits (worker_id, completed_at, jobs, credits) SELECT :w, now(), count(*), COALESCE(sum(credits), 0) FROM done;
SQL

# Fills TABLE afresh (100,000 pending jobs, its side tables emptied), analyses it, zeroes the statistics and checkpoints,
# so that every measurement starts alike.
refill() {
  "${psql[@]}" -c "SELECT fill('$1')" -c "VACUUM ANALYZE $1" -c "SELECT pg_stat_reset()" -c "CHECKPOINT" >/dev/null
}

# Runs a script 150 times on freshly filled tables; prints µs per job for its two statements.
measure() {
  local label=$1 script=$2 table=$3 updates=${4:-1024}
  refill "$table"
  local lines
  lines=$("${pgbench[@]}" -t 150 -f "$script" "$PG_DATABASE" 2>&1 | awk '/^ +[0-9.]+ +[0-9]+ +(UPDATE|WITH)/ {print $1}')
  # pgbench's backend reports its table statistics as it exits, which can be just after pgbench does.
  local i
  for i in $(seq 100); do
    [[ "$("${psql[@]}" -tAc "SELECT n_tup_upd >= 150 * $updates FROM pg_stat_user_tables WHERE relname = '$table'")" == t ]] && break
    sleep 0.05
  done
  local hot
  hot=$("${psql[@]}" -tAc "SELECT round(100.0 * n_tup_hot_upd / greatest(n_tup_upd, 1)) FROM pg_stat_user_tables WHERE relname = '$table'")
  printf '| %s | %s | %s | %s%% |\n' "$label" \
    "$(echo "$lines" | sed -n 1p | awk '{printf "%.1f", $1 * 1000 / 512}')" \
    "$(echo "$lines" | sed -n 2p | awk '{printf "%.1f", $1 * 1000 / 512}')" "$hot"
}

echo
echo "PostgreSQL CPU per job and transition (µs; mean statement latency / 512 jobs, one client, synchronous_commit on)"
echo
echo "| statements | claim+start | result | HOT updates |"
echo "| --- | --- | --- | --- |"
measure "the engine's lease and result statements, on jobs" "$work/engine.sql" jobs
measure "plain UPDATEs on jobs (all its indexes, its trigger)" "$work/jobs.sql" jobs
measure "plain UPDATEs, a copy of jobs with the worker foreign key that migration 0008 dropped" "$work/jobs_worker_fk.sql" jobs_worker_fk
measure "plain UPDATEs, only the primary key and (account_id, id), fillfactor 40" "$work/jobs_hot.sql" jobs_hot
measure "side-table sketch: HOT updates of jobs, plus queue delete, lease insert and delete, credit entry insert" "$work/side.sql" jobs_side
measure "batch-lease sketch: queue delete and one lease row per claim; one HOT update of jobs per result; one credit and one usage entry per report" "$work/batch.sql" jobs_side 512
measure "counted-lease sketch: the batch lease, and the claim keeps the job row current (HOT)" "$work/counted.sql" jobs_side

# The database's drain ceiling: N clients at once (2, 4, 16), each a worker of its own (pgbench's client_id) claiming
# 76,800 / 150 / N jobs a statement (256, 128, 32) and reporting them, each statement its own commit, until 76,800 of the
# 100,000 jobs are done. pgbench's clients cost next to nothing, so the database has both cores to itself: no consumer
# process and no harness share them.
ceiling() {
  local label=$1 script=$2 table=$3 clients row="| $1 |"
  for clients in 2 4 16; do
    local batch=$((76800 / 150 / clients))
    sed -e 's/^\\set w random(1, 16)$/\\set w :client_id + 1/' -e "s/\\b512\\b/$batch/g" "$script" > "$script.$clients"
    refill "$table"
    local tps completed
    tps=$("${pgbench[@]}" -c "$clients" -j 2 -t 150 -f "$script.$clients" "$PG_DATABASE" 2>&1 | awk '/^tps = / {print $3}')
    completed=$("${psql[@]}" -tAc "SELECT count(*) FROM $table WHERE status = 'completed'")
    [[ "$completed" == 76800 ]] || die "$label, $clients clients: $completed jobs completed, expected 76,800"
    row+=" $(awk -v t="$tps" -v b="$batch" 'BEGIN {printf "%.0f", t * b}') |"
  done
  echo "$row"
}

echo
echo "The database's drain ceiling on this machine (jobs/s; pgbench clients, each claiming and reporting its own jobs, synchronous_commit on)"
echo
echo "| statements | 2 clients, 256 jobs a claim | 4 clients, 128 | 16 clients, 32 |"
echo "| --- | --- | --- | --- |"
ceiling "the engine's lease and result statements, on jobs" "$work/engine.sql" jobs
ceiling "side-table sketch" "$work/side.sql" jobs_side
ceiling "batch-lease sketch" "$work/batch.sql" jobs_side
ceiling "counted-lease sketch" "$work/counted.sql" jobs_side
rm -rf "$work"
