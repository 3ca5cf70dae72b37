-- A quick fixture for the metrics queries: 10 M jobs over 30 days in 8 orgs (the largest 8 M),
-- a fleet of machines and workers, and GPU samples for the last day. Run as superuser.
\set ON_ERROR_STOP on
SELECT setseed(0.42);
CREATE TEMP TABLE anchor AS SELECT date_trunc('second', now()) AS t;
INSERT INTO organizations (id, slug, name)
SELECT ('00000000-0000-0000-0000-00000000000' || i)::uuid, 'bench-' || i, 'Bench ' || i
FROM generate_series(1, 8) i ON CONFLICT DO NOTHING;
CREATE TEMP TABLE sizes (org int, n int);
INSERT INTO sizes VALUES (1, 8000000), (2, 1000000), (3, 500000), (4, 100000), (5, 100000),
                         (6, 100000), (7, 100000), (8, 100000);

CREATE OR REPLACE FUNCTION pg_temp.seed_jobs(org int, first int, last int, total int) RETURNS void
LANGUAGE sql AS $$
INSERT INTO jobs (org_id, id, workflow_id, name, job_type, status, priority, attempt, worker_id,
                  machine_id, customer_id, created_at, queued_at, assigned_at, started_at,
                  finished_at, duration_ms, error, payload, state_rank, state_at, state_event_id)
SELECT ('00000000-0000-0000-0000-00000000000' || org)::uuid, 'job-' || n, 'wf-' || (n / 4),
       jt || ' #' || n, jt, st, n % 10, 1,
       CASE WHEN st = 'pending' THEN NULL ELSE format('gpu-node-%s-w%s', lpad(m::text, 3, '0'), w) END,
       CASE WHEN st = 'pending' THEN NULL ELSE format('gpu-node-%s', lpad(m::text, 3, '0')) END,
       'cust-' || (n % 97), created,
       created + interval '0.5 s',
       CASE WHEN st IN ('pending', 'queued') THEN NULL ELSE created + interval '0.5 s' + wait * 0.9 END,
       CASE WHEN st IN ('pending', 'queued', 'assigned') THEN NULL ELSE created + interval '0.5 s' + wait END,
       CASE WHEN st IN ('completed', 'failed', 'timeout', 'cancelled')
            THEN created + interval '0.5 s' + wait + dur END,
       CASE WHEN st IN ('completed', 'failed', 'timeout', 'cancelled')
            THEN (extract(epoch FROM dur) * 1000)::bigint END,
       CASE st WHEN 'failed' THEN jsonb_build_object('type', 'cuda_oom', 'reason', 'out of memory',
                                  'message', 'CUDA out of memory on GPU ' || (n % 8), 'will_retry', false)
               WHEN 'timeout' THEN '{"type": "timeout", "reason": "deadline exceeded"}'
               WHEN 'cancelled' THEN '{"type": "cancelled", "reason": "by user"}' END,
       jsonb_build_object('prompt', 'a picture of job ' || n, 'steps', 30),
       CASE st WHEN 'pending' THEN 0 WHEN 'queued' THEN 1 WHEN 'assigned' THEN 2
               WHEN 'in_progress' THEN 3 ELSE 4 END,
       created, gen_random_uuid()
FROM (
  SELECT n, created, wait, dur, m, w, jt,
         CASE WHEN created + interval '0.5 s' + wait + dur > a.t THEN
                CASE WHEN created + interval '0.5 s' > a.t - interval '1 s' THEN 'pending'
                     WHEN created + interval '0.5 s' + wait > a.t THEN 'queued'
                     ELSE 'in_progress' END
              WHEN r < 0.90 THEN 'completed' WHEN r < 0.95 THEN 'failed'
              WHEN r < 0.96 THEN 'timeout' WHEN r < 0.97 THEN 'cancelled' ELSE 'completed' END AS st
  FROM anchor a, LATERAL (
    SELECT n,
           a.t - interval '30 days' * (1 - n::float8 / total) AS created,
           make_interval(secs => 120 * random() ^ 3) AS wait,
           make_interval(secs => 0.5 * exp(random() * ln(1200))) AS dur,
           1 + (n * 7) % 100 AS m, (n * 13) % 4 AS w,
           (ARRAY['image.generate', 'image.upscale', 'llm.infer', 'video.encode', 'model.finetune'])
               [1 + (n * 31) % 5] AS jt,
           random() AS r
    FROM generate_series(first, last) n
  ) g
) j
$$;

