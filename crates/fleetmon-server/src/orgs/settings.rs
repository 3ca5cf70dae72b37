//! An org's settings: the liveness thresholds, how long history is kept, and who sees job
//! payloads.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::sql::query_scalar;
use crate::db::DbError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgSettings {
    /// A machine or worker silent this long is `stale`.
    pub stale_after_s: u32,
    /// … and this long, `offline`.
    pub offline_after_s: u32,
    /// History (and the jobs whose state is) older than this many days is deleted by retention.
    pub retention_days: u32,
    /// Whether viewers and read tokens see job payloads and results (members and above always do).
    pub payloads_visible_to_viewers: bool,
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            stale_after_s: 15,
            offline_after_s: 60,
            retention_days: 30,
            payloads_visible_to_viewers: true,
        }
    }
}

/// A partial update: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub stale_after_s: Option<u32>,
    pub offline_after_s: Option<u32>,
    pub retention_days: Option<u32>,
    pub payloads_visible_to_viewers: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl OrgSettings {
    fn apply(self, patch: &SettingsPatch) -> Result<Self, SettingsError> {
        let next = Self {
            stale_after_s: patch.stale_after_s.unwrap_or(self.stale_after_s),
            offline_after_s: patch.offline_after_s.unwrap_or(self.offline_after_s),
            retention_days: patch.retention_days.unwrap_or(self.retention_days),
            payloads_visible_to_viewers: patch
                .payloads_visible_to_viewers
                .unwrap_or(self.payloads_visible_to_viewers),
        };
        // Agents send a heartbeat every 5 s: anything shorter would flap.
        if !(5..=86_400).contains(&next.stale_after_s) {
            return Err(SettingsError::Invalid(
                "stale_after_s must be between 5 and 86400".into(),
            ));
        }
        if next.offline_after_s <= next.stale_after_s || next.offline_after_s > 7 * 86_400 {
            return Err(SettingsError::Invalid(
                "offline_after_s must be greater than stale_after_s and at most 604800".into(),
            ));
        }
        if !(1..=3650).contains(&next.retention_days) {
            return Err(SettingsError::Invalid(
                "retention_days must be between 1 and 3650".into(),
            ));
        }
        Ok(next)
    }
}

/// The settings of the org of `conn`'s transaction; unknown or missing keys take defaults.
pub async fn get(conn: &mut PgConnection, org_id: Uuid) -> Result<OrgSettings, DbError> {
    let stored: serde_json::Value =
        query_scalar("SELECT settings FROM organizations WHERE id = $1")
            .bind(org_id)
            .fetch_one(conn)
            .await?;
    Ok(OrgSettings::from_stored(&stored))
}

impl OrgSettings {
    /// The settings a stored `organizations.settings` value says, defaults for what it lacks.
    pub fn from_stored(stored: &serde_json::Value) -> Self {
        let defaults = serde_json::to_value(Self::default()).expect("settings serialize");
        let mut merged = defaults.as_object().cloned().unwrap_or_default();
        if let Some(stored) = stored.as_object() {
            for (key, value) in stored {
                if merged.contains_key(key) {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or_default()
    }
}

/// Applies `patch`, locking the row so concurrent updates do not lose each other's fields.
pub async fn update(
    conn: &mut PgConnection,
    org_id: Uuid,
    patch: &SettingsPatch,
) -> Result<OrgSettings, SettingsError> {
    crate::db::sql::query("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE")
        .bind(org_id)
        .execute(&mut *conn)
        .await
        .map_err(DbError::from)?;
    let next = get(conn, org_id).await?.apply(patch)?;
    crate::db::sql::query("UPDATE organizations SET settings = settings || $2 WHERE id = $1")
        .bind(org_id)
        .bind(serde_json::to_value(next).expect("settings serialize"))
        .execute(conn)
        .await
        .map_err(DbError::from)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_validated_as_a_whole() {
        let base = OrgSettings::default();
        let ok = base
            .apply(&SettingsPatch {
                stale_after_s: Some(30),
                offline_after_s: Some(120),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (ok.stale_after_s, ok.offline_after_s, ok.retention_days),
            (30, 120, 30)
        );
        let hidden = ok
            .apply(&SettingsPatch {
                payloads_visible_to_viewers: Some(false),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            hidden,
            OrgSettings {
                payloads_visible_to_viewers: false,
                ..ok
            }
        );
        // Offline must stay after stale, whichever field changes.
        assert!(base
            .apply(&SettingsPatch {
                stale_after_s: Some(90),
                ..Default::default()
            })
            .is_err());
        assert!(base
            .apply(&SettingsPatch {
                stale_after_s: Some(1),
                ..Default::default()
            })
            .is_err());
        assert!(base
            .apply(&SettingsPatch {
                retention_days: Some(0),
                ..Default::default()
            })
            .is_err());
    }
}
