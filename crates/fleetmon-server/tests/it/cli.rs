//! The `fleetmon` binary as a user runs it: help, configuration errors, migrate, and serve on the
//! embedded default.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fleetmon_server::db::migrate::MIGRATIONS;
use fleetmon_server::db::sql::query_scalar;
use fleetmon_server::db::TenantContext;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{cluster, scratch_dir, url_for, TestDb};

/// The `fleetmon` binary with none of the settings of the environment the tests run in.
pub(crate) fn fleetmon() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetmon"));
    for var in [
        "DATABASE_URL",
        "FLEETMON_DATA_DIR",
        "FLEETMON_CONFIG",
        "FLEETMON_LISTEN",
        "PG_BINDIR",
    ] {
        command.env_remove(var);
    }
    command.env("FLEETMON_LOG", "info").stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run fleetmon")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `error: …` line a failing command ends with.
fn error_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure, got {:?}",
        output.status
    );
    let text = stderr(output);
    text.lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{text}"))
        .to_string()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["retention", "run", "--help"],
    ] {
        let output = run(fleetmon().args(&args));
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Usage: fleetmon"), "{args:?}: {text}");
        if args.len() > 1 {
            assert!(
                text.contains("--database-url") && text.contains("DATABASE_URL"),
                "{text}"
            );
            assert!(text.contains("--data-dir"), "{text}");
        }
        if args[0] == "serve" {
            for flag in [
                "--public-url",
                "FLEETMON_STACK_PROJECT_ID",
                "FLEETMON_OIDC_ISSUER",
            ] {
                assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
            }
        }
    }
}

#[test]
fn a_malformed_database_url_is_one_clear_line_without_the_secret() {
    for url in ["not-a-url", "postgres://admin:s3cr3t@db.example:port/x"] {
        let output = run(fleetmon().arg("migrate").env("DATABASE_URL", url));
        let line = error_line(&output);
        assert!(
            line.starts_with("error: DATABASE_URL is not a valid PostgreSQL URL"),
            "{line}"
        );
        assert!(!stderr(&output).contains("s3cr3t"), "{}", stderr(&output));
        assert_eq!(output.status.code(), Some(1));
    }
}

