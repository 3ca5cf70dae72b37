//! The query and page benchmarks' fixture: a database of its own on an external PostgreSQL
//! server, migrated with fleetmon's migrations and filled with a generated history
//! (`history.rs`) by `COPY` as the owner. Seeding takes a while at 10 million jobs, so the
//! database is kept and reused as long as the parameters recorded in its `bench.fixture` table
//! match. (Benchmarks include this file by path.)

use std::time::Instant;

use chrono::{DateTime, Days, SubsecRound, Utc};
use fleetmon_server::db::sql::{query, query_as, query_scalar};
use fleetmon_server::db::{migrate, partitions, SystemDb, TenantContext, TenantDb};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use uuid::Uuid;

use super::history::{
    Generator, EVENT_COLUMNS, GENERATOR_VERSION, JOB_COLUMNS, MACHINE_COLUMNS, WORKER_COLUMNS,
};

/// Seeding stops when the root file system has less free space than this many GiB
/// (`BENCH_MIN_FREE_GIB`, default 25): what other work on the machine needs meanwhile.
fn min_free_bytes() -> u64 {
    (super::env::env_or("BENCH_MIN_FREE_GIB", 25) as u64) << 30
}
/// What a seeded job takes on disk with its events and indexes (measured with migrations 1–5:
/// 3.1 GB per million).
const BYTES_PER_JOB: u64 = 3_300;
/// The history covers this many days before seeding.
pub const DAYS: u32 = 30;

/// What a fixture is generated from; a cached database is reused only when these match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub jobs: u64,
    pub seed: u64,
}

impl Params {
    fn to_json(self) -> Value {
        json!({"generator": GENERATOR_VERSION, "jobs": self.jobs, "seed": self.seed, "days": DAYS})
    }

    /// `fleetmon_bench_1m`, `fleetmon_bench_10m`, `fleetmon_bench_250k`, ….
    pub fn database(self) -> String {
        let n = self.jobs;
        let size = match n {
            n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
            n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
            n => n.to_string(),
        };
        format!("fleetmon_bench_{size}")
    }
}

#[derive(Debug, Clone)]
pub struct SeededOrg {
    pub id: Uuid,
    pub slug: String,
    pub jobs: u64,
}

/// A seeded database, ready for the benchmark.
pub struct Fixture {
    pub database: String,
    pub options: PgConnectOptions,
    pub orgs: Vec<SeededOrg>,
    /// When the generated history ends: the 24 h windows of the benchmark end here.
    pub ends_at: DateTime<Utc>,
    pub jobs: u64,
    pub events: u64,
}

/// The fixture for `params` on `server` (whose database is only used to create the fixture's):
/// the cached one if it matches, else a freshly seeded one. `reseed` forces seeding.
pub async fn ensure(server: &PgConnectOptions, params: Params, reseed: bool) -> Fixture {
    let database = params.database();
    let options = server.clone().database(&database);
    if !reseed {
        if let Some(fixture) = cached(server, &options, params).await {
            eprintln!(
                "{database}: reusing the fixture seeded with {} jobs (history ends {})",
                fixture.jobs, fixture.ends_at
            );
            prepare(&options).await;
            return fixture;
        }
    }
    seed(server, options, params).await
}

/// The recorded fixture, if the database exists, finished seeding and has the same parameters.
async fn cached(
    server: &PgConnectOptions,
    options: &PgConnectOptions,
    params: Params,
) -> Option<Fixture> {
    let mut admin = server
        .connect()
        .await
        .expect("the benchmark's PostgreSQL server");
    let exists: bool = query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(options.get_database())
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !exists {
        return None;
    }
    let mut conn = options.connect().await.ok()?;
    let found: Option<(Value, DateTime<Utc>, Value, i64, i64)> =
        query_as("SELECT params, ends_at, orgs, jobs, events FROM bench.fixture WHERE complete")
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
    let (recorded, ends_at, orgs, jobs, events) = found?;
    if recorded != params.to_json() {
        eprintln!(
            "{}: seeded with {recorded}, not {}: seeding again",
            options.get_database().unwrap_or_default(),
            params.to_json()
        );
        return None;
    }
    let orgs = orgs
        .as_array()?
        .iter()
        .map(|o| SeededOrg {
            id: o["id"].as_str().and_then(|s| s.parse().ok()).unwrap(),
            slug: o["slug"].as_str().unwrap().to_string(),
            jobs: o["jobs"].as_u64().unwrap(),
        })
        .collect();
    Some(Fixture {
        database: options.get_database().unwrap_or_default().to_string(),
        options: options.clone(),
        orgs,
        ends_at,
        jobs: jobs as u64,
        events: events as u64,
    })
}

