//! The dashboard's pages on a large history: p50/p99 time and bytes transferred of every page
//! of the largest org, through fleetmon's real router served in process on loopback, signed in
//! as a local admin of that org through the real sign-in endpoint (`POST /auth/local/sign-in`),
//! with the session cookie a browser would hold. The fixture is the query benchmark's
//! (`support/fixture.rs`): `BENCH_SIZES` jobs with their events across several orgs, seeded once
//! into a database of its own on an external PostgreSQL server and reused; seeding a missing
//! 1-million-job fixture takes a few minutes.
//!
//! Times are measured by the client, from sending the request to the last byte of the body, on
//! loopback, with client and server sharing the machine (and this process): they are the server's
//! time plus a loopback round trip. Requests send `Accept: text/html` and `Accept-Encoding: gzip`,
//! and bytes are counted as they arrive (the client never decompresses): a server that compresses
//! shows compressed sizes, one that does not, uncompressed ones; the table says which it got.
//! "Transferred" is the body plus the response's status line and headers. A page's first load is
//! its HTML and every `/assets/…` file it references (stylesheet, script, icon), as a browser with
//! an empty cache fetches them. Where the server sent a body uncompressed, the "gzipped" column
//! also shows the first load with those bodies gzipped here (level 6): what a compressing server
//! would send.
//!
//! `cargo bench -p fleetmon-server --bench pages`, with
//! - `BENCH_DATABASE_URL` — the server (default `postgres://postgres@127.0.0.1:5432/postgres`; its
//!   user must be able to create databases);
//! - `BENCH_SIZES` — jobs in the fixture (default `1000000`; only the first size is used);
//! - `BENCH_SEED` (default 2026), `BENCH_RESEED=1`, `BENCH_MIN_FREE_GIB`: as for the query
//!   benchmark;
//! - `BENCH_REQUESTS` — timed requests per page (default 200), after `BENCH_WARMUP_REQUESTS`
//!   untimed ones (default 20), from `BENCH_CLIENTS` concurrent clients (default 4);
//! - `BENCH_PAGES` — only the pages whose names contain one of these comma-separated words;
//! - `BENCH_STATEMENTS=1` — print the statements of every page, not only of those that miss a
//!   target: after the timed runs, one more request of such a page is read alone with sqlx's
//!   statement log on, and each statement it ran is printed with its time (from sending it to its
//!   last row, as sqlx measures it) and rows, against the request's own time.
//!
//! A page is flagged when its p99 is 50 ms or more or its first load over 150 KB (150,000 bytes):
//! the dashboard issue's targets.

#[path = "support/env.rs"]
mod env;
#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/history.rs"]
mod history;
#[path = "support/latency.rs"]
mod latency;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use fleetmon_server::auth::local::{self, AccountError};
use fleetmon_server::auth::settings::AuthSettings;
use fleetmon_server::auth::Auth;
use fleetmon_server::db::sql::query_as;
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::http::{self, AppState};
use fleetmon_server::ingest::Limits;
use fleetmon_server::query::jobs::Cursor;
use reqwest::header::{self, HeaderMap};
use sqlx::postgres::PgPoolOptions;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{Context, SubscriberExt};

use env::env_or;
use fixture::{Fixture, Params};
use history::{COMMON_WORD, RARE_WORD};
use latency::Figures;

/// The targets.
const P99_TARGET_MS: f64 = 50.0;
const FIRST_LOAD_TARGET_BYTES: u64 = 150_000;
/// Jobs the job page reads, spread over the history.
const SAMPLED_JOBS: u32 = 16;
/// Machines the machine page reads.
const SAMPLED_MACHINES: usize = 8;
/// The benchmark's own account, an admin of the largest org; kept between runs.
const ADMIN_EMAIL: &str = "pagebench-admin@bench.invalid";
const ADMIN_PASSWORD: &str = "pagebench: a long local password";

/// A page of the dashboard and the URLs it is read at (clients cycle through them).
struct Page {
    name: String,
    paths: Vec<String>,
    /// Read without a session (the sign-in page), as a new visitor does.
    anonymous: bool,
}

impl Page {
    fn signed_in(name: impl Into<String>, paths: Vec<String>) -> Self {
        Self {
            name: name.into(),
            paths,
            anonymous: false,
        }
    }
}

/// One answer, as it came over the wire.
struct Fetched {
    status: u16,
    /// The status line, headers and body.
    transferred: u64,
    encoding: Option<String>,
    body: Vec<u8>,
}

