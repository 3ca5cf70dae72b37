//! Metric series ids, remembered per process so that storing samples needs no lookup.
//!
//! A series `(org, machine, worker, name, labels)` gets its id once, when first seen, and keeps it:
//! series rows are never updated, so a remembered id stays right on every replica. Ids learned in
//! a transaction are remembered only after it commits ([`SeriesCache::remember`]), so a rolled-back
//! series is never taken for an existing one. Nothing deletes series yet; whatever comes to (retention)
//! must also make running processes forget them.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::{query, query_as};
use crate::db::DbError;

/// Forgetting everything at this size keeps memory bounded for fleets with churning labels.
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub machine_id: String,
    pub worker_id: String,
    pub name: String,
    /// The labels as canonical JSON text (keys sorted: they come from a `BTreeMap`).
    pub labels: String,
}

#[derive(Debug, Default)]
pub struct SeriesCache {
    ids: Mutex<HashMap<(Uuid, SeriesKey), i64>>,
}

impl SeriesCache {
    /// The ids of `keys` (in order), creating the series that do not exist yet, and the ids this
    /// transaction looked up, for [`SeriesCache::remember`] once it has committed.
    pub async fn resolve(
        &self,
        conn: &mut PgConnection,
        org_id: Uuid,
        keys: &[SeriesKey],
    ) -> Result<(Vec<i64>, Learned), DbError> {
        let mut known: HashMap<SeriesKey, i64> = HashMap::new();
        let mut missing: Vec<&SeriesKey> = Vec::new();
        {
            let ids = self.ids.lock().expect("series cache");
            for key in keys {
                match ids.get(&(org_id, key.clone())) {
                    Some(id) => {
                        known.insert(key.clone(), *id);
                    }
                    None => missing.push(key),
                }
            }
        }
        missing.sort_by(|a, b| {
            (&a.machine_id, &a.worker_id, &a.name, &a.labels).cmp(&(
                &b.machine_id,
                &b.worker_id,
                &b.name,
                &b.labels,
            ))
        });
        missing.dedup();
        let mut learned = Vec::new();
        if !missing.is_empty() {
            let machines: Vec<&str> = missing.iter().map(|k| k.machine_id.as_str()).collect();
            let workers: Vec<&str> = missing.iter().map(|k| k.worker_id.as_str()).collect();
            let names: Vec<&str> = missing.iter().map(|k| k.name.as_str()).collect();
            let labels: Vec<Json<Value>> = missing
                .iter()
                .map(|k| Json(serde_json::from_str(&k.labels).unwrap_or(Value::Null)))
                .collect();
            query(
                "INSERT INTO metric_series (org_id, machine_id, worker_id, name, labels)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(org_id)
            .bind(&machines)
            .bind(&workers)
            .bind(&names)
            .bind(&labels)
            .execute(&mut *conn)
            .await?;
            let found: Vec<(i64, String, String, String, Json<Value>)> = query_as(
                "SELECT s.id, s.machine_id, s.worker_id, s.name, s.labels
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[]) AS u(machine_id, worker_id, name, labels)
                 JOIN metric_series s ON s.org_id = $1 AND s.machine_id = u.machine_id
                      AND s.worker_id = u.worker_id AND s.name = u.name AND s.labels = u.labels",
            )
            .bind(org_id)
            .bind(&machines)
            .bind(&workers)
            .bind(&names)
            .bind(&labels)
            .fetch_all(&mut *conn)
            .await?;
            for (id, machine_id, worker_id, name, Json(labels)) in found {
                let key = SeriesKey {
                    machine_id,
                    worker_id,
                    name,
                    labels: labels.to_string(),
                };
                known.insert(key.clone(), id);
                learned.push((key, id));
            }
        }
        let ids = keys
            .iter()
            .map(|k| {
                known.get(k).copied().ok_or_else(|| {
                    DbError::Sql(sqlx::Error::Protocol(format!(
                        "metric series {} was not created",
                        k.name
                    )))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((
            ids,
            Learned {
                org_id,
                ids: learned,
            },
        ))
    }

    /// Remembers the ids a committed transaction learned.
    pub fn remember(&self, learned: Learned) {
        if learned.ids.is_empty() {
            return;
        }
        let mut ids = self.ids.lock().expect("series cache");
        if ids.len() + learned.ids.len() > MAX_ENTRIES {
            ids.clear();
        }
        for (key, id) in learned.ids {
            ids.insert((learned.org_id, key), id);
        }
    }
}

/// Series ids looked up by a transaction, to remember once it commits.
#[derive(Debug, Default)]
pub struct Learned {
    org_id: Uuid,
    ids: Vec<(SeriesKey, i64)>,
}
