//! The embedded launcher against the machine's real PostgreSQL server binaries.

use std::path::PathBuf;
use std::process::Command;

use fleetmon_server::db::embedded::{BinarySearch, EmbeddedError, DATABASE};
use fleetmon_server::db::sql::{query, query_scalar};
use fleetmon_server::db::EmbeddedPostgres;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Uid;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::harness::scratch_dir;

async fn connect(server: &EmbeddedPostgres) -> PgConnection {
    server.create_database_if_missing().await.unwrap();
    server.connect_options().connect().await.unwrap()
}

async fn count_rows(server: &EmbeddedPostgres) -> i64 {
    let mut conn = connect(server).await;
    let n = query_scalar("SELECT count(*) FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    n
}

fn start(dir: &std::path::Path) -> EmbeddedPostgres {
    EmbeddedPostgres::start(dir).unwrap_or_else(|e| panic!("start: {e}"))
}

fn uid_of(pid: nix::unistd::Pid) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_restart_crash_recovery_and_stale_lock() {
    let dir = scratch_dir("embedded");

    // First start: initdb, socket only, an unprivileged server process.
    let server = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || start(&dir)
    })
    .await
    .unwrap();
    assert!(dir.join("postgres/PG_VERSION").is_file());
    let server_uid = uid_of(server.pid());
    if Uid::effective().is_root() {
        assert_ne!(
            server_uid, 0,
            "run as root, the server must run as an unprivileged user"
        );
    } else {
        assert_eq!(server_uid, Uid::effective().as_raw());
    }
    let mut conn = connect(&server).await;
    let listen: String = query_scalar("SELECT current_setting('listen_addresses')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "", "the embedded server must not listen on TCP");
    sqlx::raw_sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let first_pid = server.pid();
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !dir.join("postgres/postmaster.pid").exists(),
        "a clean stop removes postmaster.pid"
    );
    assert!(
        kill(first_pid, None).is_err(),
        "the server process is gone after stop"
    );

    // Restart: the data is kept, no second initdb.
    let server = start(&dir);
    assert_eq!(count_rows(&server).await, 1);

    // A second fleetmon on the same data directory is refused, clearly.
    match EmbeddedPostgres::start(&dir) {
        Err(EmbeddedError::InUse(_)) => {}
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }

    // Crash: the postmaster is killed with SIGKILL; committed data survives.
    let mut conn = connect(&server).await;
    query("INSERT INTO kept VALUES (2)")
        .execute(&mut conn)
        .await
        .unwrap();
    kill(server.pid(), Signal::SIGKILL).unwrap();
    drop(conn);
    drop(server); // stopping a dead server returns at once
    assert!(
        dir.join("postgres/postmaster.pid").exists(),
        "SIGKILL leaves postmaster.pid behind"
    );
    // Someone's shell or editor in the data directory is not taken for a leftover server.
    let mut bystander = Command::new("sleep")
        .arg("60")
        .current_dir(dir.join("postgres"))
        .spawn()
        .unwrap();
    let server = start(&dir);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "an unrelated process in the data directory survives"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert_eq!(
        count_rows(&server).await,
        2,
        "recovered after SIGKILL with the data"
    );
    server.stop().unwrap();

    // A stale postmaster.pid naming a live, unrelated process (pid reuse after a reboot or in a
    // container) would make postgres refuse to start.
    let mut unrelated = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(
        dir.join("postgres/postmaster.pid"),
        format!(
            "{}\n{}\n0\n5432\n\n\n0 0\nready\n",
            unrelated.id(),
            dir.join("postgres").display()
        ),
    )
    .unwrap();
    let server = start(&dir);
    assert_eq!(count_rows(&server).await, 2);
    server.stop().unwrap();
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();

    // The default database exists.
    let server = start(&dir);
    let mut conn = connect(&server).await;
    let db: String = query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(db, DATABASE);
    conn.close().await.unwrap();
    server.stop().unwrap();
}

#[test]
fn missing_binaries_name_what_to_install_and_the_alternative() {
    let empty = scratch_dir("nobin");
    let search = BinarySearch {
        pg_bindir: None,
        pg_config: PathBuf::from("/nonexistent/pg_config"),
        lib_root: empty.clone(),
    };
    let message = EmbeddedPostgres::start_with(&empty.join("data"), &search)
        .err()
        .expect("no binaries")
        .to_string();
    assert!(
        message.contains("no PostgreSQL server binaries found"),
        "{message}"
    );
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("DATABASE_URL"), "{message}");

    let search = BinarySearch {
        pg_bindir: Some(empty.clone()),
        ..search
    };
    let message = EmbeddedPostgres::start_with(&empty.join("data"), &search)
        .err()
        .expect("bad PG_BINDIR")
        .to_string();
    assert!(
        message.starts_with(&format!("PG_BINDIR={}", empty.display())),
        "{message}"
    );
}

#[test]
fn binaries_are_found_on_this_machine() {
    let found = BinarySearch::from_env()
        .find()
        .expect("server binaries are installed");
    assert!(found.major_version >= 14);
    assert!(found.initdb().is_file() && found.postgres().is_file());
}
