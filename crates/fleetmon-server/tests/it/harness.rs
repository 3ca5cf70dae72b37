//! The test harness: one real PostgreSQL server per test binary — the embedded launcher by
//! default, or the server named by `FLEETMON_TEST_DATABASE_URL` (a superuser URL) — and a fresh
//! database per test, cloned from a template migrated once.
//!
//! The template is migrated as `fleetmon_it_owner`, a non-superuser role with BYPASSRLS, the
//! way Neon's default owner role is: every test therefore runs against the hard case, where the
//! connecting user would see every row if requests did not switch to `fleetmon_app`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use fleetmon_server::db::{self, migrate, partitions, EmbeddedPostgres, SystemDb, TenantDb};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const OWNER: &str = "fleetmon_it_owner";
const OWNER_PASSWORD: &str = "fleetmon-it-owner";
const DB_PREFIX: &str = "fleetmon_it_";

pub struct Cluster {
    /// A superuser on the `postgres` database.
    admin: PgConnectOptions,
    template: String,
    /// Kept alive for the whole test binary; the kernel stops it when the binary exits.
    embedded: Option<EmbeddedPostgres>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

pub fn cluster() -> &'static Cluster {
    // Set up on a thread of its own so its runtime never nests inside a test's runtime.
    CLUSTER.get_or_init(|| {
        std::thread::spawn(Cluster::start)
            .join()
            .expect("test cluster set-up panicked")
    })
}

/// A single-threaded runtime, for synchronous tests (proptest) and set-up outside any runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `future` to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// How many migrations `database` records as applied.
pub async fn applied_migrations(database: &str) -> i64 {
    let pool = cluster().owner_pool(database, 1).await;
    let rows =
        fleetmon_server::db::sql::query_scalar("SELECT count(*) FROM fleetmon_schema_migrations")
            .fetch_one(&pool)
            .await
            .expect("count applied migrations");
    pool.close().await;
    rows
}

impl Cluster {
    fn start() -> Self {
        let (admin, embedded) = match std::env::var("FLEETMON_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => (
                PgConnectOptions::from_str(&url)
                    .expect("FLEETMON_TEST_DATABASE_URL is not a valid URL"),
                None,
            ),
            _ => {
                let dir = scratch_dir("cluster");
                let embedded =
                    EmbeddedPostgres::start(&dir).expect("start the embedded test cluster");
                (embedded.connect_options_for("postgres"), Some(embedded))
            }
        };
        let template = format!("{DB_PREFIX}tpl_{}", std::process::id());
        let cluster = Self {
            admin,
            template,
            embedded,
        };
        block_on(cluster.prepare());
        cluster
    }

    async fn prepare(&self) {
        let mut admin = self.admin().await;
        create_owner_role(&mut admin).await;
        drop_stale_databases(&mut admin).await;
        sqlx::raw_sql(&format!("CREATE DATABASE {} OWNER {OWNER}", self.template))
            .execute(&mut admin)
            .await
            .expect("create the template database");
        let pool = self.owner_pool(&self.template, 1).await;
        let system = SystemDb::new(pool.clone());
        migrate::run(&system).await.expect("migrate the template");
        partitions::ensure_around_today(&system)
            .await
            .expect("create partitions");
        pool.close().await;
    }

    /// A superuser connection to the `postgres` database.
    pub async fn admin(&self) -> PgConnection {
        self.admin
            .connect()
            .await
            .expect("connect as the test superuser")
    }

    /// How `fleetmon_it_owner` reaches `database`.
    pub fn owner_options(&self, database: &str) -> PgConnectOptions {
        self.admin
            .clone()
            .username(OWNER)
            .password(OWNER_PASSWORD)
            .database(database)
    }

    pub async fn owner_pool(&self, database: &str, size: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(size)
            .connect_with(self.owner_options(database))
            .await
            .expect("connect as the test owner")
    }

    /// Whether this is the embedded server (Unix socket only) rather than an external one.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// The socket directory (embedded) or host, and the port, of the server.
    pub fn server_address(&self) -> (String, u16) {
        match &self.embedded {
            Some(embedded) => (embedded.socket_dir().display().to_string(), embedded.port()),
            None => (self.admin.get_host().to_string(), self.admin.get_port()),
        }
    }
}

async fn create_owner_role(admin: &mut PgConnection) {
    // Several test binaries may share an external server: tolerate a concurrent creation.
    let sql = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN
                CREATE ROLE {OWNER} LOGIN NOSUPERUSER BYPASSRLS CREATEROLE CREATEDB PASSWORD '{OWNER_PASSWORD}';
            END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    );
    sqlx::raw_sql(&sql)
        .execute(admin)
        .await
        .expect("create the owner role");
}

