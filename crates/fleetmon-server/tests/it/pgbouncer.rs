//! The isolation suite through PgBouncer in transaction pooling mode: many client connections
//! share two server connections, so any session state or named prepared statement would leak
//! between clients or fail.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::{self, DatabaseSettings, TenantContext, TenantDb};
use nix::unistd::{Uid, User};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::fixtures;
use crate::harness::{cluster, scratch_dir, TestDb, OWNER};
use crate::tenancy::assert_every_table_isolated;

pub(crate) struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn pgbouncer_binary() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("PgBouncer is not installed: run scripts/test, which installs it (Debian package pgbouncer)")
}

impl PgBouncer {
    pub(crate) fn start() -> Self {
        let dir = scratch_dir("pgbouncer");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (host, server_port) = cluster().server_address();
        std::fs::write(dir.join("users.txt"), format!("\"{OWNER}\" \"\"\n")).unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\npidfile = {pid}\n",
                users = dir.join("users.txt").display(),
                log = dir.join("pgbouncer.log").display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )
        .unwrap();
        let mut command = Command::new(pgbouncer_binary());
        command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root.
        if Uid::effective().is_root() {
            let user = User::from_name("postgres")
                .unwrap()
                .expect("a postgres user");
            std::os::unix::fs::chown(&dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .unwrap();
            use std::os::unix::process::CommandExt;
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = Self { child, port, dir };
        bouncer.wait_listening();
        bouncer
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `DATABASE_URL` for `database` through the pooler.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://{OWNER}@127.0.0.1:{}/{database}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    async fn pool(&self, database: &str, size: u32) -> PgPool {
        let options = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(OWNER)
            .database(database);
        // Through the product's own connect path: retries, version check, pool settings.
        let settings = DatabaseSettings {
            url: None,
            data_dir: self.dir.clone(),
            max_connections: size,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        };
        db::connect(options, &settings)
            .await
            .unwrap_or_else(|e| panic!("connect through pgbouncer: {e}; log:\n{}", self.log()))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_statement_errors(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("prepared statement"),
        "pgbouncer log mentions prepared statements:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_holds_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start();
    let pool = bouncer.pool(&db.name, 8).await;
    let tenant = TenantDb::new(pool.clone());

    assert_every_table_isolated(&tenant, &pool).await;
    concurrent_tenants_stay_apart(&tenant).await;
    assert_no_statement_errors(&bouncer.dir.join("pgbouncer.log"));
}

/// Eight clients, two server connections: tenant transactions interleave on shared server
/// connections and each still sees only its own org.
async fn concurrent_tenants_stay_apart(tenant: &TenantDb) {
    let mut orgs = Vec::new();
    for _ in 0..8 {
        orgs.push(fixtures::create_org(tenant, "pgb").await);
    }
    let mut tasks = Vec::new();
    for (index, org) in orgs.iter().copied().enumerate() {
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..25i64 {
                let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
                query(
                    "INSERT INTO jobs (org_id, id, status, created_at, state_rank, state_at, state_event_id)
                     VALUES ($1, $2, 'queued', now(), 1, now(), gen_random_uuid())",
                )
                .bind(org)
                .bind(format!("job-{index}-{round}"))
                .execute(tx.conn())
                .await
                .unwrap();
                let (visible, foreign): (i64, i64) = fleetmon_server::db::sql::query_as(
                    "SELECT count(*), count(*) FILTER (WHERE org_id <> $1) FROM jobs",
                )
                .bind(org)
                .fetch_one(tx.conn())
                .await
                .unwrap();
                assert_eq!((visible, foreign), (round + 1, 0));
                tx.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut tx = tenant.begin(TenantContext::none()).await.unwrap();
    let leaked: i64 = query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(leaked, 0);
}