impl Fetched {
    /// What would have been transferred with the body gzipped (level 6, the usual default) when
    /// it came uncompressed; what was transferred when it came compressed.
    fn gzipped(&self) -> u64 {
        if self.encoding.is_some() {
            return self.transferred;
        }
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&self.body).unwrap();
        let compressed = encoder.finish().unwrap().len() as u64;
        self.transferred - self.body.len() as u64
            + "content-encoding: gzip\r\n".len() as u64
            + compressed
    }

    /// The body as text, gunzipped if it came gzipped (the only encoding the requests accept).
    fn text(&self) -> String {
        match self.encoding.as_deref() {
            None => String::from_utf8_lossy(&self.body).into_owned(),
            Some("gzip") => {
                let mut text = String::new();
                GzDecoder::new(self.body.as_slice())
                    .read_to_string(&mut text)
                    .expect("a gzipped page");
                text
            }
            Some(other) => panic!("an encoding the request did not accept: {other}"),
        }
    }
}

/// The in-process server and the two ways of reading it.
struct Target {
    base: String,
    /// Holds the session's cookies.
    session: reqwest::Client,
    /// No cookies: a first visit.
    anonymous: reqwest::Client,
}

impl Target {
    fn client(&self, page: &Page) -> &reqwest::Client {
        if page.anonymous {
            &self.anonymous
        } else {
            &self.session
        }
    }

    async fn fetch(&self, client: &reqwest::Client, path: &str) -> Fetched {
        let response = client
            .get(format!("{}{path}", self.base))
            .header(header::ACCEPT, "text/html")
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .expect("the in-process server answers");
        let status = response.status().as_u16();
        let head = header_bytes(response.headers());
        let encoding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.expect("the response body").to_vec();
        Fetched {
            status,
            transferred: head + body.len() as u64,
            encoding,
            body,
        }
    }

    /// A fresh access token from the session's refresh cookie (`/auth/resume`), so that a page's
    /// run never meets an expired one (they live 5 minutes).
    async fn renew(&self) {
        let response = self
            .session
            .get(format!("{}/auth/resume?return_to=/orgs", self.base))
            .send()
            .await
            .unwrap();
        let location = response.headers().get(header::LOCATION).cloned();
        assert!(
            response.status().is_redirection() && location.as_ref().is_some_and(|l| l == "/orgs"),
            "renewing the session: {} to {location:?}",
            response.status()
        );
    }
}

/// The status line and headers as HTTP/1.1 sends them.
fn header_bytes(headers: &HeaderMap) -> u64 {
    let status_line = "HTTP/1.1 200 OK\r\n".len();
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (status_line + fields + 2) as u64
}

/// The `/assets/…` files an HTML page references (`href=` and `src=`).
fn referenced_assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"/assets/", "src=\"/assets/"] {
        for (at, _) in html.match_indices(attribute) {
            let start = at + attribute.len() - "/assets/".len();
            let end = html[start..].find('"').map_or(html.len(), |e| start + e);
            let path = html[start..end].to_string();
            if !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found
}

/// One statement as sqlx logged it.
struct Logged {
    sql: String,
    ms: f64,
    rows: u64,
}

/// sqlx's statement log (its `sqlx::query` events), recorded while `recording` is on. Off, sqlx
/// does not even format its events, and no other event or span of the process is enabled: the
/// timed runs pay nothing for it.
#[derive(Default)]
struct StatementLog {
    recording: AtomicBool,
    logged: Mutex<Vec<Logged>>,
}

impl StatementLog {
    fn start(&self) {
        self.logged.lock().unwrap().clear();
        self.recording.store(true, Ordering::SeqCst);
    }

    fn stop(&self) -> Vec<Logged> {
        self.recording.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.logged.lock().unwrap())
    }
}

#[derive(Default)]
struct LoggedFields {
    summary: String,
    statement: String,
    seconds: f64,
    rows: u64,
}

impl Visit for LoggedFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.seconds = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows = value;
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