DO $$
DECLARE s record; chunk int := 1000000; lo int;
BEGIN
  FOR s IN SELECT * FROM sizes ORDER BY org LOOP
    lo := 1;
    WHILE lo <= s.n LOOP
      PERFORM pg_temp.seed_jobs(s.org, lo, least(lo + chunk - 1, s.n), s.n);
      RAISE NOTICE 'org % jobs % .. %', s.org, lo, least(lo + chunk - 1, s.n);
      lo := lo + chunk;
    END LOOP;
  END LOOP;
END $$;

-- The fleet of each org: 100 machines with 4 workers each, heard from at various ages.
INSERT INTO machines (org_id, id, hostname, reported_status, last_seen_at, last_event_at, last_event_id)
SELECT ('00000000-0000-0000-0000-00000000000' || o)::uuid, format('gpu-node-%s', lpad(m::text, 3, '0')),
       format('gpu-node-%s.lan', lpad(m::text, 3, '0')), 'ready',
       a.t - make_interval(secs => CASE WHEN m % 10 = 0 THEN 300 WHEN m % 10 = 1 THEN 30 ELSE 2 END),
       a.t, gen_random_uuid()
FROM anchor a, generate_series(1, 8) o, generate_series(1, 100) m;
INSERT INTO workers (org_id, id, machine_id, status, last_seen_at, last_event_at, last_event_id)
SELECT ('00000000-0000-0000-0000-00000000000' || o)::uuid,
       format('gpu-node-%s-w%s', lpad(m::text, 3, '0'), w), format('gpu-node-%s', lpad(m::text, 3, '0')),
       (ARRAY['idle', 'busy', 'busy', 'error'])[1 + (m + w) % 4],
       a.t - make_interval(secs => CASE WHEN m % 10 = 0 THEN 300 ELSE 2 END), a.t, gen_random_uuid()
FROM anchor a, generate_series(1, 8) o, generate_series(1, 100) m, generate_series(0, 3) w;

-- GPU series of the largest org: 100 machines × 8 GPUs × 2 metrics; samples every 5 s for the
-- last day on 10 of the machines.
SELECT fleetmon_ensure_partitions((now() - interval '8 days')::date, (now() + interval '7 days')::date);
INSERT INTO metric_series (org_id, machine_id, name, labels)
SELECT '00000000-0000-0000-0000-000000000001', format('gpu-node-%s', lpad(m::text, 3, '0')), name,
       jsonb_build_object('gpu', g::text)
FROM generate_series(1, 100) m, generate_series(0, 7) g,
     unnest(ARRAY['gpu_utilization_pct', 'gpu_temperature_c']) name;
INSERT INTO metric_samples (org_id, series_id, at, value)
SELECT s.org_id, s.id, a.t - make_interval(secs => k * 5), 50 + 40 * sin(k / 100.0 + s.id)
FROM anchor a, metric_series s, generate_series(0, 17279) k
WHERE s.org_id = '00000000-0000-0000-0000-000000000001'
  AND s.machine_id <= 'gpu-node-010';
INSERT INTO organizations (id, slug, name) VALUES ('00000000-0000-0000-0000-0000000000ff', 'bench-anchor', 'anchor')
ON CONFLICT DO NOTHING;
UPDATE organizations SET settings = settings || jsonb_build_object('anchor', (SELECT t FROM anchor))
WHERE id = '00000000-0000-0000-0000-0000000000ff';
VACUUM ANALYZE;
