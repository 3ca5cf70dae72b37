//! The query path on a large history: p50/p99 latency and throughput of fleetmon's read
//! endpoints, through its real router served in process on loopback and authenticated by a
//! `read` API token, against `pgbench` running the same SQL (as `fleetmon_app`, in one
//! transaction that opens with the tenant context, as the request's: the read token's check with
//! the org's lookup, then the case's statements) from the same number of clients in the same run
//! — and, to show what the auth statement costs, against pgbench running the case's statements
//! alone. The fixture is a generated history of
//! `BENCH_SIZES` jobs with their events across several orgs, seeded once into databases of their
//! own on an external PostgreSQL server and reused (`support/fixture.rs`); the cases read the
//! largest org.
//!
//! `cargo bench -p fleetmon-server --bench query`, with
//! - `BENCH_DATABASE_URL` — the server (default `postgres://postgres@127.0.0.1:5432/postgres`;
//!   its user must be able to create databases, and `pgbench` must reach it the same way);
//! - `BENCH_SIZES` — jobs per fixture, comma-separated (default `1000000,10000000`);
//! - `BENCH_SEED` (default 2026), `BENCH_RESEED=1` to seed again even if the cache matches,
//!   `BENCH_SEED_ONLY=1` to seed and stop, `BENCH_MIN_FREE_GIB` (default 25) the disk space seeding
//!   leaves free for other work;
//! - `BENCH_CLIENTS` (default 4), `BENCH_SECONDS` per case and side (default 10),
//!   `BENCH_WARMUP` seconds untimed before each (default 2), `BENCH_CASES` to run only the
//!   cases whose names contain one of these comma-separated words, `BENCH_EXPLAIN=1` to print
//!   every case's plan (the plans of cases that miss a target are always printed).

#[path = "support/env.rs"]
mod env;
#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/history.rs"]
mod history;
#[path = "support/latency.rs"]
mod latency;
#[path = "support/pgbench.rs"]
mod pgbench;
#[path = "support/request.rs"]
mod request;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use fleetmon_server::auth::settings::AuthSettings;
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::auth::Auth;
use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::http::{self, AppState};
use fleetmon_server::ingest::Limits;
use fleetmon_server::orgs::settings::OrgSettings;
use fleetmon_server::query::job_metrics::{self, GroupBy};
use fleetmon_server::query::jobs::{self, JobFilter};
use fleetmon_server::query::window::{Buckets, Window};
use fleetmon_server::query::{fleet, overview, NO_JIT_SQL};
use sqlx::postgres::PgPoolOptions;

use env::env_or;
use fixture::{Fixture, Params, SampledJob, SeededOrg};
use history::{COMMON_WORD, RARE_WORD};
use latency::Figures;
use pgbench::{Statement, Transaction};
use sha2::{Digest, Sha256};

/// Jobs the detail case reads, spread over the history (pgbench takes at most 128 scripts).
const DETAIL_JOBS: u32 = 64;

/// What a case is held to (the targets).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Jobs list and job detail: p99 < 50 ms, ≥ 0.7 of pgbench, 10 M within 1.5× of 1 M.
    Lookup,
    /// 24 h job metrics: p99 < 250 ms.
    Metrics,
    /// No target of its own.
    Other,
}

/// One request of a case: the HTTP path and the statements fleetmon runs for it.
struct Variant {
    path: String,
    statements: Vec<Statement>,
}

struct Case {
    name: String,
    kind: Kind,
    /// Clients cycle through these; pgbench picks among them at random.
    variants: Vec<Variant>,
}

struct Settings {
    /// Print the plans of every case, not only of those that miss a target.
    explain: bool,
    clients: usize,
    seconds: u64,
    warmup: u64,
}

