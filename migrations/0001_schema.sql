-- fleetmon schema, version 1.
--
-- Runs as the connection's own user, which becomes the owner of every object here. Requests never
-- run as that user: each request transaction switches to `fleetmon_app` (created below), which is
-- not superuser, has no BYPASSRLS and owns nothing, so the policies below always apply to it.
--
-- Tenant tables carry `org_id` first in their primary key and in every index, have row-level
-- security enabled *and forced*, and one policy with both USING and WITH CHECK that compares
-- `org_id` with the transaction-local setting `fleetmon.org_id`. A missing or empty setting is NULL,
-- which matches nothing: no tenant context means no rows, never all rows.

-- The runtime role is cluster-wide, so two databases migrating at once may race to create it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'fleetmon_app') THEN
        CREATE ROLE fleetmon_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- created concurrently by another database's migration
END
$$;

-- The owner must be able to `SET ROLE fleetmon_app`. A superuser already can; granting to the
-- current user is what makes this work for Neon's and Cloud SQL's non-superuser owners.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'fleetmon_app', 'MEMBER') THEN
        EXECUTE format('GRANT fleetmon_app TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO fleetmon_app;
-- PostgreSQL 14 still lets every role create objects in `public`; from 15 on it does not. Without
-- CREATE, the runtime role can never plant an object that owner-run functions would resolve. (A
-- no-op, with a warning, when the migrating user does not own the schema.)
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The tenant the current transaction acts for, or NULL. Inlined by the planner; wrapped in
-- `(SELECT …)` at each use so it is evaluated once per statement, not once per row.
CREATE FUNCTION fleetmon_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('fleetmon.org_id', true), '')::uuid $$;

CREATE FUNCTION fleetmon_current_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('fleetmon.user_id', true), '')::uuid $$;

-- Enables and forces RLS on a tenant table and installs its one isolation policy. Used for the
-- tables below and for every partition created later, so partitions are guarded the same way
-- even though the runtime role is given no privilege on them.
CREATE FUNCTION fleetmon_isolate_tenant_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql SET search_path FROM CURRENT
    AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
        'USING (org_id = (SELECT fleetmon_current_org())) '
        'WITH CHECK (org_id = (SELECT fleetmon_current_org()))', tbl);
END
$$;
REVOKE EXECUTE ON FUNCTION fleetmon_isolate_tenant_table(regclass) FROM PUBLIC;

-------------------------------------------------------------------------------------------------
-- Global tables: identity and organizations. Not tenant-scoped; the app reaches them only through
-- code that filters by the signed-in user or by a verified credential.
-------------------------------------------------------------------------------------------------

CREATE TABLE organizations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug             text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- A Stack Auth team id, or the value of an OIDC issuer's org claim, that maps to this org.
    external_team_id text UNIQUE,
    settings         jsonb NOT NULL DEFAULT '{"stale_after_s": 15, "offline_after_s": 60, "retention_days": 30}'
                     CHECK (jsonb_typeof(settings) = 'object')
);

-- The provider-neutral replacement for neon_auth.users_sync: one row per (issuer, subject),
-- upserted from verified token claims and from provider webhooks.
CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    issuer         text NOT NULL,
    subject        text NOT NULL CHECK (subject <> ''),
    email          text,
    email_verified boolean NOT NULL DEFAULT false,
    name           text,
    raw_claims     jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz,
    deleted_at     timestamptz,
    UNIQUE (issuer, subject)
);
CREATE INDEX users_email_idx ON users (lower(email));

-- Built-in accounts of the `local` provider; the password is stored only as an argon2id hash.
CREATE TABLE local_accounts (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email           text NOT NULL,
    password_hash   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until    timestamptz
);
CREATE UNIQUE INDEX local_accounts_email_idx ON local_accounts (lower(email));

-- Browser sessions: the refresh secret is stored only as a hash.
CREATE TABLE sessions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider           text NOT NULL,
    refresh_token_hash bytea NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_used_at       timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz,
    user_agent         text,
    client_addr        inet
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Keys fleetmon signs its own access tokens with. Several are published at once so that rotation
-- never invalidates a token that is still within its lifetime.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    algorithm   text NOT NULL CHECK (algorithm IN ('EdDSA')),
    private_key bytea NOT NULL,
    public_jwk  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    expires_at  timestamptz
);

-- Delivery ids of provider webhooks already applied: replayed deliveries are refused.
CREATE TABLE webhook_deliveries (
    provider    text NOT NULL,
    delivery_id text NOT NULL,
    event_type  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, delivery_id)
);

-------------------------------------------------------------------------------------------------
-- Tenant tables.
-------------------------------------------------------------------------------------------------

