-- fleetmon schema, version 4: what the jobs API needs beyond version 3.

-- Whether viewers and read tokens see job payloads and results. Settings read from the database
-- take the defaults for keys they lack; the column default and the backfill make every org's
-- stored settings say so explicitly.
ALTER TABLE organizations ALTER COLUMN settings SET DEFAULT
    '{"stale_after_s": 15, "offline_after_s": 60, "retention_days": 30, "payloads_visible_to_viewers": true}';
UPDATE organizations SET settings = '{"payloads_visible_to_viewers": true}' || settings
WHERE NOT settings ? 'payloads_visible_to_viewers';

-- No index for text search, on purpose. Requests run as fleetmon_app under forced row-level
-- security, and PostgreSQL evaluates a qual that is not LEAKPROOF only after the policy's own
-- qual, so it can never be an index condition: `ILIKE`, pg_trgm's operators and full-text `@@`
-- are all not leakproof (only a superuser could mark a wrapper LEAKPROOF). A pg_trgm GIN index
-- would be maintained on every status change and never used by a request. The jobs listing
-- searches by walking the newest-first indexes below with a bound on the rows it examines per
-- request; see src/query/jobs.rs.
--
-- The listing's other filters use the indexes of version 1, all (org_id, column, created_at DESC,
-- id DESC): an equality on the column followed by the (created_at, id) cursor and the time range
-- is one index range read in listing order.
