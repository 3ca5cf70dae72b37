-- fleetmon schema, version 5: indexes for the overview and the job metrics.
--
-- The metrics read the jobs that finished, or started, within a time window: each such scan is
-- a range of one of these indexes, and the columns it needs are included so that it never visits
-- the table (an index-only scan once vacuum has marked the pages all-visible, which finished jobs
-- soon are). Jobs that have not finished, or not started, are not indexed here.
CREATE INDEX jobs_finished_idx ON jobs (org_id, finished_at)
    INCLUDE (status, duration_ms, job_type, machine_id, worker_id)
    WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_started_idx ON jobs (org_id, started_at)
    INCLUDE (queued_at, created_at, job_type, machine_id, worker_id)
    WHERE started_at IS NOT NULL;
-- The overview's latest failures: a few rows, whatever the failure rate.
CREATE INDEX jobs_failures_idx ON jobs (org_id, finished_at DESC, id DESC)
    WHERE status IN ('failed', 'timeout');

-- Charts read a series' samples over a time range. Samples of one series are spread over the
-- heap, interleaved with every other series sent at the same moment, so reading them from the
-- table costs a page per sample; with the value in the primary key's index the read is
-- index-only and contiguous. (Same key, so resent samples are still dropped by it.)
ALTER TABLE metric_samples DROP CONSTRAINT metric_samples_pkey,
    ADD PRIMARY KEY (org_id, series_id, at) INCLUDE (value);
