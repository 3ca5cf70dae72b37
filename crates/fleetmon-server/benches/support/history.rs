//! A fleet's job history, generated from a fixed seed: several orgs of different sizes, their
//! machines and workers, and jobs over the days before `ends_at` with their events, rendered as
//! `COPY … FROM STDIN` text. Each job's events are the ones agents send (`fleetmon_proto`), and its
//! `jobs` row is ingest's own fold of them (`JobRow::fold`), so the rows are what ingest would have
//! stored. (Benchmarks include this file by path.)

use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use fleetmon_proto::ingest::{
    EventBody, JobCompleted, JobEnded, JobError, JobFailed, JobRef, JobSubmitted,
};
use fleetmon_server::ingest::jobs::{JobEvent, JobRow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

/// Bump when the generated data changes, so cached fixtures are seeded again.
pub const GENERATOR_VERSION: u32 = 1;

/// An org of the fixture: its share of all jobs and the size of its fleet.
pub struct OrgSpec {
    pub slug: &'static str,
    pub name: &'static str,
    pub share: f64,
    pub machines: usize,
    pub workers_per_machine: usize,
    pub customers: usize,
}

/// One large org with most of the history, and smaller ones sharing the rest.
pub const ORGS: &[OrgSpec] = &[
    OrgSpec {
        slug: "bench-large",
        name: "Large fleet",
        share: 0.70,
        machines: 240,
        workers_per_machine: 4,
        customers: 400,
    },
    OrgSpec {
        slug: "bench-medium",
        name: "Medium fleet",
        share: 0.15,
        machines: 60,
        workers_per_machine: 4,
        customers: 120,
    },
    OrgSpec {
        slug: "bench-small",
        name: "Small fleet",
        share: 0.10,
        machines: 30,
        workers_per_machine: 2,
        customers: 60,
    },
    OrgSpec {
        slug: "bench-tiny",
        name: "Tiny fleet",
        share: 0.05,
        machines: 8,
        workers_per_machine: 2,
        customers: 15,
    },
];

/// A kind of job: log-normal duration (median and spread, seconds) and the service running it.
struct JobType {
    name: &'static str,
    service: &'static str,
    median_s: f64,
    sigma: f64,
    weight: f64,
}

const JOB_TYPES: &[JobType] = &[
    JobType {
        name: "image.generate",
        service: "diffusion",
        median_s: 6.0,
        sigma: 0.4,
        weight: 0.28,
    },
    JobType {
        name: "image.upscale",
        service: "diffusion",
        median_s: 3.0,
        sigma: 0.3,
        weight: 0.12,
    },
    JobType {
        name: "llm.infer",
        service: "llm",
        median_s: 2.0,
        sigma: 0.6,
        weight: 0.25,
    },
    JobType {
        name: "audio.transcribe",
        service: "whisper",
        median_s: 8.0,
        sigma: 0.5,
        weight: 0.10,
    },
    JobType {
        name: "embedding.batch",
        service: "llm",
        median_s: 4.0,
        sigma: 0.4,
        weight: 0.10,
    },
    JobType {
        name: "video.encode",
        service: "ffmpeg",
        median_s: 20.0,
        sigma: 0.5,
        weight: 0.12,
    },
    JobType {
        name: "model.finetune",
        service: "trainer",
        median_s: 600.0,
        sigma: 0.4,
        weight: 0.03,
    },
];

/// The steps of a multi-step workflow, by index into `JOB_TYPES`.
const WORKFLOW: &[usize] = &[0, 1, 5];
const WORKFLOW_PROBABILITY: f64 = 0.08;

/// How an attempt ends badly: (error type, reason, message, retryable, probability).
const FAILURES: &[(&str, &str, &str, bool, f64)] = &[
    (
        "gpu",
        "out_of_memory",
        "CUDA out of memory: tried to allocate 2.00 GiB",
        true,
        0.03,
    ),
    (
        "service",
        "service_error",
        "inference service returned 500",
        true,
        0.02,
    ),
    (
        "network",
        "network_error",
        "connection reset by peer while uploading result",
        true,
        0.01,
    ),
    (
        "validation",
        "validation_error",
        "payload field `prompt` is empty",
        false,
        0.012,
    ),
];
const TIMEOUT_PROBABILITY: f64 = 0.015;
const CANCEL_PROBABILITY: f64 = 0.005;
/// Half the submitters report a `job.queued` of their own; the others' jobs go straight from
/// pending to assigned. (This also keeps the 10 million-job fixture within the disk.)
const QUEUED_PROBABILITY: f64 = 0.5;
const MAX_RETRIES: u32 = 2;

/// Words of job names. Each project word is in about 1/64 of names; `RARE_WORD` in about 1 in
/// 10,000 — the text-search cases look for one of each.
const PROJECTS: &[&str] = &[
    "kestrel",
    "falcon",
    "osprey",
    "heron",
    "magpie",
    "puffin",
    "condor",
    "ibis",
    "plover",
    "raven",
    "swift",
    "tern",
    "wren",
    "egret",
    "finch",
    "gannet",
    "harrier",
    "jay",
    "kite",
    "lark",
    "merlin",
    "nightjar",
    "oriole",
    "pipit",
    "quail",
    "rook",
    "shrike",
    "thrush",
    "vireo",
    "warbler",
    "avocet",
    "bittern",
    "curlew",
    "dunlin",
    "eider",
    "fulmar",
    "grebe",
    "hobby",
    "jackdaw",
    "knot",
    "linnet",
    "martin",
    "nuthatch",
    "ouzel",
    "petrel",
    "redstart",
    "siskin",
    "twite",
    "veery",
    "wheatear",
    "auklet",
    "bunting",
    "crake",
    "dotterel",
    "flicker",
    "godwit",
    "hoopoe",
    "junco",
    "kittiwake",
    "limpkin",
    "motmot",
    "noddy",
    "oxpecker",
    "phoebe",
];
const ASSETS: &[&str] = &[
    "hero banner",
    "thumbnail",
    "product shot",
    "storyboard",
    "voiceover",
    "transcript",
    "summary",
    "catalog page",
    "trailer",
    "avatar",
    "support reply",
    "search index",
];
pub const COMMON_WORD: &str = "kestrel";
pub const RARE_WORD: &str = "quarantine";
const RARE_PROBABILITY: f64 = 0.0001;

/// Jobs generated and rendered per chunk.
pub const CHUNK_JOBS: usize = 20_000;

/// A planned org: its identity and its fleet.
pub struct OrgPlan {
    pub id: Uuid,
    pub spec: &'static OrgSpec,
    workers: Vec<WorkerState>,
    /// The workflow this org's next job continues: its id and the step.
    workflow: Option<(String, usize)>,
    pub jobs: u64,
}

impl OrgPlan {
    fn machine_id(machine: usize) -> String {
        format!("node-{machine:03}")
    }
}

#[derive(Default, Clone)]
struct WorkerState {
    completed: i64,
    failed: i64,
    /// The job running when the history ends.
    current_job: Option<String>,
}

/// One chunk of history as COPY text: `jobs` rows and `job_events` rows.
pub struct Chunk {
    pub jobs: String,
    pub events: String,
    pub job_count: usize,
    pub event_count: usize,
}

pub struct Generator {
    rng: StdRng,
    pub orgs: Vec<OrgPlan>,
    total: u64,
    next: u64,
    starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Generator {
    pub fn new(total: u64, seed: u64, days: u32, ends_at: DateTime<Utc>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let orgs = ORGS
            .iter()
            .map(|spec| OrgPlan {
                id: random_uuid(&mut rng),
                spec,
                workers: vec![WorkerState::default(); spec.machines * spec.workers_per_machine],
                workflow: None,
                jobs: 0,
            })
            .collect();
        Self {
            rng,
            orgs,
            total,
            next: 0,
            starts_at: ends_at - Duration::days(i64::from(days)),
            ends_at,
        }
    }

    /// The next `CHUNK_JOBS` jobs in creation order, or `None` when all are out.
    pub fn next_chunk(&mut self) -> Option<Chunk> {
        if self.next >= self.total {
            return None;
        }
        let mut chunk = Chunk {
            jobs: String::with_capacity(CHUNK_JOBS * 600),
            events: String::with_capacity(CHUNK_JOBS * 5 * 400),
            job_count: 0,
            event_count: 0,
        };
        let span_ms = (self.ends_at - self.starts_at).num_milliseconds() as f64;
        let end = (self.next + CHUNK_JOBS as u64).min(self.total);
        while self.next < end {
            let offset = span_ms * (self.next as f64 + self.rng.gen::<f64>()) / self.total as f64;
            let created = self.starts_at + Duration::milliseconds(offset as i64);
            let org = self.pick_org();
            self.job(org, created, &mut chunk);
            self.next += 1;
        }
        Some(chunk)
    }

    fn pick_org(&mut self) -> usize {
        let mut roll = self.rng.gen::<f64>();
        for (index, org) in self.orgs.iter().enumerate() {
            if roll < org.spec.share {
                return index;
            }
            roll -= org.spec.share;
        }
        self.orgs.len() - 1
    }

    fn job(&mut self, org: usize, created: DateTime<Utc>, chunk: &mut Chunk) {
        let id = job_id(self.next);
        let (job_type, workflow) = self.job_type(org);
        let plan = &self.orgs[org];
        let customer = plan.spec.customers as f64 * self.rng.gen::<f64>().powi(2);
        let customer = format!("cust-{:04}", customer as usize);
        let project = PROJECTS[self.rng.gen_range(0..PROJECTS.len())];
        let asset = ASSETS[self.rng.gen_range(0..ASSETS.len())];
        let rare = if self.rng.gen_bool(RARE_PROBABILITY) {
            format!(" {RARE_WORD}")
        } else {
            String::new()
        };
        let t = &JOB_TYPES[job_type];
        let submitted = EventBody::JobSubmitted(JobSubmitted {
            job: JobRef::new(id.clone()),
            workflow_id: workflow.as_ref().map(|(w, _)| w.clone()),
            name: Some(format!(
                "{project} {asset}{rare} {:06}",
                self.next % 1_000_000
            )),
            job_type: Some(t.name.to_string()),
            priority: Some(self.rng.gen_range(0..10)),
            customer_id: Some(customer),
            max_retries: Some(MAX_RETRIES),
            payload: Some(json!({"service": t.service, "step": workflow.as_ref().map(|(_, s)| s)})),
        });
        let mut events = Vec::with_capacity(5);
        self.push(&mut events, created, submitted);
        let mut queued_at = created + Duration::milliseconds(1);
        if self.rng.gen_bool(QUEUED_PROBABILITY) {
            self.push(
                &mut events,
                queued_at,
                EventBody::JobQueued(JobRef::new(id.clone())),
            );
        }
        if self.rng.gen_bool(CANCEL_PROBABILITY) {
            let at = queued_at + seconds(exponential(&mut self.rng, 3.0));
            let ended = JobEnded {
                job: JobRef::new(id.clone()),
                reason: Some("cancelled by the customer".into()),
            };
            self.push(&mut events, at, EventBody::JobCancelled(ended));
        } else {
            let mut attempt = 1;
            loop {
                let retry_at = self.attempt(org, &id, job_type, attempt, queued_at, &mut events);
                match retry_at {
                    Some(at) => {
                        attempt += 1;
                        queued_at = at;
                        let retry = JobRef {
                            job_id: id.clone(),
                            attempt,
                            worker_id: None,
                            machine_id: None,
                        };
                        self.push(&mut events, at, EventBody::JobRetried(retry));
                    }
                    None => break,
                }
            }
        }
        // The history ends now: what would happen later has not happened yet.
        let ends_at = self.ends_at;
        events.retain(|e| e.at <= ends_at);
        let Some(row) = JobRow::fold(None, &mut events) else {
            return;
        };
        let plan = &mut self.orgs[org];
        plan.jobs += 1;
        if let Some(worker) = row.worker_id.as_deref().and_then(worker_index) {
            let state = &mut plan.workers[worker.0 * plan.spec.workers_per_machine + worker.1];
            let (completed, failed) = row.counts();
            state.completed += completed;
            state.failed += failed;
            if matches!(row.status.as_str(), "assigned" | "in_progress") {
                state.current_job = Some(row.id.clone());
            }
        }
        let org_id = plan.id;
        for event in &events {
            event_row(&mut chunk.events, org_id, event, self.received(event.at));
        }
        job_row(&mut chunk.jobs, org_id, &row, self.received(row.state_at));
        chunk.job_count += 1;
        chunk.event_count += events.len();
    }

    /// The type of the org's next job, continuing its open workflow if it has one.
    fn job_type(&mut self, org: usize) -> (usize, Option<(String, usize)>) {
        if let Some((workflow, step)) = self.orgs[org].workflow.take() {
            if step + 1 < WORKFLOW.len() {
                self.orgs[org].workflow = Some((workflow.clone(), step + 1));
            }
            return (WORKFLOW[step], Some((workflow, step)));
        }
        if self.rng.gen_bool(WORKFLOW_PROBABILITY) {
            let workflow = format!("wf-{:012x}", self.rng.gen::<u64>() >> 16);
            self.orgs[org].workflow = Some((workflow.clone(), 1));
            return (WORKFLOW[0], Some((workflow, 0)));
        }
        let mut roll = self.rng.gen::<f64>();
        for (index, t) in JOB_TYPES.iter().enumerate() {
            if roll < t.weight {
                return (index, None);
            }
            roll -= t.weight;
        }
        (0, None)
    }

    /// One attempt from the queue to its end; the time of the retry when it fails retryably.
    fn attempt(
        &mut self,
        org: usize,
        id: &str,
        job_type: usize,
        attempt: u32,
        queued_at: DateTime<Utc>,
        events: &mut Vec<JobEvent>,
    ) -> Option<DateTime<Utc>> {
        let plan = &self.orgs[org];
        let machine = self.rng.gen_range(0..plan.spec.machines);
        let slot = self.rng.gen_range(0..plan.spec.workers_per_machine);
        let machine_id = OrgPlan::machine_id(machine);
        let job = JobRef {
            job_id: id.to_string(),
            attempt,
            worker_id: Some(format!("{machine_id}-w{slot}")),
            machine_id: Some(machine_id),
        };
        // Mostly a short wait; now and then a backlog.
        let mut wait = exponential(&mut self.rng, 1.5);
        if self.rng.gen_bool(0.02) {
            wait *= 40.0;
        }
        let assigned_at = queued_at + seconds(wait);
        let started_at = assigned_at + Duration::milliseconds(50);
        self.push(events, assigned_at, EventBody::JobAssigned(job.clone()));
        self.push(events, started_at, EventBody::JobStarted(job.clone()));
        let t = &JOB_TYPES[job_type];
        let mut duration =
            lognormal(&mut self.rng, t.median_s, t.sigma).clamp(0.2, t.median_s * 8.0);
        if self.rng.gen_bool(TIMEOUT_PROBABILITY) {
            let at = started_at + seconds(t.median_s * 5.0);
            let ended = JobEnded {
                job,
                reason: Some("exceeded the job type's deadline".into()),
            };
            self.push(events, at, EventBody::JobTimeout(ended));
            return None;
        }
        let mut roll = self.rng.gen::<f64>();
        for &(kind, reason, message, retryable, p) in FAILURES {
            if roll < p {
                duration *= self.rng.gen_range(0.1..0.9);
                let at = started_at + seconds(duration);
                let will_retry = retryable && attempt <= MAX_RETRIES;
                let error = JobError {
                    kind: Some(kind.into()),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    cause: None,
                };
                let failed = JobFailed {
                    job,
                    error,
                    will_retry,
                };
                self.push(events, at, EventBody::JobFailed(failed));
                return will_retry.then(|| at + Duration::milliseconds(500));
            }
            roll -= p;
        }
        let at = started_at + seconds(duration);
        let completed = JobCompleted {
            result: Some(json!({"output": format!("s3://results/{id}")})),
            duration_ms: Some((at - started_at).num_milliseconds() as u64),
            job,
        };
        self.push(events, at, EventBody::JobCompleted(completed));
        None
    }

    fn push(&mut self, events: &mut Vec<JobEvent>, at: DateTime<Utc>, body: EventBody) {
        events.push(JobEvent {
            event_id: random_uuid(&mut self.rng),
            at,
            body,
        });
    }

    /// When the server received an event sent at `at`.
    fn received(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + Duration::milliseconds(self.rng.gen_range(20..400))
    }

    /// `machines` rows of every org as COPY text: heartbeating until the history ends.
    pub fn machines(&mut self) -> String {
        let mut out = String::new();
        let ends_at = self.ends_at;
        let booted = self.starts_at - Duration::days(2);
        for plan in &self.orgs {
            for machine in 0..plan.spec.machines {
                let id = OrgPlan::machine_id(machine);
                let hostname = format!("{id}.{}.internal", plan.spec.slug);
                let host = json!({"hostname": hostname, "os": "Ubuntu 22.04", "cpu_cores": 32,
                                  "ram_gb": 256.0, "ip": format!("10.0.{}.{}", machine / 250, machine % 250 + 1)});
                let gpus: Vec<Value> = (0..plan.spec.workers_per_machine)
                    .map(|index| {
                        json!({"index": index, "name": "NVIDIA L4", "memory_total_mb": 23_034,
                                        "memory_used_mb": 9_000, "utilization_pct": 55.0,
                                        "temperature_c": 61.0, "power_w": 48.0})
                    })
                    .collect();
                let labels = json!({"zone": format!("zone-{}", machine % 3), "pool": "l4"});
                let event_id = random_uuid(&mut self.rng);
                let mut row = CopyRow::new(&mut out);
                row.value(plan.id)
                    .text(&id)
                    .text(&hostname)
                    .text("ready")
                    .json(&host)
                    .json(&Value::Array(gpus))
                    .json(&labels)
                    .value((ends_at - booted).num_seconds())
                    .time(booted)
                    .time(ends_at)
                    .time(ends_at)
                    .value(event_id)
                    .time(ends_at)
                    .value(event_id)
                    .null()
                    .time(booted)
                    .time(ends_at)
                    .end();
            }
        }
        out
    }

    /// `workers` rows of every org as COPY text, with the job counts of the generated history.
    /// Only meaningful after the last chunk.
    pub fn workers(&mut self) -> String {
        let mut out = String::new();
        let ends_at = self.ends_at;
        let connected = self.starts_at - Duration::days(2);
        for plan in &self.orgs {
            for (index, state) in plan.workers.iter().enumerate() {
                let per = plan.spec.workers_per_machine;
                let machine_id = OrgPlan::machine_id(index / per);
                let id = format!("{machine_id}-w{}", index % per);
                let status = if state.current_job.is_some() {
                    "busy"
                } else {
                    "idle"
                };
                let mut services: Vec<&str> = JOB_TYPES.iter().map(|t| t.service).collect();
                services.sort_unstable();
                services.dedup();
                let capabilities = json!({"services": services, "gpu_index": index % per});
                let services = json!({"diffusion": "idle", "llm": "idle", "whisper": "idle",
                                      "ffmpeg": "idle", "trainer": "idle"});
                let event_id = random_uuid(&mut self.rng);
                let mut row = CopyRow::new(&mut out);
                row.value(plan.id)
                    .text(&id)
                    .text(&machine_id)
                    .text(status)
                    .opt(state.current_job.as_deref())
                    .json(&capabilities)
                    .json(&services)
                    .text("1.8.2")
                    .time(connected)
                    .time(ends_at)
                    .time(ends_at)
                    .value(event_id)
                    .time(ends_at)
                    .value(event_id)
                    .value(state.completed)
                    .value(state.failed)
                    .time(connected)
                    .time(ends_at)
                    .end();
            }
        }
        out
    }
}

/// `(machine, slot)` of a worker id `node-NNN-wS`.
fn worker_index(worker_id: &str) -> Option<(usize, usize)> {
    let rest = worker_id.strip_prefix("node-")?;
    let (machine, slot) = rest.split_once("-w")?;
    Some((machine.parse().ok()?, slot.parse().ok()?))
}

/// Distinct, unordered job ids: the index through a bijection of 48-bit numbers.
fn job_id(index: u64) -> String {
    const MASK: u64 = (1 << 48) - 1;
    let scrambled = (index
        .wrapping_mul(0x5851_f42d_4c95_7f2d)
        .wrapping_add(0x1405_7b7e_f767))
        & MASK;
    format!("job-{scrambled:012x}")
}

fn random_uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

fn seconds(s: f64) -> Duration {
    Duration::microseconds((s * 1e6) as i64)
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

/// Log-normal with the given median (Box–Muller): the long right tail real durations have.
fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    let (u1, u2) = (1.0 - rng.gen::<f64>(), rng.gen::<f64>());
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * normal).exp()
}

/// Columns of the `jobs` COPY, in the order `job_row` writes them.
pub const JOB_COLUMNS: &str = "org_id, id, workflow_id, name, job_type, status, priority, \
    attempt, max_retries, progress, progress_message, worker_id, machine_id, customer_id, \
    created_at, queued_at, assigned_at, started_at, finished_at, duration_ms, error, result, \
    payload, state_rank, state_at, state_event_id, updated_at";

fn job_row(out: &mut String, org_id: Uuid, job: &JobRow, updated_at: DateTime<Utc>) {
    let mut row = CopyRow::new(out);
    row.value(org_id)
        .text(&job.id)
        .opt(job.workflow_id.as_deref())
        .opt(job.name.as_deref())
        .opt(job.job_type.as_deref())
        .text(&job.status)
        .opt_value(job.priority)
        .value(job.attempt)
        .opt_value(job.max_retries)
        .opt_value(job.progress)
        .opt(job.progress_message.as_deref())
        .opt(job.worker_id.as_deref())
        .opt(job.machine_id.as_deref())
        .opt(job.customer_id.as_deref())
        .time(job.created_at)
        .opt_time(job.queued_at)
        .opt_time(job.assigned_at)
        .opt_time(job.started_at)
        .opt_time(job.finished_at)
        .opt_value(job.duration_ms)
        .opt_json(job.error.as_ref())
        .opt_json(job.result.as_ref())
        .opt_json(job.payload.as_ref())
        .value(job.state_rank)
        .time(job.state_at)
        .value(job.state_event_id)
        .time(updated_at)
        .end();
}

/// Columns of the `job_events` COPY, in the order `event_row` writes them.
pub const EVENT_COLUMNS: &str =
    "org_id, event_id, job_id, kind, attempt, at, worker_id, machine_id, data, received_at";

/// A job event as ingest stores it (`store::insert_job_events`).
fn event_row(out: &mut String, org_id: Uuid, event: &JobEvent, received_at: DateTime<Utc>) {
    let job = event.job_ref();
    let data = serde_json::to_value(&event.body).unwrap_or(Value::Null);
    let mut row = CopyRow::new(out);
    row.value(org_id)
        .value(event.event_id)
        .text(&job.job_id)
        .text(event.body.kind())
        .value(job.attempt)
        .time(event.at)
        .opt(job.worker_id.as_deref())
        .opt(job.machine_id.as_deref())
        .json(&data)
        .time(received_at)
        .end();
}

/// Columns of the `machines` and `workers` COPYs, in the order `Generator::machines` and
/// `Generator::workers` write them.
pub const MACHINE_COLUMNS: &str = "org_id, id, hostname, reported_status, host, gpus, labels, \
    uptime_s, started_at, last_seen_at, last_event_at, last_event_id, inventory_at, \
    inventory_event_id, shutdown_at, created_at, updated_at";
pub const WORKER_COLUMNS: &str = "org_id, id, machine_id, status, current_job_id, capabilities, \
    services, version, connected_at, last_seen_at, last_event_at, last_event_id, inventory_at, \
    inventory_event_id, jobs_completed, jobs_failed, created_at, updated_at";

/// One row of COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
struct CopyRow<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> CopyRow<'a> {
    fn new(out: &'a mut String) -> Self {
        Self { out, first: true }
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push('\t');
        }
        self.first = false;
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.separate();
        for c in value.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c => self.out.push(c),
            }
        }
        self
    }

    fn null(&mut self) -> &mut Self {
        self.separate();
        self.out.push_str("\\N");
        self
    }

    fn opt(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// A value whose `Display` needs no escaping (numbers, UUIDs).
    fn value(&mut self, value: impl std::fmt::Display) -> &mut Self {
        self.separate();
        let _ = write!(self.out, "{value}");
        self
    }

    fn opt_value(&mut self, value: Option<impl std::fmt::Display>) -> &mut Self {
        match value {
            Some(v) => self.value(v),
            None => self.null(),
        }
    }

    fn time(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.value(at.format("%Y-%m-%d %H:%M:%S%.6f+00"))
    }

    fn opt_time(&mut self, at: Option<DateTime<Utc>>) -> &mut Self {
        match at {
            Some(at) => self.time(at),
            None => self.null(),
        }
    }

    fn json(&mut self, value: &Value) -> &mut Self {
        self.text(&value.to_string())
    }

    fn opt_json(&mut self, value: Option<&Value>) -> &mut Self {
        match value {
            Some(v) => self.json(v),
            None => self.null(),
        }
    }

    fn end(&mut self) {
        self.out.push('\n');
    }
}