/// Applies migrations newer than the fixture (they may build indexes over all of it) and makes
/// sure today's partitions exist.
async fn prepare(options: &PgConnectOptions) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .unwrap();
    let system = SystemDb::new(pool.clone());
    match migrate::run(&system).await {
        Ok(report) if !report.applied.is_empty() => {
            eprintln!("  applied migrations {:?}", report.applied);
        }
        Ok(_) => {}
        Err(error) => panic!(
            "migrating the cached fixture failed ({error}); seed it again with BENCH_RESEED=1"
        ),
    }
    partitions::ensure_around_today(&system).await.unwrap();
    pool.close().await;
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

fn free_bytes() -> u64 {
    let stat = nix::sys::statvfs::statvfs("/").expect("statvfs /");
    stat.blocks_available() as u64 * stat.fragment_size() as u64
}

/// Stops seeding when the disk runs low, dropping the half-seeded database so that it gives the
/// space back.
async fn check_disk(server: &PgConnectOptions, database: &str) {
    let free = free_bytes();
    if free >= min_free_bytes() {
        return;
    }
    if let Ok(mut admin) = server.connect().await {
        let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
        let _ = admin.execute(drop.as_str()).await;
    }
    panic!(
        "only {:.1} GiB free on /: seeding stops below {} GiB (the half-seeded {database} was dropped)",
        gib(free),
        min_free_bytes() >> 30
    );
}

/// Awaits `future`, polling it again whenever it has not woken for 5 s. Long seeding runs were
/// seen to stop for good with both sides idle (the generator blocked on the full channel,
/// PostgreSQL waiting in `COPY` for data, the client parked): a wakeup lost somewhere between
/// the channel, the sockets and the runtime. Polling again costs nothing and gets it going; the
/// message says it happened.
async fn unstall<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    loop {
        tokio::select! {
            done = &mut future => return done,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
                eprintln!("  (waited 5 s on {what}; polling it again)");
            }
        }
    }
}

