-- 0009: the silo cluster's membership, read and written by Orleans' ADO.NET clustering provider (invariant Npgsql).
-- The provider runs only the statements it finds in OrleansQuery by key, binding parameters by name (@DeploymentId,
-- @Address, …) and reading result columns by name (case-insensitively). It refuses to start when a key is missing.
-- Tables and statements are ours; the contract (keys, parameter names, result columns, and "a row count of 0 means
-- the conditional write lost") is the provider's.

-- The statements the Orleans ADO.NET providers run, by key. The providers read this table by this name.
CREATE TABLE OrleansQuery (
    QueryKey  varchar(64) PRIMARY KEY,
    QueryText text        NOT NULL
);

-- One row per cluster (Orleans calls the cluster id DeploymentId). Every change to membership bumps version, and a
-- write that names a stale version changes nothing: that is how silos agree on one membership view.
CREATE TABLE orleans_membership_version (
    deployment_id varchar(150) PRIMARY KEY,
    changed_at    timestamptz  NOT NULL DEFAULT now(),
    version       integer      NOT NULL DEFAULT 0
);

-- One row per silo incarnation: address, port and generation (a start-up timestamp) identify it.
-- status is Orleans' SiloStatus (3 = active, 6 = dead); suspect_times lists the votes of silos that suspect it.
CREATE TABLE orleans_membership (
    deployment_id  varchar(150) NOT NULL REFERENCES orleans_membership_version (deployment_id),
    address        varchar(45)  NOT NULL,
    port           integer      NOT NULL,
    generation     integer      NOT NULL,
    silo_name      varchar(150) NOT NULL,
    host_name      varchar(150) NOT NULL,
    status         integer      NOT NULL,
    proxy_port     integer,
    suspect_times  text,
    start_time     timestamptz  NOT NULL,
    i_am_alive_at  timestamptz  NOT NULL,
    PRIMARY KEY (deployment_id, address, port, generation)
);

-- Adds a silo's row and bumps the version, both or neither: the insert is undone when the version moved meanwhile.
CREATE FUNCTION orleans_insert_member(p_deployment varchar, p_address varchar, p_port integer, p_generation integer,
    p_silo_name varchar, p_host_name varchar, p_status integer, p_proxy_port integer, p_start timestamptz,
    p_alive timestamptz, p_version integer) RETURNS integer AS $$
DECLARE
    changed integer;
BEGIN
    UPDATE orleans_membership_version SET version = version + 1, changed_at = now()
     WHERE deployment_id = p_deployment AND version = p_version;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed = 0 THEN RETURN 0; END IF;
    INSERT INTO orleans_membership (deployment_id, address, port, generation, silo_name, host_name, status, proxy_port, start_time, i_am_alive_at)
    VALUES (p_deployment, p_address, p_port, p_generation, p_silo_name, p_host_name, p_status, p_proxy_port, p_start, p_alive)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed = 0 THEN RAISE EXCEPTION 'member exists' USING ERRCODE = 'unique_violation'; END IF;
    RETURN 1;
EXCEPTION WHEN unique_violation THEN
    RETURN 0;  -- the version bump above is rolled back with the block
END
$$ LANGUAGE plpgsql;

-- Changes a silo's status and suspicions and bumps the version, both or neither.
CREATE FUNCTION orleans_update_member(p_deployment varchar, p_address varchar, p_port integer, p_generation integer,
    p_status integer, p_suspect_times text, p_alive timestamptz, p_version integer) RETURNS integer AS $$
DECLARE
    changed integer;
BEGIN
    UPDATE orleans_membership_version SET version = version + 1, changed_at = now()
     WHERE deployment_id = p_deployment AND version = p_version;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed = 0 THEN RETURN 0; END IF;
    UPDATE orleans_membership
       SET status = p_status, suspect_times = p_suspect_times, i_am_alive_at = GREATEST(i_am_alive_at, p_alive)
     WHERE deployment_id = p_deployment AND address = p_address AND port = p_port AND generation = p_generation;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed = 0 THEN RAISE EXCEPTION 'no such member' USING ERRCODE = 'no_data_found'; END IF;
    RETURN 1;
EXCEPTION WHEN no_data_found THEN
    RETURN 0;
END
$$ LANGUAGE plpgsql;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
('InsertMembershipVersionKey', $q$
    WITH inserted AS (
        INSERT INTO orleans_membership_version (deployment_id) VALUES (@DeploymentId) ON CONFLICT DO NOTHING RETURNING 1)
    SELECT count(*)::integer FROM inserted
$q$),
('InsertMembershipKey', $q$
    SELECT orleans_insert_member(@DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName, @Status, @ProxyPort,
                                 @StartTime, @IAmAliveTime, @Version)
$q$),
('UpdateMembershipKey', $q$
    SELECT orleans_update_member(@DeploymentId, @Address, @Port, @Generation, @Status, @SuspectTimes, @IAmAliveTime, @Version)
$q$),
-- A heartbeat: never fails, never moves the time backwards.
('UpdateIAmAlivetimeKey', $q$
    UPDATE orleans_membership SET i_am_alive_at = GREATEST(i_am_alive_at, @IAmAliveTime)
     WHERE deployment_id = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation
$q$),
-- The version row always comes back, with the silo's row when it exists.
('MembershipReadRowKey', $q$
    SELECT v.deployment_id AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
           m.silo_name AS SiloName, m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
           m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.i_am_alive_at AS IAmAliveTime, v.version AS Version
      FROM orleans_membership_version v
      LEFT JOIN orleans_membership m ON m.deployment_id = v.deployment_id
           AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
     WHERE v.deployment_id = @DeploymentId
$q$),
('MembershipReadAllKey', $q$
    SELECT v.deployment_id AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
           m.silo_name AS SiloName, m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
           m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.i_am_alive_at AS IAmAliveTime, v.version AS Version
      FROM orleans_membership_version v
      LEFT JOIN orleans_membership m ON m.deployment_id = v.deployment_id
     WHERE v.deployment_id = @DeploymentId
$q$),
('DeleteMembershipTableEntriesKey', $q$
    DELETE FROM orleans_membership WHERE deployment_id = @DeploymentId;
    DELETE FROM orleans_membership_version WHERE deployment_id = @DeploymentId
$q$),
-- Active silos (status 3) that accept clients.
('GatewaysQueryKey', $q$
    SELECT address AS Address, proxy_port AS ProxyPort, generation AS Generation
      FROM orleans_membership
     WHERE deployment_id = @DeploymentId AND status = @Status AND proxy_port > 0
$q$),
-- Dead silos (status 6) that nobody suspects any more and that have been silent since before @IAmAliveTime.
('CleanupDefunctSiloEntriesKey', $q$
    DELETE FROM orleans_membership
     WHERE deployment_id = @DeploymentId AND status = 6 AND i_am_alive_at < @IAmAliveTime AND start_time < @IAmAliveTime
       AND coalesce(suspect_times, '') = ''
$q$),
('CleanupDefunctSiloEntryKey', $q$
    DELETE FROM orleans_membership
     WHERE deployment_id = @DeploymentId AND status = 6 AND address = @Address AND port = @Port
       AND generation = @Generation AND i_am_alive_at = @IAmAliveTime AND start_time = @StartTime
       AND coalesce(suspect_times, '') = coalesce(@SuspectTimes, '')
$q$);
