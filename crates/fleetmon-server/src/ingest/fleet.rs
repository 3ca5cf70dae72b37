//! Machine and worker state from their events, last writer by `(at, event id)` per field group.
//!
//! A batch is first reduced in memory to one patch per machine or worker (the winning event of
//! each group), then merged into the stored row by an upsert that compares the same keys, so
//! the result never depends on arrival order and concurrent batches merge correctly.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use fleetmon_proto::ingest::{EventBody, MachineState, WorkerState};
use serde_json::Value;
use uuid::Uuid;

type Key = (DateTime<Utc>, Uuid);

#[derive(Debug, Clone, PartialEq)]
pub struct MachineInventory {
    pub key: Key,
    pub hostname: Option<String>,
    pub host: Value,
    pub gpus: Value,
    pub labels: Value,
    pub uptime_s: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachinePatch {
    pub status_key: Key,
    pub reported_status: Option<&'static str>,
    pub shutdown_at: Option<DateTime<Utc>>,
    pub inventory: Option<MachineInventory>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInventory {
    pub key: Key,
    pub machine_id: String,
    pub current_job_id: Option<String>,
    pub capabilities: Value,
    pub services: Value,
    pub version: Option<String>,
}

/// Status and inventory come from heartbeats and status events; the counters from job state
/// changes (see `store`), so a patch may carry only counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerPatch {
    pub status: Option<(Key, &'static str)>,
    pub inventory: Option<WorkerInventory>,
    pub seen: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub completed_delta: i64,
    pub failed_delta: i64,
}

fn machine_state(state: MachineState) -> &'static str {
    match state {
        MachineState::Starting => "starting",
        MachineState::Ready => "ready",
        MachineState::Stopping => "stopping",
    }
}

fn worker_state(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Initializing => "initializing",
        WorkerState::Idle => "idle",
        WorkerState::Busy => "busy",
        WorkerState::Paused => "paused",
        WorkerState::Stopping => "stopping",
        WorkerState::Error => "error",
        WorkerState::Maintenance => "maintenance",
    }
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Machine and worker patches of a batch, keyed by id (sorted, so rows are locked in one order).
#[derive(Debug, Default)]
pub struct FleetPatches {
    pub machines: BTreeMap<String, MachinePatch>,
    pub workers: BTreeMap<String, WorkerPatch>,
}

impl FleetPatches {
    pub fn add(&mut self, event_id: Uuid, at: DateTime<Utc>, body: &EventBody) {
        let key = (at, event_id);
        match body {
            EventBody::MachineHeartbeat(e) => {
                let host = e.host.clone().unwrap_or_default();
                let inventory = MachineInventory {
                    key,
                    hostname: host.hostname.clone(),
                    host: json(&host),
                    gpus: json(&e.gpus.clone().unwrap_or_default()),
                    labels: json(&e.labels.clone().unwrap_or_default()),
                    uptime_s: e.uptime_s.map(|u| u as i64),
                    started_at: e.uptime_s.and_then(|u| {
                        at.checked_sub_signed(Duration::try_seconds(i64::try_from(u).ok()?)?)
                    }),
                };
                self.machine(
                    &e.machine_id,
                    key,
                    e.status.map(machine_state),
                    None,
                    Some(inventory),
                );
            }
            EventBody::MachineStatus(e) => self.machine(
                &e.machine_id,
                key,
                Some(machine_state(e.status)),
                None,
                None,
            ),
            EventBody::MachineShutdown(e) => {
                self.machine(&e.machine_id, key, Some("stopping"), Some(at), None)
            }
            EventBody::WorkerHeartbeat(e) => {
                let inventory = WorkerInventory {
                    key,
                    machine_id: e.machine_id.clone(),
                    current_job_id: e.current_job_id.clone(),
                    capabilities: json(&e.capabilities.clone().unwrap_or_default()),
                    services: json(&e.services.clone().unwrap_or_default()),
                    version: e.version.clone(),
                };
                self.worker(&e.worker_id, key, worker_state(e.status), Some(inventory));
            }
            EventBody::WorkerStatus(e) => {
                self.worker(&e.worker_id, key, worker_state(e.status), None)
            }
            _ => {}
        }
    }

    fn machine(
        &mut self,
        id: &str,
        key: Key,
        status: Option<&'static str>,
        shutdown_at: Option<DateTime<Utc>>,
        inventory: Option<MachineInventory>,
    ) {
        let incoming = MachinePatch {
            status_key: key,
            reported_status: status,
            shutdown_at,
            inventory,
            last_seen_at: key.0,
        };
        match self.machines.get_mut(id) {
            None => {
                self.machines.insert(id.to_string(), incoming);
            }
            Some(patch) => {
                patch.last_seen_at = patch.last_seen_at.max(incoming.last_seen_at);
                if incoming.status_key > patch.status_key {
                    patch.status_key = incoming.status_key;
                    patch.reported_status = incoming.reported_status;
                    patch.shutdown_at = incoming.shutdown_at;
                }
                if let Some(new) = incoming.inventory {
                    if patch.inventory.as_ref().is_none_or(|old| new.key > old.key) {
                        patch.inventory = Some(new);
                    }
                }
            }
        }
    }

    fn worker(
        &mut self,
        id: &str,
        key: Key,
        status: &'static str,
        inventory: Option<WorkerInventory>,
    ) {
        let patch = self.workers.entry(id.to_string()).or_default();
        patch.seen = Some(match patch.seen {
            None => (key.0, key.0),
            Some((first, last)) => (first.min(key.0), last.max(key.0)),
        });
        if patch.status.is_none_or(|(old, _)| key > old) {
            patch.status = Some((key, status));
        }
        if let Some(new) = inventory {
            if patch.inventory.as_ref().is_none_or(|old| new.key > old.key) {
                patch.inventory = Some(new);
            }
        }
    }

    /// Adds a job's effect on its worker's counters.
    pub fn count(&mut self, worker_id: &str, completed: i64, failed: i64) {
        if completed == 0 && failed == 0 {
            return;
        }
        let patch = self.workers.entry(worker_id.to_string()).or_default();
        patch.completed_delta += completed;
        patch.failed_delta += failed;
    }
}
