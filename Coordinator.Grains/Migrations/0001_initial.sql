-- 0001: accounts, keys, workers, the model registry and jobs.

-- An account owns keys, jobs and workers. Every client query is scoped to one account.
CREATE TABLE accounts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL,
    -- A disabled account's keys answer 401/403; its jobs stay where they are.
    disabled         boolean     NOT NULL DEFAULT false,
    -- Priority a job gets when POST /jobs omits `priority` (the plan's boost; 0 on the free plan).
    default_priority integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL
);
COMMENT ON TABLE accounts IS 'A customer or volunteer; owner of keys, jobs and workers.';

-- Workers a volunteer runs. A worker-bound key (api_keys.worker_id) authenticates its /worker/* calls.
CREATE TABLE workers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint      NOT NULL REFERENCES accounts (id),
    name          text        NOT NULL,
    agent_version text,
    platform      text,
    catch_all     boolean     NOT NULL DEFAULT false,
    -- Refreshed by heartbeats and polls; a worker silent for the offline window (90 s) goes offline.
    last_seen_at  timestamptz NOT NULL,
    online        boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL,
    UNIQUE (account_id, name)
);
COMMENT ON TABLE workers IS 'grid-worker instances; re-registering under the same name updates the row in place.';
CREATE INDEX workers_online_last_seen ON workers (last_seen_at) WHERE online;

-- API keys: only the SHA-256 of the secret is kept. The secret is shown once, at creation.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint      NOT NULL REFERENCES accounts (id),
    name         text        NOT NULL,
    -- The first characters of the key (vk_live_XXXX), enough for a person to tell keys apart.
    prefix       text        NOT NULL,
    key_hash     bytea       NOT NULL UNIQUE,
    -- Set when the key is bound to a worker by POST /worker/register.
    worker_id    bigint      REFERENCES workers (id),
    created_at   timestamptz NOT NULL,
    -- Updated at most once a minute per node, so authentication does not write on every request.
    last_used_at timestamptz,
    revoked_at   timestamptz
);
COMMENT ON TABLE api_keys IS 'Bearer keys; looked up by SHA-256 hash, never stored in plain text.';
CREATE INDEX api_keys_account ON api_keys (account_id, id);

-- The grid model registry: every model name a worker has advertised.
CREATE TABLE models (
    name         text PRIMARY KEY,
    -- The name before the ':' tag (llama3:8b -> llama3).
    family       text        NOT NULL,
    display_name text        NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL
);
COMMENT ON TABLE models IS 'Model registry, synced from the model lists workers advertise.';

-- Which models each worker serves.
CREATE TABLE worker_models (
    worker_id     bigint  NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    model         text    NOT NULL REFERENCES models (name),
    family        text    NOT NULL,
    -- The worker also accepts `family` jobs for any model of this family.
    serves_family boolean NOT NULL DEFAULT false,
    PRIMARY KEY (worker_id, model)
);
CREATE INDEX worker_models_model ON worker_models (model);

-- Jobs: the queue itself. Every transition is one conditional UPDATE ... WHERE status = expected.
CREATE TABLE jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint      NOT NULL REFERENCES accounts (id),
    status          text        NOT NULL CHECK (status IN ('pending', 'claimed', 'running', 'completed', 'failed', 'cancelled')),
    model           text,
    -- Derived from model at insert; the family index serves `family` jobs.
    family          text,
    model_match     text        NOT NULL CHECK (model_match IN ('exact', 'family', 'any')),
    prompt          text        NOT NULL,
    priority        integer     NOT NULL,
    timeout_seconds integer     NOT NULL,
    tag             text,
    webhook_url     text,
    output          text,
    input_tokens    integer,
    output_tokens   integer,
    duration_ms     integer,
    model_used      text,
    -- The failure or cancellation reason shown to the client (`error` on the Job).
    error           text,
    worker_id       bigint      REFERENCES workers (id),
    -- How many times the job has been handed to a worker; a job abandoned on its 3rd attempt fails.
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    claimed_at      timestamptz,
    started_at      timestamptz,
    completed_at    timestamptz
);
COMMENT ON TABLE jobs IS 'Inference jobs: pending -> claimed -> running -> completed | failed | cancelled.';

-- Dispatch indexes: only pending rows, in fetch order (priority, then age), one per way a worker can match.
-- exact and family jobs by their model (a worker's models[]).
CREATE INDEX jobs_dispatch_model  ON jobs (model, priority DESC, id) WHERE status = 'pending' AND model_match <> 'any';
-- family jobs by their family (a worker's families[]).
CREATE INDEX jobs_dispatch_family ON jobs (family, priority DESC, id) WHERE status = 'pending' AND model_match = 'family';
-- any jobs (a worker polling with catch_all=true).
CREATE INDEX jobs_dispatch_any    ON jobs (priority DESC, id) WHERE status = 'pending' AND model_match = 'any';

-- Client listing: an account's jobs, newest first.
CREATE INDEX jobs_account_newest ON jobs (account_id, id DESC);
-- Time-driven duties: jobs out with a worker.
CREATE INDEX jobs_in_flight ON jobs (worker_id) WHERE status IN ('claimed', 'running');
CREATE INDEX jobs_in_flight_claimed_at ON jobs (claimed_at) WHERE status IN ('claimed', 'running');