struct StatementLayer(Arc<StatementLog>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementLayer {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
        if metadata.target() == "sqlx::query" {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == "sqlx::query" && self.0.recording.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = LoggedFields::default();
        event.record(&mut fields);
        // The whole statement when sqlx shortened it to a summary; one line, shortened again.
        let sql = if fields.statement.is_empty() {
            fields.summary
        } else {
            fields.statement
        };
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        self.0.logged.lock().unwrap().push(Logged {
            sql,
            ms: fields.seconds * 1e3,
            rows: fields.rows,
        });
    }
}

/// One request of `page` alone, with the statements it ran; printed under the table.
struct Breakdown {
    page: String,
    request_ms: f64,
    statements: Vec<Logged>,
}

async fn breakdown(target: &Target, page: &Page, log: &StatementLog) -> Breakdown {
    if !page.anonymous {
        target.renew().await;
    }
    log.start();
    let sent = Instant::now();
    let fetched = target.fetch(target.client(page), &page.paths[0]).await;
    let request_ms = sent.elapsed().as_secs_f64() * 1e3;
    let statements = log.stop();
    assert_eq!(fetched.status, 200, "GET {}", page.paths[0]);
    Breakdown {
        page: page.name.clone(),
        request_ms,
        statements,
    }
}

fn print_breakdowns(breakdowns: &[Breakdown]) {
    for b in breakdowns {
        let sql_ms: f64 = b.statements.iter().map(|s| s.ms).sum();
        println!(
            "\n{}: one request alone, {:.1} ms, of which {:.1} ms in {} statements (sqlx's time \
             per statement, sending to last row):",
            b.page,
            b.request_ms,
            sql_ms,
            b.statements.len()
        );
        println!("| ms | rows | statement |");
        println!("|---|---|---|");
        for s in &b.statements {
            let sql = if s.sql.chars().count() > 140 {
                format!("{}…", s.sql.chars().take(140).collect::<String>())
            } else {
                s.sql.clone()
            };
            println!("| {:.2} | {} | `{sql}` |", s.ms, s.rows);
        }
    }
}

/// What one page measured.
struct Row {
    name: String,
    example: String,
    variants: usize,
    figures: Figures,
    /// The largest variant's answer.
    transferred: u64,
    body: u64,
    encoding: Option<String>,
    /// That answer plus the assets it references.
    first_load: u64,
    /// The same with every uncompressed body gzipped.
    first_load_gzipped: u64,
    load: String,
}

impl Row {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let p99 = self.figures.percentile_ms(99.0);
        if p99 >= P99_TARGET_MS {
            problems.push(format!("p99 {p99:.0} ms ≥ {P99_TARGET_MS:.0} ms"));
        }
        if self.first_load > FIRST_LOAD_TARGET_BYTES {
            let gzipped = if self.first_load_gzipped == self.first_load {
                String::new()
            } else {
                format!(" ({} gzipped)", kb(self.first_load_gzipped))
            };
            problems.push(format!(
                "first load {} > {}{gzipped}",
                kb(self.first_load),
                kb(FIRST_LOAD_TARGET_BYTES)
            ));
        }
        problems
    }
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

struct Settings {
    requests: usize,
    warmup: usize,
    clients: usize,
}

/// Reads `page` `count` times from `clients` clients, cycling through its URLs; every answer must
/// be a 200. Returns the latencies and throughput, and the largest answer per URL.
async fn run(
    target: &Arc<Target>,
    page: &Arc<Page>,
    count: usize,
    clients: usize,
) -> (Figures, Vec<Fetched>) {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (target, page, next) = (target.clone(), page.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut largest: BTreeMap<usize, Fetched> = BTreeMap::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let variant = n % page.paths.len();
                let path = &page.paths[variant];
                let sent = Instant::now();
                let fetched = target.fetch(target.client(&page), path).await;
                latencies.push(sent.elapsed());
                assert_eq!(fetched.status, 200, "GET {path}: {}", fetched.text());
                keep_largest(&mut largest, variant, fetched);
            }
            (latencies, largest)
        });
    }
    let mut latencies = Vec::new();
    let mut largest: BTreeMap<usize, Fetched> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (more, answers) = done.expect("a client task");
        latencies.extend(more);
        for (variant, fetched) in answers {
            keep_largest(&mut largest, variant, fetched);
        }
    }
    let per_second = count as f64 / started.elapsed().as_secs_f64();
    (
        Figures::new(latencies, per_second),
        largest.into_values().collect(),
    )
}

/// Keeps the largest answer seen for each URL.
fn keep_largest(largest: &mut BTreeMap<usize, Fetched>, variant: usize, fetched: Fetched) {
    if largest
        .get(&variant)
        .is_none_or(|f| f.transferred < fetched.transferred)
    {
        largest.insert(variant, fetched);
    }
}

