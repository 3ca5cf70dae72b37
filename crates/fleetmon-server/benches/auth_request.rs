//! The auth layer's added latency per request, with warm key caches and a warm connection pool:
//! `GET /api/v1/orgs/{slug}` through fleetmon's real router, served in process on loopback and
//! authenticated three ways — a fleetmon session access token (EdDSA, then the session check), a
//! `read` API token (hash lookup), and an external provider's JWT (ES256, keys from a JWKS server
//! in this process, then user sync). Baselines measured in the same run: the same HTTP path
//! without auth (`/healthz`; `/readyz` adds one database transaction), and the physical limit of
//! the database part — the auth path's own statements, in the same transactions, run directly
//! on the same pool.
//!
//! `cargo bench -p fleetmon-server --bench auth_request` (`BENCH_REQUESTS=N` per kind and round,
//! default 1000; `BENCH_ROUNDS=N`, default 3; `BENCH_CLIENTS=N` for the concurrent throughput
//! column, default 2, 1 skips it). Latencies are per request from one client, over all rounds.

#[path = "support/env.rs"]
mod env;
// A key kit shared with the tests; this benchmark needs only its ES256 keys.
#[allow(dead_code)]
#[path = "../tests/it/jwt_keys.rs"]
mod jwt_keys;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/request.rs"]
mod request;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::header::SET_COOKIE;
use fleetmon_server::auth::settings::{AuthSettings, OidcConfig};
use fleetmon_server::auth::users::{self, Identity, Synced};
use fleetmon_server::auth::{local, tokens, Auth};
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::http::{self, cookies, AppState};
use fleetmon_server::ingest::Limits;
use fleetmon_server::orgs;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use env::env_or;
use jwt_keys::{jwks, TestKey};
use pg::BenchPostgres;

const OWNER_EMAIL: &str = "owner@bench.test";
const PASSWORD: &str = "a long enough password";
const EXTERNAL_EMAIL: &str = "external@bench.test";
const AUDIENCE: &str = "fleetmon-bench";
/// The external issuer's provider name in fleetmon's settings.
const PROVIDER: &str = "bench";
const SLUG: &str = "bench";
/// How the rows pair up: each auth method is a request row followed by its SQL row, after the
/// two baselines.
const METHODS: [&str; 3] = [
    "session token (EdDSA)",
    "read API token",
    "external JWT (ES256)",
];

/// One kind of operation the benchmark times.
#[derive(Clone)]
enum Probe {
    /// A GET through the in-process server; it must answer 200.
    Get {
        path: String,
        bearer: Option<String>,
    },
    /// What `Principal` and `OrgAccess::resolve` run for a session token.
    SessionSql { user_id: Uuid, session_id: Uuid },
    /// ... for a read API token.
    ReadTokenSql { org_id: Uuid, token: String },
    /// ... for an external provider's token, whose claims are already verified.
    ExternalSql { identity: Identity },
}

/// What probes run against; cheap to clone into concurrent tasks.
#[derive(Clone)]
struct Target {
    base: String,
    http: reqwest::Client,
    db: TenantDb,
}

impl Target {
    async fn run(&self, probe: &Probe) {
        match probe {
            Probe::Get { path, bearer } => {
                let url = format!("{}{path}", self.base);
                request::get_ok(&self.http, &url, bearer.as_deref()).await;
            }
            Probe::SessionSql {
                user_id,
                session_id,
            } => self.enter(*user_id, Some(*session_id)).await,
            Probe::ReadTokenSql { org_id, token } => {
                let mut tx = self.db.begin(TenantContext::org(*org_id)).await.unwrap();
                let verdict = tokens::authenticate(tx.conn(), *org_id, token, Some(SLUG)).await;
                tx.commit().await.unwrap();
                let found = verdict.unwrap().expect("a valid token");
                assert_eq!(found.identity.kind, tokens::TokenKind::Read);
                assert!(found.org.is_some(), "the token's org");
            }
            Probe::ExternalSql { identity } => {
                let mut tx = self.db.begin(TenantContext::none()).await.unwrap();
                let synced = users::sync(tx.conn(), identity).await;
                tx.commit().await.unwrap();
                let Ok(Synced::Active { user_id, .. }) = synced else {
                    panic!("the external user is active: {synced:?}");
                };
                self.enter(user_id, None).await;
            }
        }
    }

    /// `OrgAccess::open` for a user: the session check (for fleetmon's own tokens), the org and
    /// their role in it, in one statement.
    async fn enter(&self, user_id: Uuid, session: Option<Uuid>) {
        let context = TenantContext::none().with_user(user_id);
        let mut tx = self.db.begin(context).await.unwrap();
        let entry = orgs::enter(tx.conn(), user_id, session, Some(SLUG)).await;
        tx.commit().await.unwrap();
        let entry = entry.unwrap();
        assert!(entry.session_live, "the session is live");
        assert!(entry.membership.is_some(), "the user is a member");
    }

