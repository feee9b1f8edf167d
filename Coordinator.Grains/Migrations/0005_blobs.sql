-- 0005: blob attachments (images, documents) uploaded through presigned URLs, and their links to jobs.

CREATE TABLE blobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint      NOT NULL REFERENCES accounts (id),
    blob_type    text        NOT NULL CHECK (blob_type IN ('image', 'document')),
    -- Where the object lives in the configured store: <account id>/<32 random hex digits>.
    object_key   text        NOT NULL UNIQUE,
    -- pending until POST /blobs/{id}/confirm found the upload within the size limit.
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed')),
    size_bytes   bigint,
    created_at   timestamptz NOT NULL,
    confirmed_at timestamptz
);
COMMENT ON TABLE blobs IS 'Attachments: the object is in the blob store (S3 or local disk); unconfirmed ones are removed after a day.';
-- The sweep of unconfirmed blobs reads oldest first.
CREATE INDEX blobs_unconfirmed ON blobs (created_at) WHERE status = 'pending';
-- POST /blobs counts the account's unconfirmed blobs against Blobs:MaxPendingPerAccount.
CREATE INDEX blobs_pending_by_account ON blobs (account_id) WHERE status = 'pending';

-- The blobs a job carries, in the order the client listed them in blob_ids.
CREATE TABLE job_blobs (
    job_id   bigint   NOT NULL REFERENCES jobs (id),
    blob_id  bigint   NOT NULL REFERENCES blobs (id),
    position smallint NOT NULL,
    PRIMARY KEY (job_id, blob_id)
);
COMMENT ON TABLE job_blobs IS 'Which confirmed blobs are attached to which job (same account only, checked at insert).';

-- The HMAC key that signs the local-disk store's upload and download URLs. One row, created by the first node that
-- needs it, so a URL signed by one node is accepted by every other.
CREATE TABLE blob_signing_key (
    id  smallint PRIMARY KEY CHECK (id = 1),
    key bytea    NOT NULL
);
