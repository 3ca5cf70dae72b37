//! Applies Stack Auth webhook events to `users`, `organizations` and `memberships`, idempotently
//! and in any order.
//!
//! A Stack user is the `users` row `(issuer, subject = Stack user id)`; a Stack team is the
//! organization whose `external_team_id` is the team id. Rules (see docs/webhooks.md):
//!
//! - Each user, team and membership is a last-writer-wins register ordered by the delivery's
//!   signed timestamp (`stack_sync_state`): an older delivery changes nothing. Svix signs each
//!   attempt, so a retry carries the time of the retry, not of the event.
//! - Deleting a user or a team is final. A deleted user keeps a scrubbed tombstone row (written
//!   even when the delete is the first thing we hear of them), loses every membership and has
//!   their sessions revoked. A deleted team's org keeps its monitoring data but loses its members,
//!   its API tokens and its link to the team.
//! - Membership events create the placeholder org and user they need; a placeholder org is named
//!   after the team when a team event arrives. Stack adds members as `member` and never lowers a
//!   role set in fleetmon.
//!
//! Every delivery runs in one transaction that also records its id, so a replay is refused and a
//! failed delivery leaves nothing behind for Svix's retry to trip over. Per-object advisory locks
//! (team before user) serialize deliveries that touch the same objects.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::svix::Delivery;
use crate::db::sql::{query, query_as};
use crate::db::{DbError, TenantContext, TenantDb};

/// The `webhook_deliveries.provider` of Stack deliveries.
pub const PROVIDER: &str = "stack";

/// Role given to members that Stack adds.
const STACK_ROLE: &str = "member";
const MAX_ID_LEN: usize = 200;
const MAX_TYPE_LEN: usize = 100;
/// `organizations.name` allows 1 to 200 characters.
const MAX_NAME_CHARS: usize = 200;
/// Leaves room in the 63-character slug for the uniqueness suffixes.
const MAX_SLUG_BASE: usize = 40;
/// Transactions restarted because the org or user a delivery touches appeared meanwhile.
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StackSyncError {
    #[error("the body is not a Stack Auth webhook event: {0}")]
    Malformed(String),
    #[error("delivery {0} was already received")]
    Replayed(String),
    #[error("the objects of this delivery kept changing concurrently; retry")]
    Contended,
    #[error("no free slug for the organization of team {0}")]
    NoSlug(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for StackSyncError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(error.into())
    }
}

/// A parsed event: its `type` as sent, and what it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub event_type: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `user.created` and `user.updated` carry the whole user.
    User(StackUser),
    UserDeleted {
        user_id: String,
    },
    /// `team.created` and `team.updated` carry the whole team.
    Team {
        team_id: String,
        name: String,
    },
    TeamDeleted {
        team_id: String,
    },
    /// `team_membership.created` (`present`) and `team_membership.deleted`.
    Membership {
        team_id: String,
        user_id: String,
        present: bool,
    },
    /// A type fleetmon does not use: acknowledged, changes nothing.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackUser {
    pub id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// What applying a delivery amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A known event type, applied (which may leave everything as it was: a stale update, or
    /// one about a deleted object).
    Applied,
    /// An event type fleetmon does not use.
    Ignored,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct UserData {
    id: String,
    #[serde(default)]
    primary_email: Option<String>,
    #[serde(default)]
    primary_email_verified: bool,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct IdData {
    id: String,
}

#[derive(Deserialize)]
struct TeamData {
    id: String,
    display_name: String,
}

#[derive(Deserialize)]
struct MembershipData {
    team_id: String,
    user_id: String,
}

/// Parses a verified delivery's body: `{"type": "…", "data": {…}}`.
pub fn parse(body: &[u8]) -> Result<StackEvent, StackSyncError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| StackSyncError::Malformed(e.to_string()))?;
    let event_type = envelope.event_type;
    if event_type.is_empty() || event_type.len() > MAX_TYPE_LEN {
        return Err(malformed("`type` must be 1 to 100 characters"));
    }
    let data = envelope.data;
    let change = match event_type.as_str() {
        "user.created" | "user.updated" => {
            let user: UserData = fields(data, &event_type)?;
            Change::User(StackUser {
                id: stack_id(user.id)?,
                email: user.primary_email.filter(|e| !e.trim().is_empty()),
                email_verified: user.primary_email_verified,
                name: user.display_name.and_then(|n| clean_name(&n)),
            })
        }
        "user.deleted" => Change::UserDeleted {
            user_id: stack_id(fields::<IdData>(data, &event_type)?.id)?,
        },
        "team.created" | "team.updated" => {
            let team: TeamData = fields(data, &event_type)?;
            let team_id = stack_id(team.id)?;
            let name = clean_name(&team.display_name).unwrap_or_else(|| placeholder_name(&team_id));
            Change::Team { team_id, name }
        }
        "team.deleted" => Change::TeamDeleted {
            team_id: stack_id(fields::<IdData>(data, &event_type)?.id)?,
        },
        "team_membership.created" | "team_membership.deleted" => {
            let membership: MembershipData = fields(data, &event_type)?;
            Change::Membership {
                team_id: stack_id(membership.team_id)?,
                user_id: stack_id(membership.user_id)?,
                present: event_type == "team_membership.created",
            }
        }
        _ => Change::Unknown,
    };
    Ok(StackEvent { event_type, change })
}