#[test]
fn an_unreachable_server_is_retried_then_explained() {
    let output = run(fleetmon()
        .args(["migrate", "--db-connect-timeout", "1"])
        .env("DATABASE_URL", "postgres://admin:s3cr3t@127.0.0.1:1/fleet"));
    let line = error_line(&output);
    assert!(
        line.contains("could not connect to PostgreSQL at admin@127.0.0.1:1/fleet after"),
        "{line}"
    );
    let attempts: u32 = line
        .split(" after ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(attempts > 1, "it retries before giving up: {line}");
    assert!(
        stderr(&output).contains("retrying"),
        "progress is logged while retrying"
    );
    assert!(!stderr(&output).contains("s3cr3t"));
}

#[test]
fn configuration_errors_name_the_problem() {
    let dir = scratch_dir("config");
    let file = dir.join("fleetmon.toml");
    std::fs::write(&file, "databse_url = \"postgres://x/y\"\n").unwrap();
    let line = error_line(&run(fleetmon().arg("migrate").arg("--config").arg(&file)));
    assert!(
        line.contains(&file.display().to_string()) && line.contains("databse_url"),
        "{line}"
    );

    let line = error_line(&run(fleetmon()
        .arg("migrate")
        .env("FLEETMON_CONFIG", dir.join("missing.toml"))));
    assert!(line.contains("could not read the config file"), "{line}");

    let output = run(fleetmon()
        .arg("serve")
        .env("FLEETMON_LISTEN", "not-an-address"));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--listen"), "{}", stderr(&output));

    let line = error_line(&run(fleetmon()
        .arg("migrate")
        .env("FLEETMON_LOG", "fleetmon=[")));
    assert!(line.contains("log filter"), "{line}");
}

#[test]
fn sign_in_settings_read_stacks_variable_names_and_refuse_plain_http() {
    // Stack's own variable names are read when fleetmon's are unset; an unusable URL is an
    // error at start-up (before the database is touched), not a provider silently off.
    let line = error_line(&run(fleetmon()
        .arg("serve")
        .env("NEXT_PUBLIC_STACK_PROJECT_ID", "proj-1")
        .env("NEXT_PUBLIC_STACK_API_URL", "http://stack.example.com")));
    assert!(
        line.contains("Stack API URL") && line.contains("https"),
        "{line}"
    );
    let line = error_line(&run(fleetmon()
        .arg("serve")
        .env("FLEETMON_OIDC_ISSUER", "http://login.example.com")
        .env("FLEETMON_OIDC_CLIENT_ID", "fleetmon")));
    assert!(
        line.contains("OIDC issuer") && line.contains("loopback"),
        "{line}"
    );
    let line = error_line(&run(fleetmon()
        .arg("serve")
        .env("FLEETMON_OIDC_ISSUER", "https://login.example.com")));
    assert!(line.contains("audiences"), "{line}");
}

#[test]
fn settings_come_from_the_config_file() {
    // The database URL comes from the file; an unreachable one proves it was read.
    let dir = scratch_dir("config");
    let file = dir.join("fleetmon.toml");
    std::fs::write(
        &file,
        "database_url = \"postgres://u@127.0.0.1:1/from_file\"\ndb_connect_timeout_s = 0\n",
    )
    .unwrap();
    let line = error_line(&run(fleetmon()
        .arg("migrate")
        .env("FLEETMON_CONFIG", &file)));
    assert!(line.contains("127.0.0.1:1/from_file"), "{line}");
    // A flag wins over the file.
    let line = error_line(&run(fleetmon()
        .args([
            "migrate",
            "--database-url",
            "postgres://u@127.0.0.1:1/from_flag",
        ])
        .env("FLEETMON_CONFIG", &file)));
    assert!(line.contains("127.0.0.1:1/from_flag"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_commands_at_once_both_succeed() {
    let name = TestDb::create_empty().await;
    let url = url_for(&name);
    let spawn = || {
        fleetmon()
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let mut said: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", stderr(o));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect();
    said.sort();
    assert!(said[0].starts_with("applied migrations"), "{said:?}");
    assert!(said[1].starts_with("schema is up to date"), "{said:?}");

    assert_eq!(
        crate::harness::applied_migrations(&name).await,
        MIGRATIONS.len() as i64
    );
}

/// Neon and Cloud SQL take TLS only: `sslmode=require` must work, and really encrypt. The
/// embedded server listens on a Unix socket only, so this runs against the external server (CI's
/// second run), and only when that server offers TLS.
#[tokio::test]
async fn migrate_over_tls_when_the_url_asks_for_it() {
    use sqlx::Connection;

    if crate::harness::cluster().is_embedded() {
        eprintln!("skipped: the embedded server has no TCP listener, so no TLS");
        return;
    }
    let name = TestDb::create_empty().await;
    let url = url_for(&name);
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}sslmode=require");
    let mut probe = match sqlx::PgConnection::connect(&url).await {
        Ok(probe) => probe,
        Err(error) if error.to_string().contains("server does not support TLS") => {
            eprintln!("skipped: the external server does not offer TLS");
            return;
        }
        Err(error) => panic!("connect with sslmode=require: {error}"),
    };
    let encrypted: bool = fleetmon_server::db::sql::query_scalar(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(&mut probe)
    .await
    .unwrap();
    assert!(encrypted, "sslmode=require gave an unencrypted connection");
    let output = run(fleetmon().arg("migrate").env("DATABASE_URL", &url));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        crate::harness::applied_migrations(&name).await,
        MIGRATIONS.len() as i64
    );
}

/// A running `fleetmon`, with its log lines streamed to a channel.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) log: mpsc::Receiver<String>,
}

fn serve_embedded(data_dir: &Path) -> Served {
    spawn_listening(&["serve", "--listen", "127.0.0.1:0"], data_dir)
}

/// Runs `fleetmon ARGS` on the embedded default in `data_dir` until it logs where it listens.
fn spawn_listening(args: &[&str], data_dir: &Path) -> Served {
    let mut command = fleetmon();
    command.args(args).env("FLEETMON_DATA_DIR", data_dir);
    listening(command)
}

/// Runs `command` until it logs where it listens.
pub(crate) fn listening(mut command: Command) -> Served {
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let base = loop {
        let line = log
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "serve did not start listening; log so far:\n{}",
                    seen.join("\n")
                )
            });
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on ".len()..].trim().to_string();
        }
        seen.push(line);
    };
    Served { child, base, log }
}

/// Everything a finished child wrote to its standard output.
fn stdout_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut text).unwrap();
    }
    text
}

fn postmaster_pid(data_dir: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data_dir.join("postgres/postmaster.pid")).ok()?;
    Some(Pid::from_raw(text.lines().next()?.trim().parse().ok()?))
}