/// What a case is measured against: the in-process server and its fixture.
struct Target {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Target {
    async fn get(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        request::get_ok(&self.http, &url, Some(&self.token)).await;
    }
}

/// `clients` clients sending the case's requests in turn until `seconds` have passed.
async fn run_http(target: &Arc<Target>, case: &Case, clients: usize, seconds: u64) -> Figures {
    let paths: Arc<Vec<String>> = Arc::new(case.variants.iter().map(|v| v.path.clone()).collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (target, paths) = (target.clone(), paths.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut next = client;
            while Instant::now() < deadline {
                let sent = Instant::now();
                target.get(&paths[next % paths.len()]).await;
                latencies.push(sent.elapsed());
                next += 1;
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("a client task"));
    }
    let per_second = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Figures::new(latencies, per_second)
}

/// The text of a listing parameter as fleetmon binds it.
fn text(param: &jobs::Param) -> String {
    match param {
        jobs::Param::Uuid(v) => v.to_string(),
        jobs::Param::Text(v) => v.clone(),
        jobs::Param::Time(v) => v.to_rfc3339_opts(SecondsFormat::Micros, true),
        jobs::Param::Int(v) => v.to_string(),
    }
}

/// A jobs-list case: `query` is the request's query string, `filter` what the handler makes of
/// it (the default page size unless set).
fn list_case(org: &SeededOrg, name: &str, query: &str, filter: JobFilter) -> Case {
    let filter = JobFilter {
        limit: if filter.limit == 0 {
            jobs::DEFAULT_PAGE
        } else {
            filter.limit
        },
        ..filter
    };
    let statement = jobs::list_statement(org.id, &filter);
    Case {
        name: name.into(),
        kind: Kind::Lookup,
        variants: vec![Variant {
            path: format!("/api/v1/orgs/{}/jobs{query}", org.slug),
            statements: vec![Statement {
                sql: statement.sql,
                params: statement.params.iter().map(|p| Some(text(p))).collect(),
            }],
        }],
    }
}

/// The statements `GET …/jobs/{id}` runs in its transaction: the org's settings, then
/// `jobs::detail` (the job, its timeline, its worker and machine as they are now).
fn detail_statements(org: &SeededOrg, job: &SampledJob) -> Vec<Statement> {
    let settings = OrgSettings::default();
    let org_id = Some(org.id.to_string());
    let (stale, offline) = (
        Some(settings.stale_after_s.to_string()),
        Some(settings.offline_after_s.to_string()),
    );
    let mut statements = vec![
        settings_statement(org),
        Statement {
            sql: jobs::JOB_SQL.into(),
            params: vec![org_id.clone(), Some(job.id.clone())],
        },
        Statement {
            sql: jobs::TIMELINE_SQL.into(),
            params: vec![
                org_id.clone(),
                Some(job.id.clone()),
                Some(job.created_at.to_rfc3339_opts(SecondsFormat::Micros, true)),
            ],
        },
    ];
    if let Some(worker) = &job.worker_id {
        statements.push(Statement {
            sql: fleet::workers_sql(),
            params: vec![
                org_id.clone(),
                stale.clone(),
                offline.clone(),
                None,
                // An array literal: the statement takes a list of ids.
                Some(format!("{{{worker}}}")),
                None,
                None,
                None,
                Some("1".into()),
            ],
        });
    }
    if let Some(machine) = &job.machine_id {
        statements.push(Statement {
            sql: fleet::machines_sql(),
            params: vec![
                org_id,
                stale,
                offline,
                None,
                Some(format!("{{{machine}}}")),
                None,
                Some("1".into()),
            ],
        });
    }
    statements
}

/// The overview and the job metrics of the 24 hours before the history ends; `group_by` splits
/// the metrics by job type.
fn window_cases(org: &SeededOrg, fixture: &Fixture) -> Vec<Case> {
    let window = Window {
        since: fixture.ends_at - chrono::Duration::hours(24),
        until: fixture.ends_at,
    };
    let until = window.until.to_rfc3339_opts(SecondsFormat::Secs, true);
    let since = Some(window.since.to_rfc3339_opts(SecondsFormat::Micros, true));
    let end = Some(window.until.to_rfc3339_opts(SecondsFormat::Micros, true));
    let org_id = Some(org.id.to_string());
    let settings = OrgSettings::default();
    let no_jit = Statement {
        sql: NO_JIT_SQL.into(),
        params: Vec::new(),
    };
    let overview = Case {
        name: "overview, 24 h".into(),
        kind: Kind::Other,
        variants: vec![Variant {
            path: format!("/api/v1/orgs/{}/overview?until={until}&range=24h", org.slug),
            statements: vec![
                settings_statement(org),
                no_jit.clone(),
                Statement {
                    sql: overview::COUNTERS_SQL.into(),
                    params: vec![
                        org_id.clone(),
                        Some(settings.stale_after_s.to_string()),
                        Some(settings.offline_after_s.to_string()),
                        since.clone(),
                        end.clone(),
                    ],
                },
                Statement {
                    sql: overview::RECENT_FAILURES_SQL.into(),
                    params: vec![
                        org_id.clone(),
                        since.clone(),
                        end.clone(),
                        Some(overview::RECENT_FAILURES.to_string()),
                    ],
                },
            ],
        }],
    };
    let step = Buckets::new(window, None).unwrap().step_s;
    let metrics = |name: &str, query: &str, group_by| Case {
        name: name.into(),
        kind: Kind::Metrics,
        variants: vec![Variant {
            path: format!(
                "/api/v1/orgs/{}/metrics/jobs?until={until}&range=24h{query}",
                org.slug
            ),
            statements: vec![
                no_jit.clone(),
                Statement {
                    sql: job_metrics::sql(group_by),
                    params: vec![
                        org_id.clone(),
                        since.clone(),
                        end.clone(),
                        Some(step.to_string()),
                        None,
                        None,
                        None,
                        Some((job_metrics::MAX_GROUPS + 1).to_string()),
                    ],
                },
            ],
        }],
    };
    vec![
        overview,
        metrics("job metrics, 24 h", "", None),
        metrics(
            "job metrics, 24 h by job type",
            "&group_by=job_type",
            Some(GroupBy::JobType),
        ),
    ]
}

/// `orgs::settings::get`'s statement, which requests that need the org's settings run first.
fn settings_statement(org: &SeededOrg) -> Statement {
    Statement {
        sql: "SELECT settings FROM organizations WHERE id = $1".into(),
        params: vec![Some(org.id.to_string())],
    }
}

/// The cases, for the fixture's largest org.
async fn cases(db: &TenantDb, fixture: &Fixture) -> Vec<Case> {
    let org = &fixture.orgs[0];
    let sampled = fixture::sample_jobs(db, fixture, DETAIL_JOBS).await;
    let middle = &sampled[sampled.len() / 2];
    let cursor = jobs::Cursor {
        created_at: middle.created_at,
        id: middle.id.clone(),
    };
    let mut cases = vec![
        list_case(org, "jobs list, no filter", "", JobFilter::default()),
        list_case(
            org,
            "jobs list, status + type",
            "?status=failed&job_type=image.generate",
            JobFilter {
                statuses: vec!["failed".into()],
                job_type: Some("image.generate".into()),
                ..JobFilter::default()
            },
        ),
        list_case(
            org,
            &format!("jobs list, search {COMMON_WORD:?} (~1/64)"),
            &format!("?q={COMMON_WORD}"),
            JobFilter {
                text: Some(COMMON_WORD.into()),
                ..JobFilter::default()
            },
        ),
        list_case(
            org,
            &format!("jobs list, search {RARE_WORD:?} (~1/10,000)"),
            &format!("?q={RARE_WORD}"),
            JobFilter {
                text: Some(RARE_WORD.into()),
                ..JobFilter::default()
            },
        ),
        list_case(
            org,
            "jobs list, page 15 days back (cursor)",
            &format!("?cursor={}", cursor.encode()),
            JobFilter {
                after: Some(cursor.clone()),
                ..JobFilter::default()
            },
        ),
        Case {
            name: format!("job detail ({DETAIL_JOBS} jobs across the history)"),
            kind: Kind::Lookup,
            variants: sampled
                .iter()
                .map(|job| Variant {
                    path: format!("/api/v1/orgs/{}/jobs/{}", org.slug, job.id),
                    statements: detail_statements(org, job),
                })
                .collect(),
        },
    ];
    cases.extend(window_cases(org, fixture));
    cases
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Row {
    case: String,
    kind: Kind,
    /// The statements of the case's first request, for `EXPLAIN`.
    statements: Vec<Statement>,
    /// Their plans, when printed.
    plans: Vec<String>,
    fleetmon: Figures,
    /// The request's SQL: its one transaction, the token check and org lookup included.
    pgbench: Figures,
    /// The case's statements alone, without the auth statement.
    query_only: Figures,
    load: String,
}

/// Serves fleetmon against `fixture`, runs every selected case both ways, prints the table.
async fn bench(fixture: &Fixture, settings: &Settings, only: &[String]) -> Vec<Row> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.clients as u32 + 2)
        .connect_with(fixture.options.clone())
        .await
        .unwrap();
    let db = TenantDb::new(pool.clone());
    let org = &fixture.orgs[0];
    let mut tx = db.begin(TenantContext::org(org.id)).await.unwrap();
    let token = tokens::create(tx.conn(), org.id, TokenKind::Read, "query bench", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let auth = Auth::new(AuthSettings::local_only(&base), &db).unwrap();
    let state = AppState::new(db.clone(), Limits::default(), auth);
    let server = tokio::spawn(http::serve(
        listener,
        http::router(state),
        std::future::pending(),
    ));
    let target = Arc::new(Target {
        base,
        token: token.secret,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    });

    let mut rows = Vec::new();
    for case in cases(&db, fixture).await {
        if !only.is_empty() && !only.iter().any(|w| case.name.contains(w.as_str())) {
            continue;
        }
        eprintln!("  {}…", case.name);
        let load = load_average();
        run_http(&target, &case, settings.clients, settings.warmup).await;
        let fleetmon = run_http(&target, &case, settings.clients, settings.seconds).await;
        let auth = auth_statement(org, &target.token);
        let transaction = |auth: Option<&Statement>, v: &Variant| {
            vec![Transaction {
                org_id: Some(org.id),
                statements: auth.into_iter().chain(&v.statements).cloned().collect(),
            }]
        };
        let request: Vec<_> = case
            .variants
            .iter()
            .map(|v| transaction(Some(&auth), v))
            .collect();
        let alone: Vec<_> = case.variants.iter().map(|v| transaction(None, v)).collect();
        let pgbench = run_pgbench(fixture, settings, request).await;
        let query_only = run_pgbench(fixture, settings, alone).await;
        rows.push(Row {
            statements: case.variants[0].statements.clone(),
            plans: Vec::new(),
            case: case.name,
            kind: case.kind,
            fleetmon,
            pgbench,
            query_only,
            load,
        });
    }
    for row in &mut rows {
        let missed = row.verdict().is_some_and(|(ok, _)| !ok);
        if missed || settings.explain {
            row.plans = explain(&db, org.id, &row.statements).await;
        }
    }
    server.abort();
    pool.close().await;
    rows
}

/// pgbench with `scripts`, off the runtime (it blocks until pgbench exits).
async fn run_pgbench(
    fixture: &Fixture,
    settings: &Settings,
    scripts: Vec<Vec<Transaction>>,
) -> Figures {
    let options = fixture.options.clone();
    let (clients, warmup, seconds) = (settings.clients, settings.warmup, settings.seconds);
    tokio::task::spawn_blocking(move || pgbench::run(&options, &scripts, clients, warmup, seconds))
        .await
        .unwrap()
}

/// The statement a request with a read token runs first in its transaction (see
/// `http::auth::OrgAccess::open`): the token's check and the org's lookup by slug.
fn auth_statement(org: &SeededOrg, token: &str) -> Statement {
    let digest: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Statement {
        sql: tokens::AUTHENTICATE_SQL.into(),
        params: vec![
            Some(org.id.to_string()),
            Some(format!("\\x{digest}")),
            Some(org.slug.clone()),
        ],
    }
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of a case's statements, in a tenant transaction as requests run
/// them (each run once before, so the figures are warm).
async fn explain(db: &TenantDb, org_id: uuid::Uuid, statements: &[Statement]) -> Vec<String> {
    let mut plans = Vec::new();
    let mut tx = db.begin(TenantContext::org(org_id)).await.unwrap();
    for statement in statements {
        let sql = pgbench::with_literals(statement);
        query(&sql).execute(tx.conn()).await.unwrap();
        let upper = sql.trim_start().to_ascii_uppercase();
        if !upper.starts_with("SELECT") && !upper.starts_with("WITH") {
            continue; // `SET LOCAL jit = off` and the like: run, nothing to plan.
        }
        let plan: Vec<String> = query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))
            .fetch_all(tx.conn())
            .await
            .unwrap();
        plans.push(format!("{sql}\n{}", plan.join("\n")));
    }
    tx.rollback().await.unwrap();
    plans
}

impl Row {
    /// Whether the case meets its targets, and what they are; `None` for cases without any.
    fn verdict(&self) -> Option<(bool, &'static str)> {
        let p99 = self.fleetmon.percentile_ms(99.0);
        let ratio = self.fleetmon.per_second / self.pgbench.per_second;
        match self.kind {
            Kind::Lookup => Some((p99 < 50.0 && ratio >= 0.7, "p99 < 50, ratio ≥ 0.7")),
            Kind::Metrics => Some((p99 < 250.0, "p99 < 250")),
            Kind::Other => None,
        }
    }
}

fn print_table(fixture: &Fixture, settings: &Settings, rows: &[Row]) {
    let org = &fixture.orgs[0];
    println!();
    println!(
        "{}: {} jobs, {} events; org {} has {} jobs; {} clients, {} s per case and side",
        fixture.database,
        fixture.jobs,
        fixture.events,
        org.slug,
        org.jobs,
        settings.clients,
        settings.seconds
    );
    println!(
        "| case | fleetmon p50 ms | p99 ms | req/s | pgbench p50 ms | p99 ms | tx/s | ratio | \
         query alone: p50 ms | tx/s | ratio | load | verdict |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let (f, p, a) = (&row.fleetmon, &row.pgbench, &row.query_only);
        let ratio = f.per_second / p.per_second;
        let verdict = match row.verdict() {
            Some((ok, targets)) => format!("{} ({targets})", if ok { "met" } else { "MISSED" }),
            None => "-".into(),
        };
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {ratio:.2} | {:.2} | {:.0} | \
             {:.2} | {} | {verdict} |",
            row.case,
            f.percentile_ms(50.0),
            f.percentile_ms(99.0),
            f.per_second,
            p.percentile_ms(50.0),
            p.percentile_ms(99.0),
            p.per_second,
            a.percentile_ms(50.0),
            a.per_second,
            f.per_second / a.per_second,
            row.load,
        );
    }
    for row in rows.iter().filter(|r| !r.plans.is_empty()) {
        for plan in &row.plans {
            println!("\nEXPLAIN (ANALYZE, BUFFERS), {}, warm:\n{plan}", row.case);
        }
    }
}