/// Whether `name` is the template of a test run whose process is still alive: nothing is
/// connected to a template between clones, so "unconnected" alone would drop a concurrent run's.
fn is_live_template(name: &str) -> bool {
    name.strip_prefix(&format!("{DB_PREFIX}tpl_"))
        .and_then(|pid| pid.parse::<i32>().ok())
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// Drops test databases of earlier runs that nothing is connected to (but not the template of
/// another run still going).
async fn drop_stale_databases(admin: &mut PgConnection) {
    let stale: Vec<String> = db::sql::query_scalar(
        "SELECT datname FROM pg_database d
         WHERE datname LIKE $1 || '%'
           AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .bind(DB_PREFIX)
    .fetch_all(&mut *admin)
    .await
    .expect("list stale test databases");
    for name in stale.into_iter().filter(|name| !is_live_template(name)) {
        // Another run may have dropped it or connected to it meanwhile: both are fine.
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut *admin)
            .await;
    }
}

/// A fresh directory under the system temp dir (reachable by the `postgres` user when the tests
/// run as root), removing what earlier runs of the same kind left there.
pub fn scratch_dir(kind: &str) -> PathBuf {
    let base = std::env::temp_dir();
    let prefix = format!("fleetmon-it-{kind}-");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(&prefix) && !in_use(&entry.path()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!(
        "{prefix}{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Whether a running fleetmon (or test) holds the data directory's lock.
fn in_use(dir: &Path) -> bool {
    match std::fs::File::open(dir.join("fleetmon.lock")) {
        Ok(file) => file.try_lock_shared().is_err(),
        Err(_) => false,
    }
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub pool: PgPool,
}

impl TestDb {
    /// A migrated database with a pool of five owner connections.
    pub async fn new() -> Self {
        Self::with_pool_size(5).await
    }

    pub async fn with_pool_size(size: u32) -> Self {
        let cluster = cluster();
        let name = Self::create(&format!("TEMPLATE {}", cluster.template)).await;
        let pool = cluster.owner_pool(&name, size).await;
        Self { name, pool }
    }

    /// A database with no schema at all, for migration tests; returns its name.
    pub async fn create_empty() -> String {
        Self::create("").await
    }

    async fn create(clause: &str) -> String {
        let name = format!("{DB_PREFIX}{}", Uuid::new_v4().simple());
        let mut admin = cluster().admin().await;
        sqlx::raw_sql(&format!("CREATE DATABASE {name} {clause} OWNER {OWNER}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        admin.close().await.ok();
        name
    }

    pub fn tenant(&self) -> TenantDb {
        TenantDb::new(self.pool.clone())
    }

    pub fn system(&self) -> SystemDb {
        SystemDb::new(self.pool.clone())
    }
}

/// A `DATABASE_URL` for `database` as the owner, for running the `fleetmon` binary.
pub fn url_for(database: &str) -> String {
    cluster().owner_options(database).to_url_lossy().to_string()
}

/// The public URL test servers are configured with; it names the built-in issuer.
pub const TEST_PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// Serves fleetmon's router on a free loopback port until the test ends; returns its base URL.
pub async fn spawn_app(
    db: fleetmon_server::db::TenantDb,
    limits: fleetmon_server::ingest::Limits,
    auth: fleetmon_server::auth::settings::AuthSettings,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    serve_app(listener, db, limits, auth);
    base
}

/// Serves fleetmon's router on `listener` (bound by the caller, for tests whose settings must
/// name the server's own address) until the test ends.
pub fn serve_app(
    listener: tokio::net::TcpListener,
    db: fleetmon_server::db::TenantDb,
    limits: fleetmon_server::ingest::Limits,
    auth: fleetmon_server::auth::settings::AuthSettings,
) {
    let auth = fleetmon_server::auth::Auth::new(auth, &db).unwrap();
    serve_state(
        listener,
        fleetmon_server::http::AppState::new(db, limits, auth),
    );
}

/// Serves the router of `state` on `listener` until the test ends.
pub fn serve_state(listener: tokio::net::TcpListener, state: fleetmon_server::http::AppState) {
    use fleetmon_server::http;
    tokio::spawn(http::serve(
        listener,
        http::router(state),
        std::future::pending(),
    ));
}

/// Settings with built-in accounts only.
pub fn local_auth() -> fleetmon_server::auth::settings::AuthSettings {
    fleetmon_server::auth::settings::AuthSettings::local_only(TEST_PUBLIC_URL)
}