fn wait_gone(pid: Pid) -> bool {
    for _ in 0..200 {
        if kill(pid, None).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_embedded_default_then_stop_cleanly_and_survive_a_kill() {
    let data_dir = scratch_dir("serve");
    let served = serve_embedded(&data_dir);
    let ready = reqwest::get(format!("{}/readyz", served.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        reqwest::get(format!("{}/healthz", served.base))
            .await
            .unwrap()
            .status(),
        200
    );
    let postgres = postmaster_pid(&data_dir).expect("the embedded server is running");

    // SIGTERM: finish requests, stop the embedded server, exit 0.
    kill(Pid::from_raw(served.child.id() as i32), Signal::SIGTERM).unwrap();
    let Served { mut child, log, .. } = served;
    assert!(child.wait().unwrap().success());
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("embedded PostgreSQL stopped")),
        "{lines:?}"
    );
    // Live updates listen through the embedded server's socket too.
    assert!(
        lines.iter().any(|l| l.contains("listening for changes")),
        "{lines:?}"
    );
    assert!(wait_gone(postgres), "postgres exits with fleetmon");
    assert!(!data_dir.join("postgres/postmaster.pid").exists());

    // SIGKILL of fleetmon itself: the kernel tells postgres to shut down, and the next start
    // comes up on the same data.
    let served = serve_embedded(&data_dir);
    let postgres = postmaster_pid(&data_dir).unwrap();
    let Served { mut child, .. } = served;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_gone(postgres),
        "postgres stops when fleetmon is killed"
    );

    let served = serve_embedded(&data_dir);
    let ready = reqwest::get(format!("{}/readyz", served.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    kill(Pid::from_raw(served.child.id() as i32), Signal::SIGTERM).unwrap();
    let Served { mut child, .. } = served;
    assert!(child.wait().unwrap().success());
}

#[test]
fn orgs_and_tokens_from_the_command_line() {
    let name = crate::harness::block_on(TestDb::create_empty());
    let url = url_for(&name);
    let ok = |args: &[&str]| {
        let output = run(fleetmon().args(args).env("DATABASE_URL", &url));
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(ok(&["org", "create", "acme", "--name", "Acme Corp"])
        .starts_with("created organization acme"));
    let line = error_line(&run(fleetmon()
        .args(["org", "create", "acme"])
        .env("DATABASE_URL", &url)));
    assert!(line.contains("already exists"), "{line}");
    let line = error_line(&run(fleetmon()
        .args(["org", "create", "Not A Slug"])
        .env("DATABASE_URL", &url)));
    assert!(line.contains("not a valid slug"), "{line}");

    let created = ok(&[
        "token", "create", "--org", "acme", "--kind", "ingest", "--name", "agents",
    ]);
    let secret = created.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("fmi_"), "{created}");
    let listed = ok(&["token", "list", "--org", "acme"]);
    assert!(
        listed.contains("agents") && listed.contains("never used"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "listings never show secrets");
    let id = listed.split_whitespace().next().unwrap().to_string();
    assert!(ok(&["token", "revoke", "--org", "acme", &id]).contains("revoked"));
    assert!(ok(&["token", "list", "--org", "acme"]).contains("revoked"));

    let line = error_line(&run(fleetmon()
        .args(["token", "list", "--org", "nope"])
        .env("DATABASE_URL", &url)));
    assert!(line.contains("no organization \"nope\""), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_once_from_the_command_line() {
    let db = TestDb::new().await;
    let org = crate::fixtures::create_org(&db.tenant(), "ret").await;
    let mut tx = db.tenant().begin(TenantContext::org(org)).await.unwrap();
    // A job finished 40 days ago: past the default 30 days.
    fleetmon_server::db::sql::query(
        "INSERT INTO jobs (org_id, id, status, created_at, state_rank, state_at, state_event_id)
         VALUES ($1, 'old', 'completed', now() - interval '40 days', 4,
                 now() - interval '40 days', gen_random_uuid())",
    )
    .bind(org)
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let url = url_for(&db.name);
    let once = || {
        let output = run(fleetmon()
            .args(["retention", "run", "--batch-size", "10"])
            .env("DATABASE_URL", &url));
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = once();
    assert!(
        first.contains("removed 1 jobs (older than") && first.contains("retention 30 days"),
        "{first}"
    );
    assert!(once().contains("nothing had expired"));
    let mut tx = db.tenant().begin(TenantContext::org(org)).await.unwrap();
    let remaining: i64 = query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(remaining, 0);
}

#[test]
fn signing_keys_rotate_from_the_command_line() {
    let name = crate::harness::block_on(TestDb::create_empty());
    let url = url_for(&name);
    let rotate = || {
        let output = run(fleetmon()
            .args(["keys", "rotate"])
            .env("DATABASE_URL", &url));
        assert!(output.status.success(), "{}", stderr(&output));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(text.starts_with("now signing with key "), "{text}");
        text
    };
    assert_ne!(rotate(), rotate(), "each rotation brings a new key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_brings_up_a_living_fleet_in_one_command() {
    let data_dir = scratch_dir("demo");
    let served = spawn_listening(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--machines",
            "3",
            "--workers",
            "2",
        ],
        &data_dir,
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", served.base))
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    kill(Pid::from_raw(served.child.id() as i32), Signal::SIGINT).unwrap();
    let Served { mut child, log, .. } = served;
    assert!(child.wait().unwrap().success());
    let lines: Vec<String> = log.try_iter().collect();
    let report = lines
        .iter()
        .rev()
        .find(|l| l.contains("simulated "))
        .expect("a final simulator report");
    assert!(report.contains("rejected 0 failed 0 dropped 0"), "{report}");
    let banner = stdout_of(&mut child);
    assert!(
        banner.contains("admin account:   admin@demo.fleetmon.local / "),
        "{banner}"
    );

    // What the fleet reported is in the database.
    let server = tokio::task::spawn_blocking(move || {
        fleetmon_server::db::EmbeddedPostgres::start(&data_dir).unwrap()
    })
    .await
    .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(server.connect_options())
        .await
        .unwrap();
    let tenant = fleetmon_server::db::TenantDb::new(pool.clone());
    let mut tx = tenant
        .begin(fleetmon_server::db::TenantContext::none())
        .await
        .unwrap();
    let org: uuid::Uuid = query_scalar("SELECT id FROM organizations WHERE slug = 'demo'")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    drop(tx);
    let mut tx = tenant
        .begin(fleetmon_server::db::TenantContext::org(org))
        .await
        .unwrap();
    let (machines, workers, jobs): (i64, i64, i64) = fleetmon_server::db::sql::query_as(
        "SELECT (SELECT count(*) FROM machines), (SELECT count(*) FROM workers), (SELECT count(*) FROM jobs)",
    )
    .fetch_one(tx.conn())
    .await
    .unwrap();
    drop(tx);
    pool.close().await;
    server.stop().unwrap();
    assert_eq!((machines, workers), (3, 6));
    assert!(jobs > 0, "jobs arrived");
}

/// Runs `fleetmon ARGS` with `input` on standard input.
fn run_with_input(command: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe early; that is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_with_a_hashed_password_from_stdin() {
    let name = TestDb::create_empty().await;
    let url = url_for(&name);
    let user = |args: &[&str], input: &str| {
        let mut command = fleetmon();
        command
            .args(["user", "create"])
            .args(args)
            .env("DATABASE_URL", &url);
        run_with_input(&mut command, input)
    };
    assert!(run(fleetmon()
        .args(["org", "create", "acme"])
        .env("DATABASE_URL", &url))
    .status
    .success());

    let output = user(
        &[
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
            "--org",
            "acme",
            "--role",
            "admin",
        ],
        "a long passphrase\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("admin of acme"));

    let line = error_line(&user(
        &["--email", "ADA@example.com"],
        "another long passphrase\n",
    ));
    assert!(line.contains("already exists"), "{line}");
    let line = error_line(&user(&["--email", "bob@example.com"], "short\n"));
    assert!(line.contains("at least 10 characters"), "{line}");
    let line = error_line(&user(&["--email", "not-an-email"], "a long passphrase\n"));
    assert!(line.contains("not an email address"), "{line}");
    let line = error_line(&user(&["--email", "bob@example.com"], ""));
    assert!(line.contains("no password on standard input"), "{line}");
    let output = user(
        &["--email", "bob@example.com", "--org", "acme"],
        "a long passphrase\n",
    );
    assert!(
        !output.status.success() && stderr(&output).contains("--role"),
        "{}",
        stderr(&output)
    );

    let pool = cluster().owner_pool(&name, 1).await;
    let (hash, role): (String, String) = fleetmon_server::db::sql::query_as(
        "SELECT a.password_hash, m.role FROM local_accounts a JOIN memberships m ON m.user_id = a.user_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        hash.starts_with("$argon2id$"),
        "stored as an argon2id hash, never in clear"
    );
    assert!(fleetmon_server::auth::password::verify(
        "a long passphrase",
        &hash
    ));
    assert_eq!(role, "admin");
}
