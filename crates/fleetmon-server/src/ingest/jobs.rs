//! The current state of a job, derived from its events.
//!
//! Events are ordered by `(attempt, rank, at, event_id)`, rank being pending < queued < assigned <
//! in progress < terminal. The state is the fold of a job's events in that order, so it depends
//! only on the *set* of events: never on arrival order, never on duplicates. When new events all
//! sort after the last one folded (the usual case) the fold simply continues from the stored row;
//! when one sorts earlier (a late completion of an old attempt, a start after its completion),
//! the caller refolds the job's whole history.

use chrono::{DateTime, Utc};
use fleetmon_proto::ingest::{EventBody, JobRef};
use serde_json::{json, Value};
use uuid::Uuid;

/// A job event as stored: enough to fold it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub event_id: Uuid,
    pub at: DateTime<Utc>,
    pub body: EventBody,
}

/// The sort key of a job event.
pub type Key = (i32, i16, DateTime<Utc>, Uuid);

impl JobEvent {
    pub fn job_ref(&self) -> &JobRef {
        self.body
            .job()
            .expect("only job events are folded into jobs")
    }

    /// Status this event puts the job in, and its rank.
    pub fn status(&self) -> (&'static str, i16) {
        match &self.body {
            EventBody::JobSubmitted(_) => ("pending", 0),
            EventBody::JobQueued(_) | EventBody::JobRetried(_) => ("queued", 1),
            EventBody::JobAssigned(_) => ("assigned", 2),
            EventBody::JobStarted(_) | EventBody::JobProgress(_) => ("in_progress", 3),
            EventBody::JobCompleted(_) => ("completed", 4),
            EventBody::JobFailed(_) => ("failed", 4),
            EventBody::JobCancelled(_) => ("cancelled", 4),
            EventBody::JobTimeout(_) => ("timeout", 4),
            _ => unreachable!("not a job event"),
        }
    }

    pub fn key(&self) -> Key {
        (
            self.job_ref().attempt as i32,
            self.status().1,
            self.at,
            self.event_id,
        )
    }
}

/// A row of `jobs`, minus `org_id` and `updated_at`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub workflow_id: Option<String>,
    pub name: Option<String>,
    pub job_type: Option<String>,
    pub status: String,
    pub priority: Option<i32>,
    pub attempt: i32,
    pub max_retries: Option<i32>,
    pub progress: Option<f32>,
    pub progress_message: Option<String>,
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
    pub customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<Value>,
    pub result: Option<Value>,
    pub payload: Option<Value>,
    pub state_rank: i16,
    pub state_at: DateTime<Utc>,
    pub state_event_id: Uuid,
}

impl JobRow {
    pub fn key(&self) -> Key {
        (
            self.attempt,
            self.state_rank,
            self.state_at,
            self.state_event_id,
        )
    }

    /// Folds `events`, which must all sort after `prev`'s key, into `prev` (or a new job).
    pub fn fold(prev: Option<JobRow>, events: &mut [JobEvent]) -> Option<JobRow> {
        events.sort_by_key(JobEvent::key);
        let mut row = prev;
        for event in events.iter() {
            match &mut row {
                Some(row) => row.apply(event),
                None => row = Some(Self::first(event)),
            }
        }
        row
    }

    fn first(event: &JobEvent) -> Self {
        let job = event.job_ref();
        let mut row = Self {
            id: job.job_id.clone(),
            workflow_id: None,
            name: None,
            job_type: None,
            status: String::new(),
            priority: None,
            attempt: job.attempt as i32,
            max_retries: None,
            progress: None,
            progress_message: None,
            worker_id: None,
            machine_id: None,
            customer_id: None,
            created_at: event.at,
            queued_at: None,
            assigned_at: None,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            result: None,
            payload: None,
            state_rank: 0,
            state_at: event.at,
            state_event_id: event.event_id,
        };
        row.apply(event);
        row
    }

    fn apply(&mut self, event: &JobEvent) {
        let job = event.job_ref();
        let attempt = job.attempt as i32;
        if attempt > self.attempt {
            // A new attempt: what belonged to the previous one no longer describes the job.
            self.attempt = attempt;
            self.progress = None;
            self.progress_message = None;
            self.worker_id = None;
            self.machine_id = None;
            self.queued_at = None;
            self.assigned_at = None;
            self.started_at = None;
            self.finished_at = None;
            self.duration_ms = None;
            self.error = None;
            self.result = None;
        }
        let (status, rank) = event.status();
        self.status = status.to_string();
        self.state_rank = rank;
        self.state_at = event.at;
        self.state_event_id = event.event_id;
        self.created_at = self.created_at.min(event.at);
        if let Some(worker) = &job.worker_id {
            self.worker_id = Some(worker.clone());
        }
        if let Some(machine) = &job.machine_id {
            self.machine_id = Some(machine.clone());
        }
        match &event.body {
            EventBody::JobSubmitted(e) => {
                set(&mut self.workflow_id, &e.workflow_id);
                set(&mut self.name, &e.name);
                set(&mut self.job_type, &e.job_type);
                set(&mut self.customer_id, &e.customer_id);
                set(&mut self.payload, &e.payload);
                set(&mut self.priority, &e.priority);
                set(&mut self.max_retries, &e.max_retries.map(|n| n as i32));
            }
            EventBody::JobQueued(_) | EventBody::JobRetried(_) => {
                self.queued_at = self.queued_at.or(Some(event.at));
            }
            EventBody::JobAssigned(_) => self.assigned_at = self.assigned_at.or(Some(event.at)),
            EventBody::JobStarted(_) => self.started_at = self.started_at.or(Some(event.at)),
            EventBody::JobProgress(e) => {
                self.progress = Some(e.progress as f32);
                self.progress_message = e.message.clone();
            }
            EventBody::JobCompleted(e) => {
                self.finished_at = Some(event.at);
                self.progress = Some(100.0);
                self.error = None;
                set(&mut self.result, &e.result);
                self.duration_ms = e
                    .duration_ms
                    .map(|d| d as i64)
                    .or_else(|| self.elapsed_ms(event.at));
            }
            EventBody::JobFailed(e) => {
                self.finished_at = Some(event.at);
                self.result = None;
                self.duration_ms = self.elapsed_ms(event.at);
                let mut error = serde_json::to_value(&e.error).unwrap_or(Value::Null);
                error["will_retry"] = Value::Bool(e.will_retry);
                self.error = Some(error);
            }
            EventBody::JobCancelled(e) | EventBody::JobTimeout(e) => {
                self.finished_at = Some(event.at);
                self.result = None;
                self.duration_ms = self.elapsed_ms(event.at);
                self.error = Some(json!({"type": status, "reason": e.reason}));
            }
            _ => unreachable!("not a job event"),
        }
    }

    fn elapsed_ms(&self, end: DateTime<Utc>) -> Option<i64> {
        self.started_at
            .map(|start| (end - start).num_milliseconds().max(0))
    }

    /// Whether this state counts towards its worker's completed or failed jobs.
    pub fn counts(&self) -> (i64, i64) {
        match self.status.as_str() {
            "completed" => (1, 0),
            "failed" | "timeout" => (0, 1),
            _ => (0, 0),
        }
    }
}

fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}