fn malformed(message: &str) -> StackSyncError {
    StackSyncError::Malformed(message.to_string())
}

fn fields<T: serde::de::DeserializeOwned>(
    data: serde_json::Value,
    event_type: &str,
) -> Result<T, StackSyncError> {
    serde_json::from_value(data)
        .map_err(|e| StackSyncError::Malformed(format!("`data` of a {event_type} event: {e}")))
}

/// Stack ids are UUIDs; anything printable and short is accepted, except `/`, which separates
/// the two ids of a membership in `stack_sync_state`.
fn stack_id(id: String) -> Result<String, StackSyncError> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if ok {
        Ok(id)
    } else {
        Err(malformed(
            "ids must be 1 to 200 visible ASCII characters without `/`",
        ))
    }
}

/// A display name trimmed and cut to what `organizations.name` allows, or `None` when blank.
fn clean_name(name: &str) -> Option<String> {
    let name: String = name.trim().chars().take(MAX_NAME_CHARS).collect();
    let name = name.trim_end().to_string();
    (!name.is_empty()).then_some(name)
}

/// The name of an org created for a team that no team event has described yet.
fn placeholder_name(team_id: &str) -> String {
    format!("Stack team {team_id}")
}

/// Applies a verified delivery, refusing a delivery id that was already received.
pub async fn apply(
    db: &TenantDb,
    issuer: &str,
    delivery: &Delivery,
    event: &StackEvent,
) -> Result<Outcome, StackSyncError> {
    let anchor = Anchor::of(&event.change);
    let mut known = {
        let mut tx = db.begin(TenantContext::none()).await?;
        let found = anchor.find(tx.conn(), issuer).await?;
        tx.commit().await?;
        found
    };
    for _ in 0..ATTEMPTS {
        // Writes to memberships need the org (or, for a deleted user, the user) as the tenant
        // context, which is fixed when the transaction begins: an org or user that does not exist
        // yet gets its id chosen here.
        let anchor_id = known.unwrap_or_else(Uuid::new_v4);
        let mut tx = db.begin(anchor.context(anchor_id)).await?;
        if !record_delivery(tx.conn(), delivery, &event.event_type).await? {
            tx.rollback().await?;
            return Err(StackSyncError::Replayed(delivery.id.clone()));
        }
        let mut applier = Applier {
            conn: tx.conn(),
            issuer,
            delivery,
        };
        applier.lock(&event.change).await?;
        match anchor.find(applier.conn, issuer).await? {
            Some(found) if found != anchor_id => {
                // Created by another delivery between our look-up and our lock.
                tx.rollback().await?;
                known = Some(found);
                continue;
            }
            _ => {}
        }
        let outcome = applier.apply(&event.change, anchor_id).await?;
        tx.commit().await?;
        tracing::info!(delivery = %delivery.id, event = %event.event_type, ?outcome, "applied a Stack webhook");
        return Ok(outcome);
    }
    Err(StackSyncError::Contended)
}

