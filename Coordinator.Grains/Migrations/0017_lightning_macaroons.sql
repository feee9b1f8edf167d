-- 0017: the Lightning agent's session macaroons and its free demo's rate limit (issue #18).

-- The root keys that sign session macaroons (HMAC-SHA256), shared by every silo. A key is kept only protected with the
-- grid's shared Data Protection key ring, never in clear. Every macaroon names its key in its identifier, so a key can
-- be retired for a new one while the macaroons it signed still verify.
CREATE TABLE lightning_macaroon_keys (
    -- 16 lowercase hex digits; the part of a macaroon's identifier before the colon.
    key_id     text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    -- The 32-byte root key, protected (IDataProtector) as base64 text.
    root_key   text        NOT NULL,
    created_at timestamptz NOT NULL,
    -- Null for the active key, the one that signs new macaroons; at most one is active.
    retired_at timestamptz
);
CREATE UNIQUE INDEX lightning_macaroon_keys_one_active ON lightning_macaroon_keys ((true)) WHERE retired_at IS NULL;

-- The free demo's fixed windows: requests per client (an IP address) in its current window. One row per client, updated
-- by one statement per request, so the limit holds across silos. Rows whose window has ended are deleted now and then.
CREATE TABLE lightning_demo_rate_limits (
    client_key        text        PRIMARY KEY,
    -- When the current window began: the client's first request after its previous window ended.
    window_started_at timestamptz NOT NULL,
    -- Requests counted in the window, denied ones included; capped at the limit + 1, which is all a denial needs.
    hits              integer     NOT NULL CHECK (hits > 0)
);
-- The sweep of ended windows.
CREATE INDEX lightning_demo_rate_limits_window ON lightning_demo_rate_limits (window_started_at);

COMMENT ON TABLE lightning_macaroon_keys IS 'Root keys of the Lightning sessions'' macaroons, Data Protection-protected (issue #18).';
COMMENT ON TABLE lightning_demo_rate_limits IS 'The Lightning free demo''s per-IP fixed-window counts, shared by every silo (issue #18).';