CREATE TABLE memberships (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id, org_id);

CREATE TABLE api_tokens (
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind         text NOT NULL CHECK (kind IN ('ingest', 'read')),
    -- The first characters of the secret, shown in listings so people can tell tokens apart.
    prefix       text NOT NULL,
    token_hash   bytea NOT NULL,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX api_tokens_hash_idx ON api_tokens (org_id, token_hash);

CREATE TABLE machines (
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              text NOT NULL,
    hostname        text,
    reported_status text CHECK (reported_status IN ('starting', 'ready', 'stopping')),
    host            jsonb NOT NULL DEFAULT '{}',
    gpus            jsonb NOT NULL DEFAULT '[]',
    labels          jsonb NOT NULL DEFAULT '{}',
    uptime_s        bigint,
    started_at      timestamptz,
    -- Greatest `at` of any event about this machine: drives derived liveness.
    last_seen_at    timestamptz NOT NULL,
    -- Reported fields come in two groups, each last-writer-wins by (`at`, event id): the status
    -- (heartbeats, status changes, shutdowns) and the inventory (heartbeats only).
    last_event_at   timestamptz NOT NULL,
    last_event_id   uuid NOT NULL,
    inventory_at    timestamptz,
    inventory_event_id uuid,
    shutdown_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
-- Rewritten by every heartbeat: room on each page lets those be HOT updates, and no index on the
-- columns a heartbeat changes (an org's machines are read by its primary key prefix).
) WITH (fillfactor = 70);

CREATE TABLE workers (
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id             text NOT NULL,
    machine_id     text,
    status         text CHECK (status IN ('initializing', 'idle', 'busy', 'paused', 'stopping', 'error', 'maintenance')),
    current_job_id text,
    capabilities   jsonb NOT NULL DEFAULT '{}',
    services       jsonb NOT NULL DEFAULT '{}',
    version        text,
    connected_at   timestamptz,
    -- As for machines: status by heartbeats and status events; inventory (machine, current job,
    -- capabilities, services, version) by heartbeats only. A worker known only from job events
    -- has `-infinity` here until its first heartbeat.
    last_seen_at   timestamptz NOT NULL,
    last_event_at  timestamptz NOT NULL,
    last_event_id  uuid NOT NULL,
    inventory_at   timestamptz,
    inventory_event_id uuid,
    jobs_completed bigint NOT NULL DEFAULT 0,
    jobs_failed    bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
) WITH (fillfactor = 70);
CREATE INDEX workers_machine_idx ON workers (org_id, machine_id);

-- Current state of every job, derived from its events.
CREATE TABLE jobs (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id               text NOT NULL,
    workflow_id      text,
    name             text,
    job_type         text,
    status           text NOT NULL CHECK (status IN ('pending', 'queued', 'assigned', 'in_progress',
                                                     'completed', 'failed', 'cancelled', 'timeout')),
    priority         integer,
    attempt          integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    max_retries      integer,
    progress         real CHECK (progress BETWEEN 0 AND 100),
    progress_message text,
    worker_id        text,
    machine_id       text,
    customer_id      text,
    created_at       timestamptz NOT NULL,
    queued_at        timestamptz,
    assigned_at      timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_ms      bigint,
    error            jsonb,
    result           jsonb,
    payload          jsonb,
    -- The (attempt, rank, at, event_id) of the event the current status comes from; a later
    -- event only replaces the status when its tuple is greater, whatever the arrival order.
    state_rank       smallint NOT NULL,
    state_at         timestamptz NOT NULL,
    state_event_id   uuid NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
-- A job's row is rewritten as its events arrive; progress updates change no indexed column, so
-- with room on the page they are HOT updates that touch no index.
) WITH (fillfactor = 80);
-- Newest-first listing with each filter; optional columns are indexed only where set.
CREATE INDEX jobs_created_idx ON jobs (org_id, created_at DESC, id DESC);
CREATE INDEX jobs_status_idx ON jobs (org_id, status, created_at DESC, id DESC);
CREATE INDEX jobs_type_idx ON jobs (org_id, job_type, created_at DESC, id DESC) WHERE job_type IS NOT NULL;
CREATE INDEX jobs_worker_idx ON jobs (org_id, worker_id, created_at DESC, id DESC) WHERE worker_id IS NOT NULL;
CREATE INDEX jobs_machine_idx ON jobs (org_id, machine_id, created_at DESC, id DESC) WHERE machine_id IS NOT NULL;
CREATE INDEX jobs_workflow_idx ON jobs (org_id, workflow_id, created_at DESC, id DESC) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobs_customer_idx ON jobs (org_id, customer_id, created_at DESC, id DESC) WHERE customer_id IS NOT NULL;

-- Append-only job history, one partition per day of `at`. The sender's event id is the
-- idempotency key; a unique key on a partitioned table must include the partition key.
CREATE TABLE job_events (
    org_id      uuid NOT NULL,
    event_id    uuid NOT NULL,
    job_id      text NOT NULL,
    kind        text NOT NULL,
    attempt     integer NOT NULL DEFAULT 1,
    at          timestamptz NOT NULL,
    worker_id   text,
    machine_id  text,
    data        jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, event_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX job_events_job_idx ON job_events (org_id, job_id, at);

-- Machine and worker lifecycle history: status changes, startup steps, shutdowns.
CREATE TABLE fleet_events (
    org_id      uuid NOT NULL,
    event_id    uuid NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL,
    machine_id  text,
    worker_id   text,
    data        jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, event_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX fleet_events_machine_idx ON fleet_events (org_id, machine_id, at);
CREATE INDEX fleet_events_worker_idx ON fleet_events (org_id, worker_id, at);

-- The series dictionary: one row per (machine, worker, metric name, labels). `worker_id` is ''
-- for machine-level series so the unique key works on Postgres 14 (no NULLS NOT DISTINCT).
CREATE TABLE metric_series (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    machine_id text NOT NULL,
    worker_id  text NOT NULL DEFAULT '',
    name       text NOT NULL,
    labels     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, machine_id, worker_id, name, labels)
);
CREATE INDEX metric_series_name_idx ON metric_series (org_id, name);

-- Narrow samples, one partition per day. A resent sample hits the primary key and is dropped.
CREATE TABLE metric_samples (
    org_id    uuid NOT NULL,
    series_id bigint NOT NULL,
    at        timestamptz NOT NULL,
    value     double precision NOT NULL,
    PRIMARY KEY (org_id, series_id, at)
) PARTITION BY RANGE (at);

CREATE TABLE audit_log (
    org_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id      bigint GENERATED ALWAYS AS IDENTITY,
    -- Who acted: a user id, an API token id or `system`, as text so deleted actors stay readable.
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text,
    details jsonb NOT NULL DEFAULT '{}',
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX audit_log_at_idx ON audit_log (org_id, at DESC, id DESC);

SELECT fleetmon_isolate_tenant_table(t)
FROM unnest(ARRAY['api_tokens', 'machines', 'workers', 'jobs', 'job_events', 'fleet_events',
                  'metric_series', 'metric_samples', 'audit_log']::regclass[]) AS t;

-- Memberships are seen from two sides: an org's context sees its members; a signed-in user with no
-- org selected sees their own memberships (to list and pick their orgs). Writes always need the
-- org's context.
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships AS PERMISSIVE FOR ALL TO PUBLIC
    USING (org_id = (SELECT fleetmon_current_org())
           OR ((SELECT fleetmon_current_org()) IS NULL AND user_id = (SELECT fleetmon_current_user())))
    WITH CHECK (org_id = (SELECT fleetmon_current_org()));

-- Creates the daily partitions of every partitioned history table for [first_day, last_day],
-- each isolated like its parent. Idempotent; called by fleetmon's system maintenance, never by
-- requests.
CREATE FUNCTION fleetmon_ensure_partitions(first_day date, last_day date) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT
    AS $$
DECLARE
    parent text;
    day date;
    part text;
    created integer := 0;
BEGIN
    -- Two replicas starting at once must not race on the same CREATE TABLE.
    PERFORM pg_advisory_xact_lock(hashtext('fleetmon.partitions'));
    FOREACH parent IN ARRAY ARRAY['job_events', 'fleet_events', 'metric_samples'] LOOP
        day := first_day;
        WHILE day <= last_day LOOP
            part := format('%s_p%s', parent, pg_catalog.to_char(day::timestamp, 'YYYYMMDD'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, parent, day::timestamp AT TIME ZONE 'UTC',
                    (day + 1)::timestamp AT TIME ZONE 'UTC');
                PERFORM fleetmon_isolate_tenant_table(part::regclass);
                created := created + 1;
            END IF;
            day := day + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
REVOKE EXECUTE ON FUNCTION fleetmon_ensure_partitions(date, date) FROM PUBLIC;

-- The runtime role gets exactly what request code needs: row access, no DDL, no TRUNCATE,
-- no REFERENCES or TRIGGER. Partitions get no grant: they are reached only through their parent.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    organizations, users, local_accounts, sessions, signing_keys, webhook_deliveries,
    memberships, api_tokens, machines, workers, jobs, job_events, fleet_events,
    metric_series, metric_samples, audit_log
    TO fleetmon_app;
GRANT SELECT ON fleetmon_schema_migrations TO fleetmon_app;