/// Records the delivery id; false when it was already recorded.
async fn record_delivery(
    conn: &mut PgConnection,
    delivery: &Delivery,
    event_type: &str,
) -> Result<bool, StackSyncError> {
    let inserted = query(
        "INSERT INTO webhook_deliveries (provider, delivery_id, event_type) VALUES ($1, $2, $3)
         ON CONFLICT (provider, delivery_id) DO NOTHING",
    )
    .bind(PROVIDER)
    .bind(&delivery.id)
    .bind(event_type)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The row whose id a delivery's transaction context is built on.
enum Anchor<'e> {
    /// The org linked to this team: memberships and API tokens are written in its context.
    Team(&'e str),
    /// This user: a deleted user's memberships, in every org, are removed in their context.
    User(&'e str),
    None,
}

impl<'e> Anchor<'e> {
    fn of(change: &'e Change) -> Self {
        match change {
            Change::User(user) => Self::User(&user.id),
            Change::UserDeleted { user_id } => Self::User(user_id),
            Change::Team { team_id, .. }
            | Change::TeamDeleted { team_id }
            | Change::Membership { team_id, .. } => Self::Team(team_id),
            Change::Unknown => Self::None,
        }
    }

    fn context(&self, id: Uuid) -> TenantContext {
        match self {
            Self::Team(_) => TenantContext::org(id),
            Self::User(_) => TenantContext::none().with_user(id),
            Self::None => TenantContext::none(),
        }
    }

    async fn find(&self, conn: &mut PgConnection, issuer: &str) -> Result<Option<Uuid>, DbError> {
        Ok(match self {
            Self::Team(team_id) => org_of_team(conn, team_id).await?.map(|org| org.id),
            Self::User(user_id) => user_row(conn, issuer, user_id).await?.map(|user| user.id),
            Self::None => None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    User,
    Team,
    Membership,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Team => "team",
            Self::Membership => "membership",
        }
    }
}

/// The last event applied to an object: its delivery's signed time, and whether it said the
/// object exists.
struct State {
    at: DateTime<Utc>,
    present: bool,
}

impl State {
    /// Users and teams: a deletion is final.
    fn is_tombstone(state: &Option<State>) -> bool {
        state.as_ref().is_some_and(|s| !s.present)
    }

    /// Whether an event signed at `at` replaces what was applied. Svix timestamps have whole
    /// seconds, so within one second the later arrival wins: the best evidence of order left.
    fn is_superseded_by(state: &Option<State>, at: DateTime<Utc>) -> bool {
        state.as_ref().is_none_or(|s| s.at <= at)
    }
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    deleted_at: Option<DateTime<Utc>>,
}

async fn org_of_team(conn: &mut PgConnection, team_id: &str) -> Result<Option<OrgRow>, DbError> {
    Ok(
        query_as("SELECT id, name FROM organizations WHERE external_team_id = $1")
            .bind(team_id)
            .fetch_optional(conn)
            .await?,
    )
}

async fn user_row(
    conn: &mut PgConnection,
    issuer: &str,
    user_id: &str,
) -> Result<Option<UserRow>, DbError> {
    Ok(
        query_as("SELECT id, deleted_at FROM users WHERE issuer = $1 AND subject = $2")
            .bind(issuer)
            .bind(user_id)
            .fetch_optional(conn)
            .await?,
    )
}

/// One delivery being applied inside its transaction.
struct Applier<'c> {
    conn: &'c mut PgConnection,
    issuer: &'c str,
    delivery: &'c Delivery,
}

impl Applier<'_> {
    /// Serializes deliveries about the same team or user. Always the team first, so two
    /// deliveries never wait on each other in a cycle.
    async fn lock(&mut self, change: &Change) -> Result<(), DbError> {
        let (team, user) = match change {
            Change::User(user) => (None, Some(user.id.as_str())),
            Change::UserDeleted { user_id } => (None, Some(user_id.as_str())),
            Change::Team { team_id, .. } | Change::TeamDeleted { team_id } => {
                (Some(team_id.as_str()), None)
            }
            Change::Membership {
                team_id, user_id, ..
            } => (Some(team_id.as_str()), Some(user_id.as_str())),
            Change::Unknown => (None, None),
        };
        for (kind, id) in [(Kind::Team, team), (Kind::User, user)] {
            let Some(id) = id else { continue };
            let key = format!("fleetmon.stack:{}:{}:{id}", self.issuer, kind.as_str());
            query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    async fn apply(&mut self, change: &Change, anchor_id: Uuid) -> Result<Outcome, StackSyncError> {
        match change {
            Change::User(user) => self.user(user, anchor_id).await?,
            Change::UserDeleted { user_id } => self.user_deleted(user_id, anchor_id).await?,
            Change::Team { team_id, name } => self.team(team_id, name, anchor_id).await?,
            Change::TeamDeleted { team_id } => self.team_deleted(team_id).await?,
            Change::Membership {
                team_id,
                user_id,
                present,
            } => {
                self.membership(team_id, user_id, *present, anchor_id)
                    .await?
            }
            Change::Unknown => return Ok(Outcome::Ignored),
        }
        Ok(Outcome::Applied)
    }

    async fn state(&mut self, kind: Kind, object_id: &str) -> Result<Option<State>, DbError> {
        let row: Option<(DateTime<Utc>, bool)> = query_as(
            "SELECT event_at, present FROM stack_sync_state
             WHERE issuer = $1 AND kind = $2 AND object_id = $3",
        )
        .bind(self.issuer)
        .bind(kind.as_str())
        .bind(object_id)
        .fetch_optional(&mut *self.conn)
        .await?;
        Ok(row.map(|(at, present)| State { at, present }))
    }

    async fn set_state(
        &mut self,
        kind: Kind,
        object_id: &str,
        present: bool,
    ) -> Result<(), DbError> {
        query(
            "INSERT INTO stack_sync_state (issuer, kind, object_id, event_at, delivery_id, present)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (issuer, kind, object_id) DO UPDATE
             SET event_at = EXCLUDED.event_at, delivery_id = EXCLUDED.delivery_id,
                 present = EXCLUDED.present",
        )
        .bind(self.issuer)
        .bind(kind.as_str())
        .bind(object_id)
        .bind(self.delivery.timestamp)
        .bind(&self.delivery.id)
        .bind(present)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn user(&mut self, user: &StackUser, anchor_id: Uuid) -> Result<(), DbError> {
        let state = self.state(Kind::User, &user.id).await?;
        let row = user_row(self.conn, self.issuer, &user.id).await?;
        let deleted = State::is_tombstone(&state) || row.is_some_and(|r| r.deleted_at.is_some());
        if deleted || !State::is_superseded_by(&state, self.delivery.timestamp) {
            return Ok(());
        }
        query(
            "INSERT INTO users (id, issuer, subject, email, email_verified, name)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (issuer, subject) DO UPDATE
             SET email = EXCLUDED.email, email_verified = EXCLUDED.email_verified,
                 name = EXCLUDED.name, updated_at = now()",
        )
        .bind(anchor_id)
        .bind(self.issuer)
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.email_verified)
        .bind(&user.name)
        .execute(&mut *self.conn)
        .await?;
        self.set_state(Kind::User, &user.id, true).await
    }

    /// Runs in the user's context (`anchor_id`), which lets it remove their memberships in
    /// every org at once.
    async fn user_deleted(&mut self, user_id: &str, anchor_id: Uuid) -> Result<(), DbError> {
        // The row stays as a tombstone, scrubbed of personal data, so that nothing arriving
        // later — a webhook or a sign-in with a still-valid token — can bring the user back.
        query(
            "INSERT INTO users (id, issuer, subject, deleted_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (issuer, subject) DO UPDATE
             SET deleted_at = coalesce(users.deleted_at, now()), email = NULL,
                 email_verified = false, name = NULL, raw_claims = '{}', updated_at = now()",
        )
        .bind(anchor_id)
        .bind(self.issuer)
        .bind(user_id)
        .execute(&mut *self.conn)
        .await?;
        query("DELETE FROM memberships WHERE user_id = $1")
            .bind(anchor_id)
            .execute(&mut *self.conn)
            .await?;
        query("UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(anchor_id)
            .execute(&mut *self.conn)
            .await?;
        self.set_state(Kind::User, user_id, false).await
    }

    async fn team(
        &mut self,
        team_id: &str,
        name: &str,
        anchor_id: Uuid,
    ) -> Result<(), StackSyncError> {
        let state = self.state(Kind::Team, team_id).await?;
        if State::is_tombstone(&state) {
            return Ok(());
        }
        let newer = State::is_superseded_by(&state, self.delivery.timestamp);
        match org_of_team(self.conn, team_id).await? {
            None => self.create_org(anchor_id, team_id, name).await?,
            // A placeholder gets its slug from the first team event; after that the slug stays
            // put (it is in URLs) and only the name follows the team's.
            Some(org) if org.name == placeholder_name(team_id) => {
                self.rename(org.id, team_id, name, true).await?
            }
            Some(org) if newer => self.rename(org.id, team_id, name, false).await?,
            Some(_) => {}
        }
        if newer {
            self.set_state(Kind::Team, team_id, true).await?;
        }
        Ok(())
    }

    /// Runs in the org's context: the org keeps its monitoring data, but nobody can reach it.
    async fn team_deleted(&mut self, team_id: &str) -> Result<(), DbError> {
        self.set_state(Kind::Team, team_id, false).await?;
        let Some(org) = org_of_team(self.conn, team_id).await? else {
            return Ok(());
        };
        query("DELETE FROM memberships WHERE org_id = $1")
            .bind(org.id)
            .execute(&mut *self.conn)
            .await?;
        query("UPDATE api_tokens SET revoked_at = now() WHERE org_id = $1 AND revoked_at IS NULL")
            .bind(org.id)
            .execute(&mut *self.conn)
            .await?;
        query("UPDATE organizations SET external_team_id = NULL WHERE id = $1")
            .bind(org.id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Runs in the org's context (`anchor_id`).
    async fn membership(
        &mut self,
        team_id: &str,
        user_id: &str,
        present: bool,
        anchor_id: Uuid,
    ) -> Result<(), StackSyncError> {
        if State::is_tombstone(&self.state(Kind::Team, team_id).await?) {
            return Ok(());
        }
        // The placeholders exist after any membership event, whatever its order or outcome, so
        // the same events always leave the same rows. The org's id is the context's either way.
        if org_of_team(self.conn, team_id).await?.is_none() {
            self.create_org(anchor_id, team_id, &placeholder_name(team_id))
                .await?;
        }
        let user = self.placeholder_user(user_id).await?;

        let object_id = format!("{team_id}/{user_id}");
        let state = self.state(Kind::Membership, &object_id).await?;
        if !State::is_superseded_by(&state, self.delivery.timestamp) {
            return Ok(());
        }
        self.set_state(Kind::Membership, &object_id, present)
            .await?;
        if present && user.deleted_at.is_none() {
            // Never lowers a role given in fleetmon.
            query(
                "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (org_id, user_id) DO NOTHING",
            )
            .bind(anchor_id)
            .bind(user.id)
            .bind(STACK_ROLE)
            .execute(&mut *self.conn)
            .await?;
        } else {
            query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(anchor_id)
                .bind(user.id)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    /// The user's row, created empty when Stack has not described them yet.
    async fn placeholder_user(&mut self, user_id: &str) -> Result<UserRow, DbError> {
        query("INSERT INTO users (issuer, subject) VALUES ($1, $2) ON CONFLICT (issuer, subject) DO NOTHING")
            .bind(self.issuer)
            .bind(user_id)
            .execute(&mut *self.conn)
            .await?;
        let row = user_row(self.conn, self.issuer, user_id).await?;
        Ok(row.expect("the row was just ensured under the user's lock"))
    }

    async fn create_org(
        &mut self,
        id: Uuid,
        team_id: &str,
        name: &str,
    ) -> Result<(), StackSyncError> {
        for slug in slug_candidates(name, team_id) {
            // Under the team's lock, the only conflict left is on the slug.
            let inserted = query(
                "INSERT INTO organizations (id, slug, name, external_team_id)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(&slug)
            .bind(name)
            .bind(team_id)
            .execute(&mut *self.conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(());
            }
        }
        Err(StackSyncError::NoSlug(team_id.to_string()))
    }

    async fn rename(
        &mut self,
        org_id: Uuid,
        team_id: &str,
        name: &str,
        new_slug: bool,
    ) -> Result<(), StackSyncError> {
        query("UPDATE organizations SET name = $2 WHERE id = $1")
            .bind(org_id)
            .bind(name)
            .execute(&mut *self.conn)
            .await?;
        if !new_slug {
            return Ok(());
        }
        for slug in slug_candidates(name, team_id) {
            let updated = query(
                "UPDATE organizations SET slug = $2 WHERE id = $1
                 AND NOT EXISTS (SELECT FROM organizations WHERE slug = $2 AND id <> $1)",
            )
            .bind(org_id)
            .bind(&slug)
            .execute(&mut *self.conn)
            .await?
            .rows_affected();
            if updated == 1 {
                return Ok(());
            }
        }
        Err(StackSyncError::NoSlug(team_id.to_string()))
    }
}

/// Slugs to try for a team's org, in order: from the name, then made unique with a suffix
/// derived from the team id (so the same team always gets the same slug).
fn slug_candidates(name: &str, team_id: &str) -> Vec<String> {
    let mut base = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            base.push(c);
        } else if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
        if base.len() >= MAX_SLUG_BASE {
            break;
        }
    }
    let base = match base.trim_end_matches('-') {
        "" => "team",
        trimmed => trimmed,
    };
    let digest = Sha256::digest(team_id.as_bytes());
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut candidates = vec![base.to_string(), format!("{base}-{suffix}")];
    candidates.extend((2..10).map(|n| format!("{base}-{suffix}-{n}")));
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_value(value: serde_json::Value) -> Result<StackEvent, StackSyncError> {
        parse(value.to_string().as_bytes())
    }

    #[test]
    fn stack_payloads_parse_into_changes() {
        let user = parse_value(json!({"type": "user.updated", "data": {
            "id": "u1", "primary_email": "a@example.com", "primary_email_verified": true,
            "display_name": "  Ada  ", "selected_team_id": null, "signed_up_at_millis": 1
        }}))
        .unwrap();
        assert_eq!(
            user.change,
            Change::User(StackUser {
                id: "u1".into(),
                email: Some("a@example.com".into()),
                email_verified: true,
                name: Some("Ada".into()),
            })
        );
        let deleted =
            parse_value(json!({"type": "user.deleted", "data": {"id": "u1", "teams": []}}));
        assert_eq!(
            deleted.unwrap().change,
            Change::UserDeleted {
                user_id: "u1".into()
            }
        );
        let team =
            parse_value(json!({"type": "team.created", "data": {"id": "t1", "display_name": " "}}));
        assert_eq!(
            team.unwrap().change,
            Change::Team {
                team_id: "t1".into(),
                name: "Stack team t1".into()
            }
        );
        let removed = parse_value(json!({"type": "team_membership.deleted",
                                         "data": {"team_id": "t1", "user_id": "u1"}}));
        assert_eq!(
            removed.unwrap().change,
            Change::Membership {
                team_id: "t1".into(),
                user_id: "u1".into(),
                present: false
            }
        );
        let other = parse_value(json!({"type": "team_permission.created", "data": {}})).unwrap();
        assert_eq!(
            (other.event_type.as_str(), other.change),
            ("team_permission.created", Change::Unknown)
        );
    }

    #[test]
    fn malformed_payloads_are_refused_with_a_reason() {
        for (body, needle) in [
            (json!({"data": {}}), "type"),
            (
                json!({"type": "user.created", "data": {"primary_email": "x"}}),
                "id",
            ),
            (
                json!({"type": "team.updated", "data": {"id": "t1"}}),
                "display_name",
            ),
            (
                json!({"type": "team_membership.created", "data": {"team_id": "a/b", "user_id": "u"}}),
                "`/`",
            ),
            (
                json!({"type": "user.deleted", "data": {"id": ""}}),
                "1 to 200",
            ),
        ] {
            let error = parse_value(body.clone()).unwrap_err();
            assert!(matches!(error, StackSyncError::Malformed(_)), "{body}");
            assert!(error.to_string().contains(needle), "{body}: {error}");
        }
        assert!(matches!(
            parse(b"not json"),
            Err(StackSyncError::Malformed(_))
        ));
    }

    #[test]
    fn names_are_trimmed_and_cut_to_what_organizations_allow() {
        assert_eq!(clean_name("  \t "), None);
        let long = "é".repeat(250);
        assert_eq!(clean_name(&long).unwrap().chars().count(), 200);
    }

    #[test]
    fn slugs_are_valid_stable_and_derived_from_the_name() {
        let candidates = slug_candidates("Acme Corp — GPU Fleet!", "t1");
        assert_eq!(candidates[0], "acme-corp-gpu-fleet");
        assert_eq!(candidates, slug_candidates("Acme Corp — GPU Fleet!", "t1"));
        assert_ne!(
            candidates[1],
            slug_candidates("Acme Corp — GPU Fleet!", "t2")[1]
        );
        assert_eq!(slug_candidates("Équipe ✨", "t1")[0], "quipe");
        assert_eq!(slug_candidates("✨", "t1")[0], "team");
        let long = slug_candidates(&"ab ".repeat(100), "t1");
        let pattern = |s: &str| {
            (1..=63).contains(&s.len())
                && !s.starts_with('-')
                && !s.ends_with('-')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        for slug in long.iter().chain(&candidates) {
            assert!(pattern(slug), "{slug}");
        }
    }

    #[test]
    fn later_or_same_second_events_supersede_and_deletions_are_tombstones() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let state = Some(State {
            at: at(10),
            present: true,
        });
        assert!(State::is_superseded_by(&state, at(11)));
        assert!(State::is_superseded_by(&state, at(10)));
        assert!(!State::is_superseded_by(&state, at(9)));
        assert!(State::is_superseded_by(&None, at(0)));
        assert!(!State::is_tombstone(&state));
        let deleted = Some(State {
            at: at(1),
            present: false,
        });
        assert!(State::is_tombstone(&deleted));
        assert!(!State::is_tombstone(&None));
    }
}
