-- fleetmon schema, version 2: what sign-in needs beyond version 1.

-- Failed sign-ins are counted per key (`account:<email>` and `address:<ip>`) in one table, for
-- every provider alike, so the per-account columns of version 1 go.
ALTER TABLE local_accounts DROP COLUMN failed_attempts, DROP COLUMN locked_until;

CREATE TABLE sign_in_throttle (
    key          text PRIMARY KEY,
    failures     integer NOT NULL DEFAULT 0,
    window_start timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz
);

-- An OpenID Connect sign-in in flight, between the redirect to the provider and its callback. Only
-- the hash of `state` is kept; the browser holds `state` itself in a cookie, which binds the
-- callback to the browser that started it.
CREATE TABLE oidc_logins (
    state_hash    bytea PRIMARY KEY,
    provider      text NOT NULL,
    code_verifier text NOT NULL,
    nonce         text NOT NULL,
    return_to     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A membership granted by email to someone who has not signed in yet. It becomes a membership when
-- a user whose provider vouches for that email (email_verified) first appears.
CREATE TABLE invitations (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email      text NOT NULL CHECK (email = lower(email) AND email LIKE '%@%'),
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, email)
);
CREATE INDEX invitations_email_idx ON invitations (email, org_id);

-- Seen from two sides, like memberships: an org's context sees its invitations; a signed-in user
-- with no org selected sees the ones addressed to their own verified email, to claim them. Writes
-- always need the org's context.
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations AS PERMISSIVE FOR ALL TO PUBLIC
    USING (org_id = (SELECT fleetmon_current_org())
           OR ((SELECT fleetmon_current_org()) IS NULL
               AND email = (SELECT lower(u.email) FROM users u
                            WHERE u.id = (SELECT fleetmon_current_user())
                              AND u.email_verified AND u.deleted_at IS NULL)))
    WITH CHECK (org_id = (SELECT fleetmon_current_org()));

GRANT SELECT, INSERT, UPDATE, DELETE ON sign_in_throttle, oidc_logins, invitations TO fleetmon_app;
