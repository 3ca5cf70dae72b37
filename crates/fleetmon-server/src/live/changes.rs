//! What a committed write changed, as `NOTIFY` payloads: the org and the ids of the machines,
//! workers and jobs it touched — never their data, which subscribers load through their own
//! tenant transaction. `pg_notify` is transactional, so a notification exists only once the
//! write has committed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::query;
use crate::db::DbError;

/// The one channel every fleetmon process listens on.
pub const CHANNEL: &str = "fleetmon_changes";

/// Most ids a client is sent in one go. A write touching more is published as "everything
/// changed", and a client with more pending is told to reload instead: past this, reloading the
/// lists is cheaper than pushing rows one by one.
pub const MAX_IDS: usize = 1000;

/// PostgreSQL refuses payloads of 8000 bytes or more; this leaves room to spare.
const MAX_PAYLOAD_BYTES: usize = 7900;

/// Ids of changed rows, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    #[serde(rename = "m", default, skip_serializing_if = "BTreeSet::is_empty")]
    pub machines: BTreeSet<String>,
    #[serde(rename = "w", default, skip_serializing_if = "BTreeSet::is_empty")]
    pub workers: BTreeSet<String>,
    #[serde(rename = "j", default, skip_serializing_if = "BTreeSet::is_empty")]
    pub jobs: BTreeSet<String>,
}

impl Changes {
    pub fn len(&self) -> usize {
        self.machines.len() + self.workers.len() + self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, other: Changes) {
        self.machines.extend(other.machines);
        self.workers.extend(other.workers);
        self.jobs.extend(other.jobs);
    }

    fn kinds(&self) -> [&BTreeSet<String>; 3] {
        [&self.machines, &self.workers, &self.jobs]
    }

    fn kinds_mut(&mut self) -> [&mut BTreeSet<String>; 3] {
        [&mut self.machines, &mut self.workers, &mut self.jobs]
    }
}

/// One notification as it travels: `{"o": org, "m": [...], "w": [...], "j": [...]}`, or
/// `{"o": org, "all": true}` for a write too large to list, or `{"probe": id}` (the listener
/// checking its own connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Notice {
    Probe {
        probe: Uuid,
    },
    Everything {
        #[serde(rename = "o")]
        org: Uuid,
        all: bool,
    },
    Changed {
        #[serde(rename = "o")]
        org: Uuid,
        #[serde(flatten)]
        changes: Changes,
    },
}

impl Notice {
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }

    pub fn payload(&self) -> String {
        serde_json::to_string(self).expect("notices serialize")
    }
}

/// The payloads announcing `changes` in `org`, each under PostgreSQL's size limit.
pub fn payloads(org: Uuid, changes: &Changes) -> Vec<String> {
    if changes.is_empty() {
        return Vec::new();
    }
    if changes.len() > MAX_IDS {
        return vec![Notice::Everything { org, all: true }.payload()];
    }
    let empty = Notice::Changed {
        org,
        changes: Changes::default(),
    }
    .payload()
    .len();
    let mut done = Vec::new();
    let mut chunk = Changes::default();
    let mut size = empty;
    for (kind, ids) in changes.kinds().into_iter().enumerate() {
        for id in ids {
            // The id as a JSON string, after a comma or, first of its kind, in `,"m":[…]`.
            let quoted = serde_json::to_string(id).map_or(0, |s| s.len());
            let grows = |chunk: &mut Changes| {
                quoted
                    + if chunk.kinds_mut()[kind].is_empty() {
                        7
                    } else {
                        1
                    }
            };
            if size + grows(&mut chunk) > MAX_PAYLOAD_BYTES && !chunk.is_empty() {
                done.push(std::mem::take(&mut chunk));
                size = empty;
            }
            size += grows(&mut chunk);
            chunk.kinds_mut()[kind].insert(id.clone());
        }
    }
    if !chunk.is_empty() {
        done.push(chunk);
    }
    done.into_iter()
        .map(|changes| Notice::Changed { org, changes }.payload())
        .collect()
}

/// Announces `changes` to every fleetmon process, when the caller's transaction commits.
pub async fn publish(conn: &mut PgConnection, org: Uuid, changes: &Changes) -> Result<(), DbError> {
    let payloads = payloads(org, changes);
    if payloads.is_empty() {
        return Ok(());
    }
    query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(prefix: &str, n: usize, len: usize) -> BTreeSet<String> {
        (0..n)
            .map(|i| format!("{prefix}{i:0>width$}", width = len - prefix.len()))
            .collect()
    }

    #[test]
    fn payloads_round_trip_and_stay_under_the_limit() {
        let org = Uuid::new_v4();
        let changes = Changes {
            machines: ids("m", 3, 20),
            workers: ids("w\"é", 200, 60),
            jobs: ids("j", 400, 250),
        };
        let payloads = payloads(org, &changes);
        assert!(payloads.len() > 1, "split into several notifications");
        let mut back = Changes::default();
        for payload in &payloads {
            assert!(payload.len() < 8000, "{}", payload.len());
            match Notice::parse(payload).unwrap() {
                Notice::Changed { org: o, changes } => {
                    assert_eq!(o, org);
                    back.extend(changes);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, changes);
    }

    #[test]
    fn a_write_too_large_to_list_says_everything_changed() {
        let org = Uuid::new_v4();
        let changes = Changes {
            jobs: ids("j", MAX_IDS + 1, 8),
            ..Changes::default()
        };
        let payloads = payloads(org, &changes);
        assert_eq!(payloads, [format!("{{\"o\":\"{org}\",\"all\":true}}")]);
        assert_eq!(
            Notice::parse(&payloads[0]),
            Some(Notice::Everything { org, all: true })
        );
    }

    #[test]
    fn small_changes_are_one_compact_payload() {
        let org = Uuid::nil();
        let changes = Changes {
            machines: ["m1".to_string()].into(),
            jobs: ["j1".to_string(), "j2".to_string()].into(),
            ..Changes::default()
        };
        assert_eq!(
            payloads(org, &changes),
            [format!(
                "{{\"o\":\"{org}\",\"m\":[\"m1\"],\"j\":[\"j1\",\"j2\"]}}"
            )]
        );
        assert!(payloads(org, &Changes::default()).is_empty());
        assert_eq!(Notice::parse("not json"), None);
        let probe = Uuid::new_v4();
        assert_eq!(
            Notice::parse(&Notice::Probe { probe }.payload()),
            Some(Notice::Probe { probe })
        );
    }
}