async fn measure(
    target: &Arc<Target>,
    page: &Arc<Page>,
    settings: &Settings,
    assets: &mut BTreeMap<String, (u64, u64)>,
) -> Row {
    if !page.anonymous {
        target.renew().await;
    }
    let load = load_average();
    run(target, page, settings.warmup, settings.clients).await;
    let (figures, answers) = run(target, page, settings.requests, settings.clients).await;
    let largest = answers
        .into_iter()
        .max_by_key(|f| f.transferred)
        .expect("at least one request");
    let (mut first_load, mut first_load_gzipped) = (largest.transferred, largest.gzipped());
    for asset in referenced_assets(&largest.text()) {
        if !assets.contains_key(&asset) {
            let fetched = target.fetch(&target.anonymous, &asset).await;
            assert_eq!(fetched.status, 200, "GET {asset}");
            assets.insert(asset.clone(), (fetched.transferred, fetched.gzipped()));
        }
        let (transferred, gzipped) = assets[&asset];
        first_load += transferred;
        first_load_gzipped += gzipped;
    }
    Row {
        name: page.name.clone(),
        example: page.paths[0].clone(),
        variants: page.paths.len(),
        figures,
        transferred: largest.transferred,
        body: largest.body.len() as u64,
        encoding: largest.encoding,
        first_load,
        first_load_gzipped,
        load,
    }
}

/// The benchmark's admin of the org: created once, kept (with its fixed password) after.
async fn ensure_admin(db: &TenantDb, org_id: uuid::Uuid) {
    let mut tx = db.begin(TenantContext::none()).await.unwrap();
    let created = local::create_account(
        tx.conn(),
        ADMIN_EMAIL,
        Some("Page benchmark"),
        ADMIN_PASSWORD,
    )
    .await;
    let user_id = match created {
        Ok(id) => id,
        Err(AccountError::Exists(_)) => {
            let (id,): (uuid::Uuid,) =
                query_as("SELECT user_id FROM local_accounts WHERE lower(email) = lower($1)")
                    .bind(ADMIN_EMAIL)
                    .fetch_one(tx.conn())
                    .await
                    .unwrap();
            id
        }
        Err(error) => panic!("creating the benchmark's admin: {error}"),
    };
    tx.commit().await.unwrap();
    let mut tx = db.begin(TenantContext::org(org_id)).await.unwrap();
    local::add_member(tx.conn(), org_id, user_id, "admin")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Signs in through the real endpoint, as the sign-in page's script does; the cookies land in
/// the session client's jar.
async fn sign_in(target: &Target) {
    let response = target
        .session
        .post(format!("{}/auth/local/sign-in", target.base))
        .header(header::ORIGIN, &target.base)
        .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 200, "sign-in: {}", response.text().await.unwrap());
}

/// Ids from the fixture the pages are read at.
struct Ids {
    jobs: Vec<fixture::SampledJob>,
    /// The job with the most attempts (the longest timeline), and its event count.
    longest: (String, i64),
    machines: Vec<String>,
    /// The first machine of the list's second page.
    second_machine_page: String,
}

async fn ids(db: &TenantDb, fixture: &Fixture) -> Ids {
    let org = &fixture.orgs[0];
    let jobs = fixture::sample_jobs(db, fixture, SAMPLED_JOBS).await;
    // The machines those jobs ran on.
    let mut machines: Vec<String> = Vec::new();
    for id in jobs.iter().filter_map(|job| job.machine_id.clone()) {
        if !machines.contains(&id) && machines.len() < SAMPLED_MACHINES {
            machines.push(id);
        }
    }
    let mut tx = db.begin(TenantContext::org(org.id)).await.unwrap();
    let (longest,): (String,) = query_as(
        "SELECT id FROM jobs WHERE org_id = $1 ORDER BY attempt DESC, created_at DESC LIMIT 1",
    )
    .bind(org.id)
    .fetch_one(tx.conn())
    .await
    .unwrap();
    let (events,): (i64,) =
        query_as("SELECT count(*) FROM job_events WHERE org_id = $1 AND job_id = $2")
            .bind(org.id)
            .bind(&longest)
            .fetch_one(tx.conn())
            .await
            .unwrap();
    // The list pages by id, 100 a page (`web::fleet::LIST_PAGE`).
    let (second_machine_page,): (String,) =
        query_as("SELECT id FROM machines WHERE org_id = $1 ORDER BY id OFFSET 99 LIMIT 1")
            .bind(org.id)
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    Ids {
        jobs,
        longest: (longest, events),
        machines,
        second_machine_page,
    }
}

