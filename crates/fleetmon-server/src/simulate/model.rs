//! The simulated fleet: machines with GPUs, workers taking jobs from a queue, jobs with
//! realistic durations and failures, machines that go quiet, drop off and come back. Time is
//! given by the caller, so the same seed and the same clock give the same events.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use fleetmon_proto::ingest::*;
use serde_json::json;

use super::rng::Rng;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetShape {
    pub machines: usize,
    pub workers_per_machine: usize,
    /// Jobs arriving per second, on average (a Poisson process).
    pub jobs_per_second: f64,
    pub seed: u64,
}

const HEARTBEAT_EVERY: i64 = 5;
const PROGRESS_EVERY: f64 = 2.0;

/// A kind of job: how long it takes (log-normal median and spread, seconds) and what service runs it.
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
        weight: 0.35,
    },
    JobType {
        name: "image.upscale",
        service: "diffusion",
        median_s: 3.0,
        sigma: 0.3,
        weight: 0.15,
    },
    JobType {
        name: "llm.infer",
        service: "llm",
        median_s: 2.0,
        sigma: 0.6,
        weight: 0.3,
    },
    JobType {
        name: "video.encode",
        service: "ffmpeg",
        median_s: 20.0,
        sigma: 0.5,
        weight: 0.15,
    },
    JobType {
        name: "model.finetune",
        service: "trainer",
        median_s: 60.0,
        sigma: 0.3,
        weight: 0.05,
    },
];

/// The steps of a multi-step workflow, by job type name.
const WORKFLOW: &[&str] = &["image.generate", "image.upscale", "video.encode"];

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
        0.01,
    ),
];
const TIMEOUT_PROBABILITY: f64 = 0.015;
const CUSTOMERS: &[&str] = &["acme", "globex", "initech", "umbrella", "hooli"];
const GPU_MODELS: &[(&str, u64)] = &[
    ("NVIDIA A100 80GB", 81_920),
    ("NVIDIA L4", 23_034),
    ("NVIDIA H100 80GB", 81_559),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reach {
    Online,
    /// Still running but its reports do not arrive (a network partition): goes stale, then offline.
    Quiet {
        until: DateTime<Utc>,
    },
    /// Shut down; boots again at `until`.
    Down {
        until: DateTime<Utc>,
    },
}

struct Gpu {
    model: &'static str,
    memory_total_mb: u64,
}

struct Machine {
    id: String,
    gpus: Vec<Gpu>,
    reach: Reach,
    booted_at: DateTime<Utc>,
    next_heartbeat: DateTime<Utc>,
}

struct Worker {
    id: String,
    machine: usize,
    gpu_index: u32,
    job: Option<usize>,
}

enum Outcome {
    Complete,
    Fail {
        kind: &'static str,
        reason: &'static str,
        message: &'static str,
        retryable: bool,
    },
    Timeout,
}

struct Running {
    worker: usize,
    started: DateTime<Utc>,
    ends: DateTime<Utc>,
    next_progress: DateTime<Utc>,
    outcome: Outcome,
}

struct Job {
    id: String,
    job_type: usize,
    workflow: Option<(String, usize)>,
    attempt: u32,
    max_retries: u32,
    running: Option<Running>,
}

/// Counts of what the simulation has done, for progress output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub cancelled: u64,
    pub events: u64,
}

pub struct Fleet {
    rng: Rng,
    shape: FleetShape,
    machines: Vec<Machine>,
    workers: Vec<Worker>,
    jobs: BTreeMap<usize, Job>,
    queue: VecDeque<usize>,
    next_job: usize,
    next_arrival: Option<DateTime<Utc>>,
    last_tick: Option<DateTime<Utc>>,
    pub tally: Tally,
}

fn secs(s: f64) -> Duration {
    Duration::milliseconds((s * 1000.0) as i64)
}

