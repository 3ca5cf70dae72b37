-- fleetmon schema, version 3: state for applying Stack Auth webhooks in any order.
--
-- Svix may deliver a project's events out of order, concurrently and more than once. For every
-- Stack user, team and team membership this table keeps the signed timestamp and id of the last
-- delivery applied to it and whether that delivery said the object exists, so that a delivery
-- older than what was applied changes nothing (last writer wins), and so that deletions of users
-- and teams are final: nothing arriving after them brings the object back.
CREATE TABLE stack_sync_state (
    issuer      text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('user', 'team', 'membership')),
    -- The user id, the team id, or `<team id>/<user id>` for a membership.
    object_id   text NOT NULL CHECK (object_id <> ''),
    event_at    timestamptz NOT NULL,
    delivery_id text NOT NULL,
    present     boolean NOT NULL,
    PRIMARY KEY (issuer, kind, object_id)
);

-- Written by webhook deliveries, never deleted by them.
GRANT SELECT, INSERT, UPDATE ON stack_sync_state TO fleetmon_app;
