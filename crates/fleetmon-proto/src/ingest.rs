//! The ingest protocol: what agents send to `POST /api/v1/ingest` and what they get back.
//!
//! Every event is a JSON object with an `id` (a UUID the sender chooses: the idempotency key),
//! a `type`, an `at` (RFC 3339, the time at the source) and the fields of its type.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One event, as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: EventBody,
}

/// The type-specific part of an event; `type` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "machine.heartbeat")]
    MachineHeartbeat(MachineHeartbeat),
    #[serde(rename = "machine.status")]
    MachineStatus(MachineStatus),
    #[serde(rename = "machine.shutdown")]
    MachineShutdown(MachineShutdown),
    #[serde(rename = "worker.heartbeat")]
    WorkerHeartbeat(WorkerHeartbeat),
    #[serde(rename = "worker.status")]
    WorkerStatus(WorkerStatus),
    #[serde(rename = "job.submitted")]
    JobSubmitted(JobSubmitted),
    #[serde(rename = "job.queued")]
    JobQueued(JobRef),
    #[serde(rename = "job.assigned")]
    JobAssigned(JobRef),
    #[serde(rename = "job.started")]
    JobStarted(JobRef),
    #[serde(rename = "job.progress")]
    JobProgress(JobProgress),
    #[serde(rename = "job.completed")]
    JobCompleted(JobCompleted),
    #[serde(rename = "job.failed")]
    JobFailed(JobFailed),
    #[serde(rename = "job.retried")]
    JobRetried(JobRef),
    #[serde(rename = "job.cancelled")]
    JobCancelled(JobEnded),
    #[serde(rename = "job.timeout")]
    JobTimeout(JobEnded),
    #[serde(rename = "metrics")]
    Metrics(Metrics),
}

impl EventBody {
    /// The event's `type`, as spelled on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MachineHeartbeat(_) => "machine.heartbeat",
            Self::MachineStatus(_) => "machine.status",
            Self::MachineShutdown(_) => "machine.shutdown",
            Self::WorkerHeartbeat(_) => "worker.heartbeat",
            Self::WorkerStatus(_) => "worker.status",
            Self::JobSubmitted(_) => "job.submitted",
            Self::JobQueued(_) => "job.queued",
            Self::JobAssigned(_) => "job.assigned",
            Self::JobStarted(_) => "job.started",
            Self::JobProgress(_) => "job.progress",
            Self::JobCompleted(_) => "job.completed",
            Self::JobFailed(_) => "job.failed",
            Self::JobRetried(_) => "job.retried",
            Self::JobCancelled(_) => "job.cancelled",
            Self::JobTimeout(_) => "job.timeout",
            Self::Metrics(_) => "metrics",
        }
    }

    /// The job a job event is about; `None` for machine, worker and metrics events.
    pub fn job(&self) -> Option<&JobRef> {
        match self {
            Self::JobSubmitted(e) => Some(&e.job),
            Self::JobProgress(e) => Some(&e.job),
            Self::JobCompleted(e) => Some(&e.job),
            Self::JobFailed(e) => Some(&e.job),
            Self::JobCancelled(e) | Self::JobTimeout(e) => Some(&e.job),
            Self::JobQueued(e)
            | Self::JobAssigned(e)
            | Self::JobStarted(e)
            | Self::JobRetried(e) => Some(e),
            Self::MachineHeartbeat(_)
            | Self::MachineStatus(_)
            | Self::MachineShutdown(_)
            | Self::WorkerHeartbeat(_)
            | Self::WorkerStatus(_)
            | Self::Metrics(_) => None,
        }
    }
}

/// Every `type` the server accepts, in wire spelling.
pub const EVENT_TYPES: &[&str] = &[
    "machine.heartbeat",
    "machine.status",
    "machine.shutdown",
    "worker.heartbeat",
    "worker.status",
    "job.submitted",
    "job.queued",
    "job.assigned",
    "job.started",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.retried",
    "job.cancelled",
    "job.timeout",
    "metrics",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    Starting,
    Ready,
    Stopping,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gpu {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineHeartbeat {
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MachineState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Vec<Gpu>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineStatus {
    pub machine_id: String,
    pub status: MachineState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineShutdown {
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Initializing,
    Idle,
    Busy,
    Paused,
    Stopping,
    Error,
    Maintenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Starting,
    Idle,
    Active,
    Error,
    Offline,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_index: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerHeartbeat {
    pub worker_id: String,
    pub machine_id: String,
    pub status: WorkerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, ServiceState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerStatus {
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    pub status: WorkerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn first_attempt() -> u32 {
    1
}

fn is_first_attempt(attempt: &u32) -> bool {
    *attempt == 1
}

/// Fields every job event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRef {
    pub job_id: String,
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
}

impl JobRef {
    pub fn new(job_id: impl Into<String>) -> Self {
        Self {
            job_id: job_id.into(),
            attempt: 1,
            worker_id: None,
            machine_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobSubmitted {
    #[serde(flatten)]
    pub job: JobRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobProgress {
    #[serde(flatten)]
    pub job: JobRef,
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCompleted {
    #[serde(flatten)]
    pub job: JobRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobError {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What led to the error, as the agent knows it: a message, or an object such as another
    /// `{type, reason, message, cause}`. Kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobFailed {
    #[serde(flatten)]
    pub job: JobRef,
    pub error: JobError,
    #[serde(default)]
    pub will_retry: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEnded {
    #[serde(flatten)]
    pub job: JobRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sample {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Defaults to the event's `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metrics {
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    pub samples: Vec<Sample>,
}

/// A JSON batch: `{"events": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Batch {
    pub events: Vec<Event>,
}

/// The answer to an ingest request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestResponse {
    /// Events stored by this request.
    pub accepted: u32,
    /// Events already stored by an earlier request (same `id`): safe to forget.
    pub duplicates: u32,
    /// Events refused, by their index in the request; the others were processed.
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    pub index: u32,
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_the_wire_type() {
        let job = JobRef::new("j");
        let ended = JobEnded {
            job: job.clone(),
            reason: None,
        };
        let bodies = [
            EventBody::MachineStatus(MachineStatus {
                machine_id: "m".into(),
                status: MachineState::Ready,
                message: None,
            }),
            EventBody::MachineShutdown(MachineShutdown {
                machine_id: "m".into(),
                reason: None,
            }),
            EventBody::WorkerStatus(WorkerStatus {
                worker_id: "w".into(),
                machine_id: None,
                status: WorkerState::Idle,
                message: None,
            }),
            EventBody::JobQueued(job.clone()),
            EventBody::JobAssigned(job.clone()),
            EventBody::JobStarted(job.clone()),
            EventBody::JobRetried(job.clone()),
            EventBody::JobCancelled(ended.clone()),
            EventBody::JobTimeout(ended),
            EventBody::JobProgress(JobProgress {
                job: job.clone(),
                progress: 1.0,
                message: None,
            }),
            EventBody::Metrics(Metrics {
                machine_id: "m".into(),
                worker_id: None,
                samples: vec![],
            }),
        ];
        for body in bodies {
            let wire = serde_json::to_value(&body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(body.kind(), wire);
            assert!(EVENT_TYPES.contains(&body.kind()));
            assert_eq!(body.job().is_some(), wire.starts_with("job."));
        }
    }
}