impl Fleet {
    pub fn new(shape: FleetShape) -> Self {
        let mut rng = Rng::new(shape.seed);
        let mut machines = Vec::new();
        let mut workers = Vec::new();
        for m in 0..shape.machines {
            let (model, memory) = *rng.pick(GPU_MODELS);
            let gpus = (0..shape.workers_per_machine.max(1))
                .map(|_| Gpu {
                    model,
                    memory_total_mb: memory,
                })
                .collect();
            machines.push(Machine {
                id: format!("gpu-node-{:03}", m + 1),
                gpus,
                reach: Reach::Online,
                booted_at: DateTime::<Utc>::MIN_UTC,
                next_heartbeat: DateTime::<Utc>::MIN_UTC,
            });
            for w in 0..shape.workers_per_machine {
                workers.push(Worker {
                    id: format!("gpu-node-{:03}-w{w}", m + 1),
                    machine: m,
                    gpu_index: w as u32,
                    job: None,
                });
            }
        }
        Self {
            rng,
            shape,
            machines,
            workers,
            jobs: BTreeMap::new(),
            queue: VecDeque::new(),
            next_job: 1,
            next_arrival: None,
            last_tick: None,
            tally: Tally::default(),
        }
    }

    fn event(&mut self, at: DateTime<Utc>, body: EventBody) -> Event {
        self.tally.events += 1;
        Event {
            id: self.rng.uuid(),
            at,
            body,
        }
    }

    fn job_ref(&self, job: usize, now_worker: Option<usize>) -> JobRef {
        let j = &self.jobs[&job];
        let worker = now_worker.map(|w| &self.workers[w]);
        JobRef {
            job_id: j.id.clone(),
            attempt: j.attempt,
            worker_id: worker.map(|w| w.id.clone()),
            machine_id: worker.map(|w| self.machines[w.machine].id.clone()),
        }
    }