async fn seed(server: &PgConnectOptions, options: PgConnectOptions, params: Params) -> Fixture {
    let database = params.database();
    let started = Instant::now();
    let needed = params.jobs * BYTES_PER_JOB;
    let mut admin = server
        .connect()
        .await
        .expect("the benchmark's PostgreSQL server");
    // A stale database of the same name is dropped first: its space counts as free.
    let stale: i64 = query_scalar(
        "SELECT coalesce(sum(pg_database_size(datname)), 0)::int8 FROM pg_database WHERE datname = $1",
    )
    .bind(&database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let free = free_bytes() + stale as u64;
    if free < min_free_bytes() + needed {
        panic!(
            "{database} needs about {:.1} GiB and only {:.1} GiB are free on /: it would leave less \
             than {} GiB; free some space first",
            gib(needed),
            gib(free),
            min_free_bytes() >> 30
        );
    }
    eprintln!(
        "{database}: seeding {} jobs (seed {})…",
        params.jobs, params.seed
    );
    // Names are ours (`fleetmon_bench_…`), so quoting them into DDL is safe.
    admin
        .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .unwrap();
    admin.close().await.ok();

    let ends_at = Utc::now().trunc_subsecs(0);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .unwrap();
    let system = SystemDb::new(pool.clone());
    migrate::run(&system).await.unwrap();
    let first_day = (ends_at - chrono::Duration::days(i64::from(DAYS))).date_naive();
    let last_day = Utc::now().date_naive() + Days::new(partitions::DAYS_AHEAD);
    partitions::ensure(&system, first_day, last_day)
        .await
        .unwrap();
    pool.close().await;

    let mut conn = options.connect().await.unwrap();
    conn.execute(
        "CREATE SCHEMA bench;
         CREATE TABLE bench.fixture (params jsonb NOT NULL, ends_at timestamptz NOT NULL,
                                     orgs jsonb NOT NULL, jobs bigint NOT NULL, events bigint NOT NULL,
                                     complete boolean NOT NULL DEFAULT false,
                                     seeded_at timestamptz NOT NULL DEFAULT now(),
                                     seconds double precision)",
    )
    .await
    .unwrap();
    let mut generator = Generator::new(params.jobs, params.seed, DAYS, ends_at);
    for plan in &generator.orgs {
        query("INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(plan.id)
            .bind(plan.spec.slug)
            .bind(plan.spec.name)
            .bind(ends_at - chrono::Duration::days(i64::from(DAYS) + 7))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let recreate = drop_indexes(&mut conn, &["jobs", "job_events"]).await;

    // Generation runs on its own thread while two connections COPY the previous chunk.
    let (sender, mut chunks) = tokio::sync::mpsc::channel(2);
    let producer = std::thread::spawn(move || {
        while let Some(chunk) = generator.next_chunk() {
            if sender.blocking_send(chunk).is_err() {
                break;
            }
        }
        generator
    });
    let mut jobs_conn = bulk_connection(&options).await;
    let mut events_conn = bulk_connection(&options).await;
    let jobs_sql = format!("COPY jobs ({JOB_COLUMNS}) FROM STDIN");
    let events_sql = format!("COPY job_events ({EVENT_COLUMNS}) FROM STDIN");
    let mut jobs_copy = jobs_conn.copy_in_raw(&jobs_sql).await.unwrap();
    let mut events_copy = events_conn.copy_in_raw(&events_sql).await.unwrap();
    let (mut jobs_sent, mut events_sent) = (0u64, 0u64);
    let copy_started = Instant::now();
    let mut reported = Instant::now();
    while let Some(chunk) = unstall("the generator", chunks.recv()).await {
        let (a, b) = unstall("the COPY streams", async {
            tokio::join!(
                jobs_copy.send(chunk.jobs.into_bytes()),
                events_copy.send(chunk.events.into_bytes())
            )
        })
        .await;
        a.unwrap();
        b.unwrap();
        jobs_sent += chunk.job_count as u64;
        events_sent += chunk.event_count as u64;
        if reported.elapsed().as_secs() >= 10 {
            reported = Instant::now();
            check_disk(server, &database).await;
            let rate = jobs_sent as f64 / copy_started.elapsed().as_secs_f64();
            eprintln!(
                "  {jobs_sent} / {} jobs ({:.0} %), {events_sent} events, {rate:.0} jobs/s, \
                 about {:.0} min left; {:.0} GiB free",
                params.jobs,
                100.0 * jobs_sent as f64 / params.jobs as f64,
                (params.jobs - jobs_sent) as f64 / rate / 60.0,
                gib(free_bytes()),
            );
        }
    }
    let mut generator = producer.join().expect("the generator thread");
    let jobs = jobs_copy.finish().await.unwrap();
    let events = events_copy.finish().await.unwrap();
    eprintln!(
        "  copied {jobs} jobs and {events} events in {:.0} s",
        copy_started.elapsed().as_secs_f64()
    );
    for (sql, data) in [
        (
            format!("COPY machines ({MACHINE_COLUMNS}) FROM STDIN"),
            generator.machines(),
        ),
        (
            format!("COPY workers ({WORKER_COLUMNS}) FROM STDIN"),
            generator.workers(),
        ),
    ] {
        let mut copy = jobs_conn.copy_in_raw(&sql).await.unwrap();
        copy.send(data.into_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    drop((jobs_conn, events_conn));

    conn.execute("SET maintenance_work_mem = '1GB'")
        .await
        .unwrap();
    for statement in &recreate {
        let t = Instant::now();
        check_disk(server, &database).await;
        conn.execute(statement.as_str()).await.unwrap();
        eprintln!("  {statement} ({:.0} s)", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    conn.execute("VACUUM (ANALYZE)").await.unwrap();
    eprintln!("  VACUUM (ANALYZE) ({:.0} s)", t.elapsed().as_secs_f64());

    let orgs: Vec<SeededOrg> = generator
        .orgs
        .iter()
        .map(|plan| SeededOrg {
            id: plan.id,
            slug: plan.spec.slug.to_string(),
            jobs: plan.jobs,
        })
        .collect();
    let orgs_json: Vec<Value> = orgs
        .iter()
        .map(|o| json!({"id": o.id, "slug": o.slug, "jobs": o.jobs}))
        .collect();
    query(
        "INSERT INTO bench.fixture (params, ends_at, orgs, jobs, events, complete, seconds)
         VALUES ($1, $2, $3, $4, $5, true, $6)",
    )
    .bind(params.to_json())
    .bind(ends_at)
    .bind(Value::Array(orgs_json))
    .bind(jobs as i64)
    .bind(events as i64)
    .bind(started.elapsed().as_secs_f64())
    .execute(&mut conn)
    .await
    .unwrap();
    eprintln!(
        "{database}: seeded in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Fixture {
        database,
        options,
        orgs,
        ends_at,
        jobs,
        events,
    }
}

/// A connection for bulk loading: foreign-key triggers off (the orgs exist; this is a fixture).
async fn bulk_connection(options: &PgConnectOptions) -> PgConnection {
    let mut conn = options.connect().await.unwrap();
    conn.execute("SET session_replication_role = replica")
        .await
        .unwrap();
    conn
}

/// Drops the indexes and key constraints of `tables` (loading first and indexing after is much
/// faster); returns the statements that recreate them exactly.
async fn drop_indexes(conn: &mut PgConnection, tables: &[&str]) -> Vec<String> {
    let found: Vec<(String, String)> = query_as(
        "SELECT CASE WHEN c.conname IS NULL
                     THEN format('DROP INDEX %s', i.indexrelid::regclass)
                     ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, c.conname) END,
                CASE WHEN c.conname IS NULL
                     -- The index of a partitioned table is listed for the table alone; created
                     -- on the table, it is created on every partition too.
                     THEN replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
                     ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s', i.indrelid::regclass,
                                 c.conname, pg_get_constraintdef(c.oid)) END
         FROM pg_index i
         LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
         WHERE i.indrelid = ANY ($1::text[]::regclass[])
         ORDER BY i.indrelid, c.conname NULLS LAST, i.indexrelid",
    )
    .bind(tables)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut recreate = Vec::new();
    for (drop, create) in found {
        conn.execute(drop.as_str()).await.unwrap();
        recreate.push(create);
    }
    recreate
}

/// A job of the largest org, as a case that reads one job (or a page from it) needs it.
#[derive(sqlx::FromRow)]
pub struct SampledJob {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub worker_id: Option<String>,
    pub machine_id: Option<String>,
}

/// `count` jobs of the largest org spread evenly over the history, newest last: for detail
/// cases and a deep cursor.
pub async fn sample_jobs(db: &TenantDb, fixture: &Fixture, count: u32) -> Vec<SampledJob> {
    let org = &fixture.orgs[0];
    let span = chrono::Duration::days(i64::from(DAYS));
    let starts = fixture.ends_at - span;
    let mut tx = db.begin(TenantContext::org(org.id)).await.unwrap();
    let mut sampled = Vec::new();
    for k in 0..count {
        let at = starts + span * (2 * k as i32 + 1) / (2 * count as i32);
        let found: SampledJob = query_as(
            "SELECT id, created_at, worker_id, machine_id FROM jobs
             WHERE org_id = $1 AND created_at >= $2 ORDER BY created_at, id LIMIT 1",
        )
        .bind(org.id)
        .bind(at)
        .fetch_one(tx.conn())
        .await
        .unwrap();
        sampled.push(found);
    }
    tx.rollback().await.unwrap();
    sampled
}