/// Every dashboard page (`web::router`'s GET routes) of the fixture's largest org.
fn pages(fixture: &Fixture, ids: &Ids) -> Vec<Page> {
    let org = format!("/orgs/{}", fixture.orgs[0].slug);
    let middle = &ids.jobs[ids.jobs.len() / 2];
    let cursor = Cursor {
        created_at: middle.created_at,
        id: middle.id.clone(),
    };
    let one = |path: String| vec![path];
    vec![
        Page {
            name: "sign-in (no session)".into(),
            paths: one("/sign-in".into()),
            anonymous: true,
        },
        Page::signed_in("org list", one("/orgs".into())),
        Page::signed_in("overview", one(org.clone())),
        Page::signed_in("jobs, no filter", one(format!("{org}/jobs"))),
        Page::signed_in(
            "jobs, status + type",
            one(format!("{org}/jobs?status=failed&job_type=image.generate")),
        ),
        Page::signed_in(
            format!("jobs, search {COMMON_WORD:?} (~1/64)"),
            one(format!("{org}/jobs?q={COMMON_WORD}")),
        ),
        Page::signed_in(
            format!("jobs, search {RARE_WORD:?} (~1/10,000)"),
            one(format!("{org}/jobs?q={RARE_WORD}")),
        ),
        Page::signed_in(
            "jobs, one machine",
            one(format!("{org}/jobs?machine={}", ids.machines[0])),
        ),
        Page::signed_in(
            "jobs, one worker",
            one(format!(
                "{org}/jobs?worker={}",
                middle.worker_id.as_deref().expect("a job that ran")
            )),
        ),
        Page::signed_in("jobs, 24 h range", one(format!("{org}/jobs?range=24h"))),
        Page::signed_in(
            "jobs, page 15 days back (cursor)",
            one(format!("{org}/jobs?cursor={}", cursor.encode())),
        ),
        Page::signed_in(
            format!("job ({SAMPLED_JOBS} across the history)"),
            ids.jobs
                .iter()
                .map(|job| format!("{org}/jobs/{}", job.id))
                .collect(),
        ),
        Page::signed_in(
            format!("job, longest timeline ({} events)", ids.longest.1),
            one(format!("{org}/jobs/{}", ids.longest.0)),
        ),
        Page::signed_in("machines", one(format!("{org}/machines"))),
        Page::signed_in(
            "machines, second page",
            one(format!("{org}/machines?after={}", ids.second_machine_page)),
        ),
        Page::signed_in(
            "machines, offline",
            one(format!("{org}/machines?liveness=offline")),
        ),
        Page::signed_in(
            format!("machine ({SAMPLED_MACHINES} machines, 24 h GPU history)"),
            ids.machines
                .iter()
                .map(|id| format!("{org}/machines/{id}"))
                .collect(),
        ),
        Page::signed_in(
            "machine, 7 d GPU history",
            one(format!("{org}/machines/{}?range=7d", ids.machines[0])),
        ),
        Page::signed_in("metrics, 1 h", one(format!("{org}/metrics?range=1h"))),
        Page::signed_in("metrics, 24 h", one(format!("{org}/metrics?range=24h"))),
        Page::signed_in("metrics, 7 d", one(format!("{org}/metrics?range=7d"))),
        Page::signed_in("metrics, 30 d", one(format!("{org}/metrics?range=30d"))),
        Page::signed_in(
            "metrics, 24 h, one job type",
            one(format!("{org}/metrics?range=24h&job_type=llm.infer")),
        ),
        Page::signed_in("settings", one(format!("{org}/settings"))),
        Page::signed_in("audit log", one(format!("{org}/settings/audit"))),
    ]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_table(fixture: &Fixture, settings: &Settings, rows: &[Row]) {
    let org = &fixture.orgs[0];
    println!();
    println!(
        "{}: {} jobs, {} events; org {} has {} jobs; {} requests per page after {} untimed, \
         {} clients; times measured by the client on loopback",
        fixture.database,
        fixture.jobs,
        fixture.events,
        org.slug,
        org.jobs,
        settings.requests,
        settings.warmup,
        settings.clients
    );
    println!(
        "| page | example URL | URLs | p50 ms | p99 ms | max ms | req/s | body | encoding | \
         transferred | first load | gzipped | load | verdict |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let problems = row.problems();
        let verdict = if problems.is_empty() {
            "met".to_string()
        } else {
            format!("**MISSED**: {}", problems.join(", "))
        };
        println!(
            "| {} | `{}` | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | \
             {verdict} |",
            row.name,
            row.example,
            row.variants,
            row.figures.percentile_ms(50.0),
            row.figures.percentile_ms(99.0),
            row.figures.percentile_ms(100.0),
            row.figures.per_second,
            kb(row.body),
            row.encoding.as_deref().unwrap_or("identity"),
            kb(row.transferred),
            kb(row.first_load),
            kb(row.first_load_gzipped),
            row.load,
        );
    }
    let missed: Vec<&Row> = rows.iter().filter(|r| !r.problems().is_empty()).collect();
    println!();
    if missed.is_empty() {
        println!("every page met p99 < {P99_TARGET_MS:.0} ms and first load ≤ 150 KB");
    } else {
        println!("{} of {} pages missed a target:", missed.len(), rows.len());
        for row in missed {
            println!("- {}: {}", row.name, row.problems().join(", "));
        }
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let server = fleetmon_server::db::parse_url(&url).expect("BENCH_DATABASE_URL");
    let jobs: u64 = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .next()
        .map(|s| s.trim().parse().expect("BENCH_SIZES: a number of jobs"))
        .unwrap();
    let seed = env_or("BENCH_SEED", 2026) as u64;
    let reseed = std::env::var("BENCH_RESEED").is_ok_and(|v| v == "1");
    let every_statement = std::env::var("BENCH_STATEMENTS").is_ok_and(|v| v == "1");
    let only: Vec<String> = std::env::var("BENCH_PAGES")
        .unwrap_or_default()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let settings = Settings {
        requests: env_or("BENCH_REQUESTS", 200).max(1),
        warmup: env_or("BENCH_WARMUP_REQUESTS", 20),
        clients: env_or("BENCH_CLIENTS", 4).max(1),
    };

    let log = Arc::new(StatementLog::default());
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(StatementLayer(log.clone())),
    )
    .unwrap();
    eprintln!(
        "the {jobs}-job fixture: reused if it is cached, else seeded now (a few minutes at 1 \
         million)"
    );
    let fixture = fixture::ensure(&server, Params { jobs, seed }, reseed).await;
    let org = &fixture.orgs[0];
    let pool = PgPoolOptions::new()
        .max_connections(settings.clients as u32 + 2)
        .connect_with(fixture.options.clone())
        .await
        .unwrap();
    let db = TenantDb::new(pool.clone());
    ensure_admin(&db, org.id).await;
    let ids = ids(&db, &fixture).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let auth = Auth::new(AuthSettings::local_only(&base), &db).unwrap();
    let state = AppState::new(db.clone(), Limits::default(), auth);
    let served = tokio::spawn(http::serve(
        listener,
        http::router(state),
        std::future::pending(),
    ));
    // Redirects are answers to measure, not to follow; `no_gzip` keeps the wire's bytes even if
    // some dependency turns reqwest's decompression on.
    let client = |jar: Option<Arc<reqwest::cookie::Jar>>| {
        let builder = reqwest::Client::builder()
            .no_proxy()
            .no_gzip()
            .redirect(reqwest::redirect::Policy::none());
        match jar {
            Some(jar) => builder.cookie_provider(jar),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let target = Arc::new(Target {
        session: client(Some(Arc::default())),
        anonymous: client(None),
        base,
    });
    sign_in(&target).await;

    println!(
        "page benchmark, {} UTC, load average {} at the start",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        load_average()
    );
    let mut assets = BTreeMap::new();
    let mut rows = Vec::new();
    let mut breakdowns = Vec::new();
    for page in pages(&fixture, &ids) {
        if !only.is_empty() && !only.iter().any(|w| page.name.contains(w.as_str())) {
            continue;
        }
        eprintln!("  {}…", page.name);
        let page = Arc::new(page);
        let row = measure(&target, &page, &settings, &mut assets).await;
        if every_statement || !row.problems().is_empty() {
            breakdowns.push(breakdown(&target, &page, &log).await);
        }
        rows.push(row);
    }
    print_table(&fixture, &settings, &rows);
    print_breakdowns(&breakdowns);
    println!("load average {} at the end", load_average());
    served.abort();
    pool.close().await;
}