    /// Advances the fleet to `now` and returns what its agents report.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        let dt = self
            .last_tick
            .map_or(0.0, |last| (now - last).num_milliseconds() as f64 / 1000.0);
        self.last_tick = Some(now);
        let mut out = Vec::new();
        if self
            .machines
            .iter()
            .all(|m| m.booted_at == DateTime::<Utc>::MIN_UTC)
        {
            for m in 0..self.machines.len() {
                self.boot(m, now, &mut out);
            }
        }
        self.reachability(now, dt, &mut out);
        self.arrivals(now, &mut out);
        self.schedule(now, &mut out);
        self.run_jobs(now, &mut out);
        self.heartbeats(now, &mut out);
        // What a quiet machine's agents said never arrives.
        out
    }

    fn boot(&mut self, m: usize, now: DateTime<Utc>, out: &mut Vec<Event>) {
        self.machines[m].booted_at = now;
        self.machines[m].reach = Reach::Online;
        // Spread heartbeats over the interval, as real agents started at different times are.
        self.machines[m].next_heartbeat = now + secs(self.rng.range(0.0, HEARTBEAT_EVERY as f64));
        let id = self.machines[m].id.clone();
        let e = self.event(
            now,
            EventBody::MachineStatus(MachineStatus {
                machine_id: id,
                status: MachineState::Starting,
                message: Some("agent started".into()),
            }),
        );
        out.push(e);
        for w in 0..self.workers.len() {
            if self.workers[w].machine == m {
                let body = EventBody::WorkerStatus(WorkerStatus {
                    worker_id: self.workers[w].id.clone(),
                    machine_id: Some(self.machines[m].id.clone()),
                    status: WorkerState::Initializing,
                    message: Some("loading models".into()),
                });
                let e = self.event(now, body);
                out.push(e);
            }
        }
    }

    fn reachability(&mut self, now: DateTime<Utc>, dt: f64, out: &mut Vec<Event>) {
        for m in 0..self.machines.len() {
            match self.machines[m].reach {
                Reach::Online => {
                    // Rare per machine, so a fleet of a few dozen shows one every few minutes.
                    if self.rng.chance(dt / 600.0) {
                        let until = now + secs(self.rng.range(20.0, 90.0));
                        self.machines[m].reach = Reach::Quiet { until };
                    } else if self.rng.chance(dt / 1200.0) {
                        self.shut_down(m, now, out);
                    }
                }
                Reach::Quiet { until } if now >= until => self.machines[m].reach = Reach::Online,
                Reach::Down { until } if now >= until => self.boot(m, now, out),
                _ => {}
            }
        }
    }

    fn shut_down(&mut self, m: usize, now: DateTime<Utc>, out: &mut Vec<Event>) {
        let until = now + secs(self.rng.range(30.0, 120.0));
        self.machines[m].reach = Reach::Down { until };
        // Jobs on it are lost to a network error and retried elsewhere.
        for w in 0..self.workers.len() {
            if self.workers[w].machine != m {
                continue;
            }
            if let Some(job) = self.workers[w].job.take() {
                let failure = Outcome::Fail {
                    kind: "network",
                    reason: "worker_lost",
                    message: "worker went away during the job",
                    retryable: true,
                };
                self.finish(job, w, failure, now, out);
            }
        }
        let id = self.machines[m].id.clone();
        let e = self.event(
            now,
            EventBody::MachineShutdown(MachineShutdown {
                machine_id: id,
                reason: Some("maintenance reboot".into()),
            }),
        );
        out.push(e);
    }

    fn arrivals(&mut self, now: DateTime<Utc>, out: &mut Vec<Event>) {
        if self.shape.jobs_per_second <= 0.0 {
            return;
        }
        let mean_gap = 1.0 / self.shape.jobs_per_second;
        let mut next = self.next_arrival.unwrap_or(now);
        while next <= now {
            let job_type = self.pick_job_type();
            let workflow = self
                .rng
                .chance(0.2)
                .then(|| (format!("wf-{}", self.rng.uuid().simple()), 0));
            let job_type = workflow
                .as_ref()
                .map_or(job_type, |_| index_of(WORKFLOW[0]));
            self.submit(job_type, workflow, next, out);
            next += secs(self.rng.exponential(mean_gap));
        }
        self.next_arrival = Some(next);
    }

    fn pick_job_type(&mut self) -> usize {
        let mut roll = self.rng.unit() * JOB_TYPES.iter().map(|t| t.weight).sum::<f64>();
        for (i, t) in JOB_TYPES.iter().enumerate() {
            roll -= t.weight;
            if roll <= 0.0 {
                return i;
            }
        }
        JOB_TYPES.len() - 1
    }

    fn submit(
        &mut self,
        job_type: usize,
        workflow: Option<(String, usize)>,
        at: DateTime<Utc>,
        out: &mut Vec<Event>,
    ) {
        let index = self.next_job;
        self.next_job += 1;
        let id = format!("job-{:08x}", self.rng.next_u64() as u32);
        let customer = self.rng.pick(CUSTOMERS).to_string();
        let t = &JOB_TYPES[job_type];
        let body = EventBody::JobSubmitted(JobSubmitted {
            job: JobRef::new(id.clone()),
            workflow_id: workflow.as_ref().map(|(w, _)| w.clone()),
            name: Some(format!("{} #{index}", t.name)),
            job_type: Some(t.name.to_string()),
            priority: Some(self.rng.index(10) as i32),
            customer_id: Some(customer),
            max_retries: Some(2),
            payload: Some(json!({"service": t.service, "step": workflow.as_ref().map(|(_, s)| s)})),
        });
        let submitted = self.event(at, body);
        out.push(submitted);
        self.jobs.insert(
            index,
            Job {
                id: id.clone(),
                job_type,
                workflow,
                attempt: 1,
                max_retries: 2,
                running: None,
            },
        );
        let queued = self.event(at, EventBody::JobQueued(JobRef::new(id)));
        out.push(queued);
        self.queue.push_back(index);
        self.tally.submitted += 1;
        // Now and then a customer changes their mind while the job waits.
        if self.rng.chance(0.005) {
            self.queue.pop_back();
            let reason = Some("cancelled by the customer".to_string());
            let job = self.job_ref(index, None);
            let e = self.event(at, EventBody::JobCancelled(JobEnded { job, reason }));
            out.push(e);
            self.jobs.remove(&index);
            self.tally.cancelled += 1;
        }
    }

    fn schedule(&mut self, now: DateTime<Utc>, out: &mut Vec<Event>) {
        for w in 0..self.workers.len() {
            if self.queue.is_empty() {
                return;
            }
            let machine = &self.machines[self.workers[w].machine];
            if self.workers[w].job.is_some()
                || matches!(machine.reach, Reach::Down { .. })
                || now < machine.booted_at + secs(3.0)
            {
                continue;
            }
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            self.workers[w].job = Some(job);
            let t = &JOB_TYPES[self.jobs[&job].job_type];
            let mut duration = self
                .rng
                .lognormal(t.median_s, t.sigma)
                .clamp(0.2, t.median_s * 8.0);
            let outcome = if self.rng.chance(TIMEOUT_PROBABILITY) {
                duration = t.median_s * 5.0;
                Outcome::Timeout
            } else {
                let roll = self.rng.unit();
                let mut acc = 0.0;
                let mut outcome = Outcome::Complete;
                for &(kind, reason, message, retryable, p) in FAILURES {
                    acc += p;
                    if roll < acc {
                        duration *= self.rng.range(0.1, 0.9);
                        outcome = Outcome::Fail {
                            kind,
                            reason,
                            message,
                            retryable,
                        };
                        break;
                    }
                }
                outcome
            };
            let assigned = self.job_ref(job, Some(w));
            let e = self.event(now, EventBody::JobAssigned(assigned.clone()));
            out.push(e);
            let started_at = now + secs(0.05);
            let e = self.event(started_at, EventBody::JobStarted(assigned));
            out.push(e);
            if let Some(j) = self.jobs.get_mut(&job) {
                j.running = Some(Running {
                    worker: w,
                    started: started_at,
                    ends: started_at + secs(duration),
                    next_progress: started_at + secs(PROGRESS_EVERY),
                    outcome,
                });
            }
        }
    }

    fn run_jobs(&mut self, now: DateTime<Utc>, out: &mut Vec<Event>) {
        let running: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.running.is_some())
            .map(|(i, _)| *i)
            .collect();
        for job in running {
            let Some(run) = self.jobs.get_mut(&job).and_then(|j| j.running.as_mut()) else {
                continue;
            };
            let worker = run.worker;
            if now >= run.ends {
                let run = self
                    .jobs
                    .get_mut(&job)
                    .and_then(|j| j.running.take())
                    .expect("running");
                self.workers[worker].job = None;
                self.finish(job, worker, run.outcome, run.ends, out);
            } else if now >= run.next_progress {
                let total = (run.ends - run.started).num_milliseconds().max(1) as f64;
                let done = (now - run.started).num_milliseconds() as f64;
                run.next_progress = now + secs(PROGRESS_EVERY);
                let progress = (100.0 * done / total).clamp(0.0, 99.0).floor();
                let job_ref = self.job_ref(job, Some(worker));
                let e = self.event(
                    now,
                    EventBody::JobProgress(JobProgress {
                        job: job_ref,
                        progress,
                        message: Some(format!("step {:.0}%", progress)),
                    }),
                );
                out.push(e);
            }
        }
    }

    fn finish(
        &mut self,
        job: usize,
        worker: usize,
        outcome: Outcome,
        at: DateTime<Utc>,
        out: &mut Vec<Event>,
    ) {
        let job_ref = self.job_ref(job, Some(worker));
        let (attempt, max_retries) = (self.jobs[&job].attempt, self.jobs[&job].max_retries);
        let started = self.jobs[&job].running.as_ref().map(|r| r.started);
        match outcome {
            Outcome::Complete => {
                let duration_ms = started.map(|s| (at - s).num_milliseconds().max(0) as u64);
                let e = self.event(
                    at,
                    EventBody::JobCompleted(JobCompleted {
                        job: job_ref,
                        result: Some(
                            json!({"output": format!("s3://results/{}", self.jobs[&job].id)}),
                        ),
                        duration_ms,
                    }),
                );
                out.push(e);
                self.tally.completed += 1;
                self.next_workflow_step(job, at, out);
                self.jobs.remove(&job);
            }
            Outcome::Timeout => {
                let e = self.event(
                    at,
                    EventBody::JobTimeout(JobEnded {
                        job: job_ref,
                        reason: Some("exceeded the job type's deadline".into()),
                    }),
                );
                out.push(e);
                self.tally.failed += 1;
                self.jobs.remove(&job);
            }
            Outcome::Fail {
                kind,
                reason,
                message,
                retryable,
            } => {
                let will_retry = retryable && attempt <= max_retries;
                let error = JobError {
                    kind: Some(kind.into()),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    cause: None,
                };
                let e = self.event(
                    at,
                    EventBody::JobFailed(JobFailed {
                        job: job_ref,
                        error,
                        will_retry,
                    }),
                );
                out.push(e);
                if will_retry {
                    let j = self.jobs.get_mut(&job).expect("job");
                    j.attempt += 1;
                    j.running = None;
                    let retry = JobRef {
                        job_id: j.id.clone(),
                        attempt: j.attempt,
                        worker_id: None,
                        machine_id: None,
                    };
                    let e = self.event(at + secs(0.5), EventBody::JobRetried(retry));
                    out.push(e);
                    self.queue.push_back(job);
                    self.tally.retried += 1;
                } else {
                    self.tally.failed += 1;
                    self.jobs.remove(&job);
                }
            }
        }
    }

    fn next_workflow_step(&mut self, job: usize, at: DateTime<Utc>, out: &mut Vec<Event>) {
        let Some((workflow, step)) = self.jobs[&job].workflow.clone() else {
            return;
        };
        if let Some(next) = WORKFLOW.get(step + 1) {
            self.submit(index_of(next), Some((workflow, step + 1)), at, out);
        }
    }

    fn heartbeats(&mut self, now: DateTime<Utc>, out: &mut Vec<Event>) {
        for m in 0..self.machines.len() {
            if self.machines[m].reach != Reach::Online || now < self.machines[m].next_heartbeat {
                continue;
            }
            self.machines[m].next_heartbeat = now + Duration::seconds(HEARTBEAT_EVERY);
            let workers: Vec<usize> = (0..self.workers.len())
                .filter(|&w| self.workers[w].machine == m)
                .collect();
            let mut gpus = Vec::new();
            let mut samples = Vec::new();
            for (i, gpu) in self.machines[m].gpus.iter().enumerate() {
                let busy = workers.iter().any(|&w| {
                    self.workers[w].gpu_index == i as u32 && self.workers[w].job.is_some()
                });
                let utilization = if busy {
                    70.0 + 28.0 * self.rng.unit()
                } else {
                    3.0 * self.rng.unit()
                };
                let memory_used = (gpu.memory_total_mb as f64
                    * if busy {
                        self.rng.range(0.45, 0.92)
                    } else {
                        0.02
                    }) as u64;
                let temperature = 35.0 + utilization * 0.45 + self.rng.range(-1.5, 1.5);
                let power = 60.0 + utilization * 3.0;
                let label = [("gpu".to_string(), i.to_string())]
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>();
                for (name, value) in [
                    ("gpu_utilization_pct", utilization),
                    ("gpu_memory_used_mb", memory_used as f64),
                    ("gpu_temperature_c", temperature),
                    ("gpu_power_w", power),
                ] {
                    samples.push(Sample {
                        name: name.into(),
                        value: (value * 10.0).round() / 10.0,
                        labels: label.clone(),
                        at: None,
                    });
                }
                gpus.push(fleetmon_proto::ingest::Gpu {
                    index: i as u32,
                    name: Some(gpu.model.to_string()),
                    memory_total_mb: Some(gpu.memory_total_mb),
                    memory_used_mb: Some(memory_used),
                    utilization_pct: Some((utilization * 10.0).round() / 10.0),
                    temperature_c: Some(temperature.round()),
                    power_w: Some(power.round()),
                });
            }
            let machine_id = self.machines[m].id.clone();
            let uptime = (now - self.machines[m].booted_at).num_seconds().max(0) as u64;
            let status = if uptime < 3 {
                MachineState::Starting
            } else {
                MachineState::Ready
            };
            let body = EventBody::MachineHeartbeat(MachineHeartbeat {
                machine_id: machine_id.clone(),
                status: Some(status),
                host: Some(HostInfo {
                    hostname: Some(format!("{machine_id}.fleet.internal")),
                    os: Some("Ubuntu 22.04".into()),
                    cpu_cores: Some(32),
                    ram_gb: Some(256.0),
                    ip: Some(format!("10.0.{}.{}", m / 250, m % 250 + 2)),
                }),
                gpus: Some(gpus),
                labels: Some(
                    [(
                        "region".to_string(),
                        if m % 2 == 0 { "us-east" } else { "eu-west" }.to_string(),
                    )]
                    .into(),
                ),
                uptime_s: Some(uptime),
            });
            let e = self.event(now, body);
            out.push(e);
            for &w in &workers {
                let job = self.workers[w].job;
                let service = job.map(|j| JOB_TYPES[self.jobs[&j].job_type].service);
                let status = if uptime < 3 {
                    WorkerState::Initializing
                } else if job.is_some() {
                    WorkerState::Busy
                } else {
                    WorkerState::Idle
                };
                let services = JOB_TYPES
                    .iter()
                    .map(|t| {
                        (
                            t.service.to_string(),
                            if Some(t.service) == service {
                                ServiceState::Active
                            } else {
                                ServiceState::Idle
                            },
                        )
                    })
                    .collect();
                let body = EventBody::WorkerHeartbeat(WorkerHeartbeat {
                    worker_id: self.workers[w].id.clone(),
                    machine_id: machine_id.clone(),
                    status,
                    current_job_id: job.map(|j| self.jobs[&j].id.clone()),
                    capabilities: Some(Capabilities {
                        services: JOB_TYPES
                            .iter()
                            .map(|t| t.service.to_string())
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                        models: vec!["sdxl-1.0".into(), "llama-3-8b".into()],
                        gpu_index: Some(self.workers[w].gpu_index),
                    }),
                    services: Some(services),
                    version: Some("2.4.1".into()),
                });
                let e = self.event(now, body);
                out.push(e);
            }
            let e = self.event(
                now,
                EventBody::Metrics(Metrics {
                    machine_id,
                    worker_id: None,
                    samples,
                }),
            );
            out.push(e);
        }
    }
}