/// List and detail latency of the largest fixture against the smallest.
fn print_scaling(small: (&Fixture, &[Row]), large: (&Fixture, &[Row])) {
    println!();
    println!(
        "latency at {} jobs against {} jobs (target: list and detail within 1.5×)",
        large.0.jobs, small.0.jobs
    );
    println!("| case | p50 × | p99 × | verdict |");
    println!("|---|---|---|---|");
    for row in large.1.iter().filter(|r| r.kind == Kind::Lookup) {
        let Some(base) = small.1.iter().find(|r| r.case == row.case) else {
            continue;
        };
        let p50 = row.fleetmon.percentile_ms(50.0) / base.fleetmon.percentile_ms(50.0);
        let p99 = row.fleetmon.percentile_ms(99.0) / base.fleetmon.percentile_ms(99.0);
        let ok = p50 <= 1.5 && p99 <= 1.5;
        println!(
            "| {} | {p50:.2} | {p99:.2} | {} |",
            row.case,
            if ok { "met" } else { "MISSED" }
        );
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let server = fleetmon_server::db::parse_url(&url).expect("BENCH_DATABASE_URL");
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SIZES: numbers of jobs"))
        .collect();
    let seed = env_or("BENCH_SEED", 2026) as u64;
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let only: Vec<String> = std::env::var("BENCH_CASES")
        .unwrap_or_default()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let settings = Settings {
        explain: flag("BENCH_EXPLAIN"),
        clients: env_or("BENCH_CLIENTS", 4).max(1),
        seconds: env_or("BENCH_SECONDS", 10).max(1) as u64,
        warmup: env_or("BENCH_WARMUP", 2) as u64,
    };

    let mut fixtures = Vec::new();
    for jobs in sizes {
        let fixture = fixture::ensure(&server, Params { jobs, seed }, flag("BENCH_RESEED")).await;
        for org in &fixture.orgs {
            eprintln!("  org {} ({}): {} jobs", org.slug, org.id, org.jobs);
        }
        fixtures.push(fixture);
    }
    if flag("BENCH_SEED_ONLY") {
        return;
    }
    println!(
        "query benchmark, {} UTC, load average {} at the start",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        load_average()
    );
    let mut results = Vec::new();
    for fixture in &fixtures {
        eprintln!("{}:", fixture.database);
        let rows = bench(fixture, &settings, &only).await;
        print_table(fixture, &settings, &rows);
        results.push(rows);
    }
    if fixtures.len() > 1 {
        let (first, last) = (0, fixtures.len() - 1);
        print_scaling(
            (&fixtures[first], &results[first]),
            (&fixtures[last], &results[last]),
        );
    }
    println!("load average {} at the end", load_average());
}
