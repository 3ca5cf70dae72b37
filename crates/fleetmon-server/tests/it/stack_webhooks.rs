//! `POST /api/v1/webhooks/stack` end to end: Svix signatures, replays, and Stack's user, team and
//! membership events applied in any order.

use chrono::{DateTime, Utc};
use fleetmon_proto::ErrorBody;
use fleetmon_server::auth::stack_sync;
use fleetmon_server::auth::svix::{Delivery, WebhookSecret, WebhookSecrets};
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::{query, query_as, query_scalar};
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::http::{self, AppState, StackWebhook};
use fleetmon_server::ingest::Limits;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::fixtures;
use crate::harness::TestDb;

const ISSUER: &str = "http://127.0.0.1/api/v1/projects/it-project";
/// Svix's documented example secret, and two more of the same shape (24 random bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_5Ayd0cQlm4bPb0I6pnj6ag6V3WbtGMRX";
const STRANGER_SECRET: &str = "whsec_q8ZbXvT1s0mJr4a2Lk9FhWcYdEuNpGoI";

struct Hooks {
    base: String,
    tenant: TenantDb,
    db: TestDb,
}

impl Hooks {
    /// Serves the router with Stack webhooks verified against `secrets`, or not configured.
    async fn start(secrets: Option<&str>) -> Self {
        let db = TestDb::new().await;
        let tenant = db.tenant();
        let auth = fleetmon_server::auth::Auth::new(crate::harness::local_auth(), &tenant).unwrap();
        let mut state = AppState::new(tenant.clone(), Limits::default(), auth);
        if let Some(secrets) = secrets {
            state = state.with_stack_webhook(StackWebhook {
                issuer: ISSUER.into(),
                secrets: WebhookSecrets::parse(secrets).unwrap(),
            });
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(http::serve(
            listener,
            http::router(state),
            std::future::pending(),
        ));
        Self { base, tenant, db }
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Posts `body` with the given Svix headers.
    async fn post(
        &self,
        id: &str,
        timestamp: i64,
        body: &str,
        signature: &str,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/v1/webhooks/stack", self.base))
            .header("content-type", "application/json")
            .header("svix-id", id)
            .header("svix-timestamp", timestamp.to_string())
            .header("svix-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Delivers `event` as Svix would, signed `seconds_ago` before now; returns the reply.
    async fn deliver_at(&self, event: &Value, seconds_ago: i64) -> Value {
        let id = new_id();
        let timestamp = Utc::now().timestamp() - seconds_ago;
        let body = event.to_string();
        let signature = sign(SECRET, &id, timestamp, &body);
        let response = self.post(&id, timestamp, &body, &signature).await;
        assert_eq!(response.status(), 200, "{event}");
        response.json().await.unwrap()
    }

    async fn deliver(&self, event: &Value) -> Value {
        self.deliver_at(event, 0).await
    }

    async fn count(&self, sql: &str) -> i64 {
        query_scalar(sql).fetch_one(self.pool()).await.unwrap()
    }
}

fn new_id() -> String {
    format!("msg_{}", Uuid::new_v4().simple())
}

fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    WebhookSecret::parse(secret)
        .unwrap()
        .sign(id, timestamp, body.as_bytes())
}

async fn code_of(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    response.json::<ErrorBody>().await.unwrap().error.code
}

fn user_event(kind: &str, id: &str, email: &str, name: &str) -> Value {
    json!({"type": kind, "data": {
        "id": id, "primary_email": email, "primary_email_verified": true, "display_name": name,
        "selected_team_id": null, "signed_up_at_millis": 1_700_000_000_000_i64,
        "is_anonymous": false, "is_restricted": false
    }})
}

fn team_event(kind: &str, id: &str, name: &str) -> Value {
    json!({"type": kind, "data": {"id": id, "display_name": name, "profile_image_url": null,
                                  "created_at_millis": 1_700_000_000_000_i64}})
}

fn membership_event(kind: &str, team: &str, user: &str) -> Value {
    json!({"type": kind, "data": {"team_id": team, "user_id": user}})
}

fn stack_id() -> String {
    Uuid::new_v4().to_string()
}

#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct UserState {
    email: Option<String>,
    name: Option<String>,
    deleted: bool,
}

async fn user_state(pool: &PgPool, subject: &str) -> Option<UserState> {
    query_as(
        "SELECT email, name, deleted_at IS NOT NULL AS deleted FROM users
         WHERE issuer = $1 AND subject = $2",
    )
    .bind(ISSUER)
    .bind(subject)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// The org linked to `team`: (id, slug, name).
async fn org_of(pool: &PgPool, team: &str) -> Option<(Uuid, String, String)> {
    query_as("SELECT id, slug, name FROM organizations WHERE external_team_id = $1")
        .bind(team)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// `(Stack user id, role)` of every member of the org, sorted.
async fn members(pool: &PgPool, org: Uuid) -> Vec<(String, String)> {
    query_as(
        "SELECT u.subject, m.role FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.org_id = $1 ORDER BY u.subject",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn user_id(pool: &PgPool, subject: &str) -> Uuid {
    query_scalar("SELECT id FROM users WHERE issuer = $1 AND subject = $2")
        .bind(ISSUER)
        .bind(subject)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn without_configuration_the_endpoint_is_not_found() {
    let hooks = Hooks::start(None).await;
    let body = team_event("team.created", &stack_id(), "Ops").to_string();
    let id = new_id();
    let now = Utc::now().timestamp();
    let response = hooks
        .post(&id, now, &body, &sign(SECRET, &id, now, &body))
        .await;
    assert_eq!(code_of(response, 404).await, "not_found");
    assert_eq!(hooks.count("SELECT count(*) FROM organizations").await, 0);
}

#[tokio::test]
async fn bad_signatures_and_missing_headers_are_refused_and_change_nothing() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let body = team_event("team.created", &stack_id(), "Ops").to_string();
    let id = new_id();
    let now = Utc::now().timestamp();

    let by_stranger = sign(STRANGER_SECRET, &id, now, &body);
    let response = hooks.post(&id, now, &body, &by_stranger).await;
    assert_eq!(code_of(response, 401).await, "bad_signature");

    // The right secret, but the body changed after signing.
    let signature = sign(SECRET, &id, now, &body);
    let tampered = body.replace("Ops", "Pwned");
    let response = hooks.post(&id, now, &tampered, &signature).await;
    assert_eq!(code_of(response, 401).await, "bad_signature");

    let response = hooks.post(&id, now, &body, "g0hM9SsE+OTPJTGt").await;
    assert_eq!(code_of(response, 401).await, "malformed_signature");

    let unsigned = reqwest::Client::new()
        .post(format!("{}/api/v1/webhooks/stack", hooks.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(unsigned, 401).await, "missing_signature_headers");

    assert_eq!(hooks.count("SELECT count(*) FROM organizations").await, 0);
    assert_eq!(
        hooks.count("SELECT count(*) FROM webhook_deliveries").await,
        0
    );
    // The genuine delivery still goes through afterwards: the failures recorded nothing.
    let response = hooks.post(&id, now, &body, &signature).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn timestamps_more_than_five_minutes_off_either_way_are_refused() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let body = team_event("team.created", &stack_id(), "Ops").to_string();
    let now = Utc::now().timestamp();
    for (offset, code) in [(-400, "stale_timestamp"), (400, "future_timestamp")] {
        let id = new_id();
        let at = now + offset;
        let response = hooks
            .post(&id, at, &body, &sign(SECRET, &id, at, &body))
            .await;
        assert_eq!(code_of(response, 401).await, code, "offset {offset}");
    }
    assert_eq!(hooks.count("SELECT count(*) FROM organizations").await, 0);
    // Four minutes old is within the tolerance.
    let reply = hooks
        .deliver_at(&team_event("team.created", &stack_id(), "Ops"), 240)
        .await;
    assert_eq!(reply, json!({"applied": true}));
}

#[tokio::test]
async fn a_replayed_delivery_id_is_refused() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let user = stack_id();
    let body = user_event("user.created", &user, "ada@example.com", "Ada").to_string();
    let id = new_id();
    let now = Utc::now().timestamp();
    let signature = sign(SECRET, &id, now, &body);
    assert_eq!(hooks.post(&id, now, &body, &signature).await.status(), 200);

    // The captured request, byte for byte.
    let replay = hooks.post(&id, now, &body, &signature).await;
    assert_eq!(code_of(replay, 409).await, "replayed_delivery");
    // The same id under a fresh signature and another body is the same delivery too.
    let changed = user_event("user.updated", &user, "eve@example.com", "Eve").to_string();
    let later = now + 1;
    let response = hooks
        .post(&id, later, &changed, &sign(SECRET, &id, later, &changed))
        .await;
    assert_eq!(code_of(response, 409).await, "replayed_delivery");

    let state = user_state(hooks.pool(), &user).await.unwrap();
    assert_eq!(state.email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        hooks
            .count("SELECT count(*) FROM webhook_deliveries WHERE provider = 'stack'")
            .await,
        1
    );
}

#[tokio::test]
async fn during_the_senders_rotation_a_valid_signature_among_invalid_ones_is_accepted() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let body = team_event("team.created", &stack_id(), "Ops").to_string();
    let id = new_id();
    let now = Utc::now().timestamp();
    let old = sign(OLD_SECRET, &id, now, &body);
    let new = sign(SECRET, &id, now, &body);

    let response = hooks.post(&id, now, &body, &old).await;
    assert_eq!(code_of(response, 401).await, "bad_signature");
    let response = hooks.post(&id, now, &body, &format!("{old} {new}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(hooks.count("SELECT count(*) FROM organizations").await, 1);
}

#[tokio::test]
async fn during_our_rotation_every_configured_secret_is_accepted() {
    let hooks = Hooks::start(Some(&format!("{OLD_SECRET}\n{SECRET}"))).await;
    let now = Utc::now().timestamp();
    for secret in [OLD_SECRET, SECRET] {
        let body = team_event("team.created", &stack_id(), "Ops").to_string();
        let id = new_id();
        let response = hooks
            .post(&id, now, &body, &sign(secret, &id, now, &body))
            .await;
        assert_eq!(response.status(), 200);
    }
    let body = team_event("team.created", &stack_id(), "Ops").to_string();
    let id = new_id();
    let response = hooks
        .post(&id, now, &body, &sign(STRANGER_SECRET, &id, now, &body))
        .await;
    assert_eq!(code_of(response, 401).await, "bad_signature");
    assert_eq!(hooks.count("SELECT count(*) FROM organizations").await, 2);
}

#[tokio::test]
async fn unknown_types_are_acknowledged_and_bad_payloads_refused() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let reply = hooks
        .deliver(&json!({"type": "team_permission.created", "data": {"id": "$read_members"}}))
        .await;
    assert_eq!(reply, json!({"ignored": "team_permission.created"}));

    let body = json!({"type": "team.created", "data": {"display_name": "no id"}}).to_string();
    let id = new_id();
    let now = Utc::now().timestamp();
    let response = hooks
        .post(&id, now, &body, &sign(SECRET, &id, now, &body))
        .await;
    assert_eq!(code_of(response, 400).await, "malformed_event");

    let huge = format!(r#"{{"type":"x","data":"{}"}}"#, "a".repeat(2 << 20));
    let response = hooks
        .post(&id, now, &huge, &sign(SECRET, &id, now, &huge))
        .await;
    assert_eq!(code_of(response, 413).await, "body_too_large");
    assert_eq!(
        hooks.count("SELECT count(*) FROM webhook_deliveries").await,
        1
    );
}

#[tokio::test]
async fn user_updated_after_user_deleted_leaves_the_user_deleted() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let (user, team) = (stack_id(), stack_id());
    hooks
        .deliver_at(
            &user_event("user.created", &user, "ada@example.com", "Ada"),
            30,
        )
        .await;
    hooks
        .deliver_at(
            &membership_event("team_membership.created", &team, &user),
            30,
        )
        .await;
    let (org, ..) = org_of(hooks.pool(), &team).await.unwrap();
    assert_eq!(members(hooks.pool(), org).await.len(), 1);

    hooks
        .deliver_at(
            &json!({"type": "user.deleted", "data": {"id": user, "teams": [{"id": team}]}}),
            20,
        )
        .await;
    let deleted = UserState {
        email: None,
        name: None,
        deleted: true,
    };
    assert_eq!(user_state(hooks.pool(), &user).await.unwrap(), deleted);
    assert!(members(hooks.pool(), org).await.is_empty());

    // Later deliveries about the user, newer or older, change nothing.
    for (event, seconds_ago) in [
        (
            user_event("user.updated", &user, "ada@new.example", "Ada L."),
            10,
        ),
        (
            user_event("user.created", &user, "ada@example.com", "Ada"),
            40,
        ),
        (membership_event("team_membership.created", &team, &user), 0),
    ] {
        assert_eq!(
            hooks.deliver_at(&event, seconds_ago).await,
            json!({"applied": true})
        );
        assert_eq!(user_state(hooks.pool(), &user).await.unwrap(), deleted);
    }
    assert!(members(hooks.pool(), org).await.is_empty());
}

#[tokio::test]
async fn a_delete_that_comes_first_leaves_a_tombstone_nothing_resurrects() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let user = stack_id();
    hooks
        .deliver_at(
            &json!({"type": "user.deleted", "data": {"id": user, "teams": []}}),
            0,
        )
        .await;
    let tombstone = user_state(hooks.pool(), &user).await.unwrap();
    assert!(tombstone.deleted, "a tombstone row is written");
    // Svix delivered the creation late, with an older timestamp, and an update after it.
    hooks
        .deliver_at(
            &user_event("user.created", &user, "bob@example.com", "Bob"),
            60,
        )
        .await;
    hooks
        .deliver_at(
            &user_event("user.updated", &user, "bob@example.com", "Bob"),
            0,
        )
        .await;
    assert_eq!(user_state(hooks.pool(), &user).await.unwrap(), tombstone);
}

#[tokio::test]
async fn a_deleted_users_sessions_are_revoked_and_memberships_removed_everywhere() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let (user, other, team_a, team_b) = (stack_id(), stack_id(), stack_id(), stack_id());
    for team in [&team_a, &team_b] {
        hooks
            .deliver(&team_event("team.created", team, "Team"))
            .await;
        for member in [&user, &other] {
            hooks
                .deliver(&membership_event("team_membership.created", team, member))
                .await;
        }
    }
    let (uid, other_id) = (
        user_id(hooks.pool(), &user).await,
        user_id(hooks.pool(), &other).await,
    );
    for (owner, n) in [(uid, 1u8), (uid, 2), (other_id, 3)] {
        query(
            "INSERT INTO sessions (user_id, provider, refresh_token_hash, expires_at)
             VALUES ($1, 'stack', $2, now() + interval '1 day')",
        )
        .bind(owner)
        .bind(vec![n; 32])
        .execute(hooks.pool())
        .await
        .unwrap();
    }

    hooks
        .deliver(&json!({"type": "user.deleted", "data": {"id": user, "teams": []}}))
        .await;
    let live: Vec<(Uuid, bool)> =
        query_as("SELECT user_id, revoked_at IS NULL FROM sessions ORDER BY refresh_token_hash")
            .fetch_all(hooks.pool())
            .await
            .unwrap();
    assert_eq!(live, vec![(uid, false), (uid, false), (other_id, true)]);
    for team in [&team_a, &team_b] {
        let (org, ..) = org_of(hooks.pool(), team).await.unwrap();
        assert_eq!(
            members(hooks.pool(), org).await,
            vec![(other.clone(), "member".to_string())]
        );
    }
}

#[tokio::test]
async fn a_membership_before_its_team_and_user_creates_placeholders_filled_in_later() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let (user, team) = (stack_id(), stack_id());
    hooks
        .deliver(&membership_event("team_membership.created", &team, &user))
        .await;
    let (org, slug, name) = org_of(hooks.pool(), &team).await.unwrap();
    assert_eq!(name, format!("Stack team {team}"));
    assert!(slug.starts_with("stack-team-"), "{slug}");
    assert_eq!(
        members(hooks.pool(), org).await,
        vec![(user.clone(), "member".to_string())]
    );
    let placeholder = UserState {
        email: None,
        name: None,
        deleted: false,
    };
    assert_eq!(user_state(hooks.pool(), &user).await.unwrap(), placeholder);

    hooks
        .deliver(&team_event("team.created", &team, "Render Farm"))
        .await;
    hooks
        .deliver(&user_event("user.created", &user, "ada@example.com", "Ada"))
        .await;
    assert_eq!(
        org_of(hooks.pool(), &team).await.unwrap(),
        (org, "render-farm".to_string(), "Render Farm".to_string())
    );
    assert_eq!(
        user_state(hooks.pool(), &user)
            .await
            .unwrap()
            .email
            .as_deref(),
        Some("ada@example.com")
    );

    // A role set in fleetmon is never lowered by Stack re-adding the member; a rename changes
    // the name but not the slug, which is in URLs.
    query("UPDATE memberships SET role = 'admin' WHERE org_id = $1")
        .bind(org)
        .execute(hooks.pool())
        .await
        .unwrap();
    hooks
        .deliver(&membership_event("team_membership.created", &team, &user))
        .await;
    hooks
        .deliver(&team_event("team.updated", &team, "Render Farm EU"))
        .await;
    assert_eq!(
        members(hooks.pool(), org).await,
        vec![(user.clone(), "admin".to_string())]
    );
    assert_eq!(
        org_of(hooks.pool(), &team).await.unwrap(),
        (org, "render-farm".to_string(), "Render Farm EU".to_string())
    );
}

#[tokio::test]
async fn team_deleted_removes_every_access_but_keeps_the_monitoring_data() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let (team, ada, bob) = (stack_id(), stack_id(), stack_id());
    hooks
        .deliver(&team_event("team.created", &team, "Ops"))
        .await;
    for user in [&ada, &bob] {
        hooks
            .deliver(&membership_event("team_membership.created", &team, user))
            .await;
    }
    let (org, ..) = org_of(hooks.pool(), &team).await.unwrap();
    let mut tx = hooks.tenant.begin(TenantContext::org(org)).await.unwrap();
    tokens::create(tx.conn(), org, TokenKind::Read, "dashboards", None)
        .await
        .unwrap();
    fixtures::insert(tx.conn(), "machines", org).await.unwrap();
    tx.commit().await.unwrap();

    hooks
        .deliver(&json!({"type": "team.deleted", "data": {"id": team}}))
        .await;
    assert!(org_of(hooks.pool(), &team).await.is_none(), "unlinked");
    assert!(members(hooks.pool(), org).await.is_empty());
    let live_tokens = "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL";
    assert_eq!(hooks.count(live_tokens).await, 0);
    assert_eq!(hooks.count("SELECT count(*) FROM machines").await, 1);

    // Nothing arriving afterwards, in whatever order, brings the team or its members back.
    hooks
        .deliver_at(&team_event("team.updated", &team, "Ops again"), 0)
        .await;
    hooks
        .deliver_at(&membership_event("team_membership.created", &team, &ada), 0)
        .await;
    assert!(org_of(hooks.pool(), &team).await.is_none());
    assert!(members(hooks.pool(), org).await.is_empty());
    assert_eq!(hooks.count("SELECT count(*) FROM organizations").await, 1);
    assert_eq!(hooks.count("SELECT count(*) FROM memberships").await, 0);
}

#[tokio::test]
async fn two_updates_out_of_order_leave_the_later_one() {
    let hooks = Hooks::start(Some(SECRET)).await;
    let (user, team) = (stack_id(), stack_id());
    hooks
        .deliver_at(
            &user_event("user.updated", &user, "new@example.com", "New"),
            10,
        )
        .await;
    hooks
        .deliver_at(
            &user_event("user.updated", &user, "old@example.com", "Old"),
            20,
        )
        .await;
    hooks
        .deliver_at(&team_event("team.updated", &team, "New name"), 10)
        .await;
    hooks
        .deliver_at(&team_event("team.created", &team, "Old name"), 20)
        .await;
    let state = user_state(hooks.pool(), &user).await.unwrap();
    assert_eq!(
        (state.email.as_deref(), state.name.as_deref()),
        (Some("new@example.com"), Some("New"))
    );
    let (_, _, name) = org_of(hooks.pool(), &team).await.unwrap();
    assert_eq!(name, "New name");

    // Timestamps have whole seconds: within one, the later arrival wins.
    for name in ["First", "Second"] {
        hooks
            .deliver_at(&team_event("team.updated", &team, name), 0)
            .await;
    }
    let (_, _, name) = org_of(hooks.pool(), &team).await.unwrap();
    assert_eq!(name, "Second");
}

/// Every order of the same team and membership events gives the same org, name and members.
#[tokio::test]
async fn team_and_membership_events_in_every_order_give_the_same_rows() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let base = Utc::now() - chrono::TimeDelta::minutes(1);
    let at = |second: i64| base + chrono::TimeDelta::seconds(second);

    let mut outcomes = Vec::new();
    for order in permutations(5) {
        let (team, u1, u2) = (stack_id(), stack_id(), stack_id());
        let events: [(DateTime<Utc>, Value); 5] = [
            (at(1), team_event("team.created", &team, "Render Farm")),
            (
                at(2),
                membership_event("team_membership.created", &team, &u1),
            ),
            (
                at(3),
                membership_event("team_membership.created", &team, &u2),
            ),
            (
                at(4),
                membership_event("team_membership.deleted", &team, &u2),
            ),
            (at(5), team_event("team.updated", &team, "Render Farm EU")),
        ];
        for index in &order {
            let (timestamp, event) = &events[*index];
            let delivery = Delivery {
                id: new_id(),
                timestamp: *timestamp,
            };
            let parsed = stack_sync::parse(event.to_string().as_bytes()).unwrap();
            stack_sync::apply(&tenant, ISSUER, &delivery, &parsed)
                .await
                .unwrap();
        }
        let (org, slug, name) = org_of(&db.pool, &team).await.unwrap();
        // The slug comes from whichever team event arrived first; it never changes after that.
        assert!(slug.starts_with("render-farm"), "{order:?}: {slug}");
        let roles: Vec<(bool, String)> = members(&db.pool, org)
            .await
            .into_iter()
            .map(|(subject, role)| (subject == u1, role))
            .collect();
        let placeholders = user_state(&db.pool, &u2).await.is_some();
        outcomes.push((order, name, roles, placeholders));
    }
    let expected = (
        "Render Farm EU".to_string(),
        vec![(true, "member".to_string())],
        true,
    );
    for (order, name, roles, placeholders) in outcomes {
        assert_eq!((name, roles, placeholders), expected, "order {order:?}");
    }
}

/// Each ordering of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(n - 1) {
        for position in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(position, n - 1);
            all.push(order);
        }
    }
    all
}

/// Deliveries racing to create the same new team's org and members: one org, every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_about_a_new_team_create_its_org_once() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let team = stack_id();
    let users: Vec<String> = (0..8).map(|_| stack_id()).collect();
    let mut tasks = Vec::new();
    for user in &users {
        let tenant = tenant.clone();
        let event = membership_event("team_membership.created", &team, user);
        tasks.push(tokio::spawn(async move {
            let delivery = Delivery {
                id: new_id(),
                timestamp: Utc::now(),
            };
            let parsed = stack_sync::parse(event.to_string().as_bytes()).unwrap();
            stack_sync::apply(&tenant, ISSUER, &delivery, &parsed).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("every delivery applies");
    }
    let orgs: i64 = query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(orgs, 1);
    let (org, ..) = org_of(&db.pool, &team).await.unwrap();
    let mut expected: Vec<(String, String)> = users
        .into_iter()
        .map(|u| (u, "member".to_string()))
        .collect();
    expected.sort();
    assert_eq!(members(&db.pool, org).await, expected);
}