fn index_of(name: &str) -> usize {
    JOB_TYPES
        .iter()
        .position(|t| t.name == name)
        .expect("known job type")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, seconds: i64) -> (Vec<Event>, Tally) {
        let shape = FleetShape {
            machines: 8,
            workers_per_machine: 4,
            jobs_per_second: 2.0,
            seed,
        };
        let mut fleet = Fleet::new(shape);
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut events = Vec::new();
        for tick in 0..seconds * 4 {
            events.extend(fleet.tick(start + Duration::milliseconds(tick * 250)));
        }
        (events, fleet.tally.clone())
    }

    #[test]
    fn the_same_seed_reproduces_the_same_fleet() {
        let (a, _) = run(42, 120);
        let (b, _) = run(42, 120);
        assert_eq!(a, b);
        let (c, _) = run(43, 120);
        assert_ne!(a, c);
    }

    #[test]
    fn a_fleet_does_what_fleets_do() {
        let (events, tally) = run(7, 600);
        let kinds: std::collections::BTreeSet<String> = events
            .iter()
            .map(|e| {
                serde_json::to_value(&e.body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for kind in EVENT_TYPES {
            assert!(
                kinds.contains(*kind),
                "{kind} never happened in 10 simulated minutes"
            );
        }
        assert!(tally.submitted > 1000 && tally.completed > 500, "{tally:?}");
        assert!(tally.retried > 0 && tally.failed > 0, "{tally:?}");
        assert_eq!(tally.events as usize, events.len());
        // Every event id is unique.
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), events.len());
    }
}