    async fn post(&self, bearer: &str, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// The owner signed in: a fresh session each round, as fleetmon's access tokens last 5 minutes.
struct Session {
    token: String,
    user_id: Uuid,
    session_id: Uuid,
}

async fn sign_in(target: &Target, state: &AppState) -> Session {
    let response = target
        .http
        .post(format!("{}/auth/local/sign-in", target.base))
        .json(&json!({ "email": OWNER_EMAIL, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "sign-in");
    let prefix = format!("{}=", cookies::ACCESS);
    let token = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| {
            value
                .to_str()
                .ok()?
                .strip_prefix(&prefix)?
                .split(';')
                .next()
        })
        .next()
        .expect("an access-token cookie")
        .to_string();
    let (_, verified) = state.auth.providers.verify(&token).await.unwrap();
    let session_id = verified.claims["sid"].as_str().and_then(|s| s.parse().ok());
    Session {
        user_id: verified.subject.parse().unwrap(),
        session_id: session_id.expect("the token names its session"),
        token,
    }
}

/// Everything that stays the same across rounds.
struct Fixture {
    org_id: Uuid,
    read_token: String,
    external_token: String,
    external_identity: Identity,
}

impl Fixture {
    /// The rows of the table, in order: two baselines, then per method its request and its SQL.
    fn probes(&self, session: &Session) -> Vec<(String, Probe)> {
        let org_path = format!("/api/v1/orgs/{SLUG}");
        let get = |bearer: &str| Probe::Get {
            path: org_path.clone(),
            bearer: Some(bearer.to_string()),
        };
        let label = |method: usize| format!("GET /orgs/{{slug}}, {}", METHODS[method]);
        vec![
            (
                "GET /healthz (no auth, no DB)".into(),
                Probe::Get {
                    path: "/healthz".into(),
                    bearer: None,
                },
            ),
            (
                "GET /readyz (no auth, 1 transaction)".into(),
                Probe::Get {
                    path: "/readyz".into(),
                    bearer: None,
                },
            ),
            (label(0), get(&session.token)),
            (
                "  its SQL alone (1 transaction)".into(),
                Probe::SessionSql {
                    user_id: session.user_id,
                    session_id: session.session_id,
                },
            ),
            (label(1), get(&self.read_token)),
            (
                "  its SQL alone (1 transaction)".into(),
                Probe::ReadTokenSql {
                    org_id: self.org_id,
                    token: self.read_token.clone(),
                },
            ),
            (label(2), get(&self.external_token)),
            (
                "  its SQL alone (2 transactions)".into(),
                Probe::ExternalSql {
                    identity: self.external_identity.clone(),
                },
            ),
        ]
    }
}

/// Serves `document` at `/jwks` on loopback; returns the base URL (which is also the issuer).
async fn serve_jwks(document: Value) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(document) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The org, its read token and the external user's membership, set up over HTTP as a user would.
async fn set_up(target: &Target, state: &AppState, key: &TestKey, issuer: &str) -> Fixture {
    let mut tx = target.db.begin(TenantContext::none()).await.unwrap();
    local::create_account(tx.conn(), OWNER_EMAIL, None, PASSWORD)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let owner = sign_in(target, state).await.token;
    let created = target
        .post(&owner, "/api/v1/orgs", json!({ "slug": SLUG }))
        .await;
    let org_id = created["org"]["id"].as_str().unwrap().parse().unwrap();
    let tokens_path = format!("/api/v1/orgs/{SLUG}/tokens");
    let read = json!({ "kind": "read", "name": "bench" });
    let read_token = target.post(&owner, &tokens_path, read).await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    // An invitation by email, which the external user's first request accepts.
    let members_path = format!("/api/v1/orgs/{SLUG}/members");
    let invite = json!({ "email": EXTERNAL_EMAIL, "role": "viewer" });
    target.post(&owner, &members_path, invite).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": issuer, "aud": AUDIENCE, "sub": "bench-user", "email": EXTERNAL_EMAIL,
        "email_verified": true, "name": "Bench User", "iat": now, "exp": now + 86_400,
    });
    let external_token = key.sign(&key.header(), &claims);
    let first = Probe::Get {
        path: format!("/api/v1/orgs/{SLUG}"),
        bearer: Some(external_token.clone()),
    };
    target.run(&first).await;
    let (provider, verified) = state.auth.providers.verify(&external_token).await.unwrap();
    Fixture {
        org_id,
        read_token,
        external_identity: provider.identity(&verified).unwrap(),
        external_token,
    }
}

/// Key-set fetches so far: fleetmon's own, and the external issuer's.
fn fetches(state: &AppState) -> (u64, u64) {
    let count = |name| {
        let provider = state.auth.providers.named(name).expect("a provider");
        provider.verifier.keys().fetch_count()
    };
    (count("local"), count(PROVIDER))
}

#[derive(Default)]
struct Figures {
    latencies: Vec<Duration>,
    sequential: Duration,
    concurrent: Duration,
    concurrent_requests: usize,
}

fn percentile_us(sorted: &[Duration], percent: usize) -> f64 {
    sorted[(sorted.len() - 1) * percent / 100].as_secs_f64() * 1e6
}

/// `requests` runs of `probe` split over `clients` concurrent tasks; the wall time and count.
async fn concurrently(
    target: &Target,
    probe: &Probe,
    clients: usize,
    requests: usize,
) -> (Duration, usize) {
    let each = requests.div_ceil(clients);
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..clients {
        let (target, probe) = (target.clone(), probe.clone());
        tasks.spawn(async move {
            for _ in 0..each {
                target.run(&probe).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task");
    }
    (start.elapsed(), each * clients)
}

#[tokio::main]
async fn main() {
    let requests = env_or("BENCH_REQUESTS", 1000).max(1);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let clients = env_or("BENCH_CLIENTS", 2).max(1);
    let warmup = requests / 10 + 1;

    let pg = BenchPostgres::start(4).await;
    let db = TenantDb::new(pg.pool.clone());
    let key = TestKey::es256("bench-es256");
    let issuer = serve_jwks(jwks(&[&key])).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = AuthSettings {
        public_url: base.clone(),
        local: true,
        stack: None,
        oidc: vec![OidcConfig {
            name: PROVIDER.into(),
            display_name: "Bench issuer".into(),
            issuer: issuer.clone(),
            audiences: vec![AUDIENCE.into()],
            accept_azp: false,
            client_id: None,
            client_secret: None,
            jwks_url: Some(format!("{issuer}/jwks")),
            algorithms: vec![Algorithm::ES256],
            leeway: Duration::from_secs(60),
            org_claim: None,
            scopes: Vec::new(),
        }],
    };
    let auth = Auth::new(settings, &db).expect("the benchmark's auth settings");
    let state = AppState::new(db.clone(), Limits::default(), auth);
    let server = http::serve(
        listener,
        http::router(state.clone()),
        std::future::pending(),
    );
    tokio::spawn(server);
    let target = Target {
        base,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        db,
    };
    let fixture = set_up(&target, &state, &key, &issuer).await;

    eprintln!("{rounds} rounds of {requests} requests per kind (after {warmup} to warm up)…");
    let fetched_before = fetches(&state);
    let mut rows: Vec<(String, Figures)> = Vec::new();
    for _ in 0..rounds {
        let session = sign_in(&target, &state).await;
        let probes = fixture.probes(&session);
        if rows.is_empty() {
            rows = probes
                .iter()
                .map(|(label, _)| (label.clone(), Figures::default()))
                .collect();
        }
        for ((_, probe), (_, figures)) in probes.iter().zip(&mut rows) {
            for _ in 0..warmup {
                target.run(probe).await;
            }
            let start = Instant::now();
            for _ in 0..requests {
                let sent = Instant::now();
                target.run(probe).await;
                figures.latencies.push(sent.elapsed());
            }
            figures.sequential += start.elapsed();
            if clients > 1 {
                let (elapsed, count) = concurrently(&target, probe, clients, requests).await;
                figures.concurrent += elapsed;
                figures.concurrent_requests += count;
            }
        }
    }
    let fetched_after = fetches(&state);

    let also = match clients {
        1 => String::new(),
        n => format!(" (req/s also with {n})"),
    };
    println!(
        "auth per request, warm key caches and pool: {rounds} rounds × {requests} requests per \
         kind, one client{also}"
    );
    println!(
        "{:<46} {:>10} {:>10} {:>10} {:>10}",
        "kind",
        "median µs",
        "p99 µs",
        "req/s ×1",
        format!("req/s ×{clients}")
    );
    let mut medians = Vec::new();
    for (label, figures) in &mut rows {
        figures.latencies.sort();
        let sorted = &figures.latencies;
        let median = percentile_us(sorted, 50);
        let concurrent = if figures.concurrent_requests > 0 {
            format!(
                "{:.0}",
                figures.concurrent_requests as f64 / figures.concurrent.as_secs_f64()
            )
        } else {
            "-".into()
        };
        println!(
            "{label:<46} {median:>10.1} {:>10.1} {:>10.0} {concurrent:>10}",
            percentile_us(sorted, 99),
            sorted.len() as f64 / figures.sequential.as_secs_f64(),
        );
        medians.push(median);
    }
    println!();
    println!(
        "one transaction through HTTP (/readyz minus /healthz): {:.1} µs",
        medians[1] - medians[0]
    );
    for (method, name) in METHODS.iter().enumerate() {
        let added = medians[2 + 2 * method] - medians[0];
        let sql = medians[3 + 2 * method];
        println!(
            "{name}: auth adds {added:.1} µs per request; its SQL alone costs {sql:.1} µs; \
             ratio {:.2}",
            added / sql
        );
    }
    println!(
        "key-set fetches while timing: local {}, external {} (cache TTL 10 min)",
        fetched_after.0 - fetched_before.0,
        fetched_after.1 - fetched_before.1
    );
    pg.stop().await;
}
