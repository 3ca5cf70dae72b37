//! The physical limit of a read: `pgbench` running the statements of a request as fleetmon runs
//! them — as `fleetmon_app`, in a transaction that opens with the tenant context, extended protocol
//! with unnamed statements and the same parameters — from the same number of clients. (Benchmarks
//! include this file by path.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleetmon_server::db::APP_ROLE;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use super::latency::Figures;

/// One SQL statement with its parameters (`$1`, `$2`, … in the text), rendered as fleetmon binds
/// them; `None` is SQL NULL.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Option<String>>,
}

/// One transaction of a script: opened as fleetmon's tenant transactions are, for `org_id` (or
/// no org), then `statements`, then `COMMIT`.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub org_id: Option<Uuid>,
    pub statements: Vec<Statement>,
}

/// Writes the pgbench script `script` (one request: its transactions in order) into `dir`;
/// returns the file and the `-D` variable definitions it needs.
fn write_script(dir: &Path, script: usize, transactions: &[Transaction]) -> (PathBuf, Vec<String>) {
    let mut text = String::new();
    let mut defines = Vec::new();
    for (t, transaction) in transactions.iter().enumerate() {
        let org = transaction
            .org_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        // fleetmon opens a tenant transaction in one round trip (`TenantDb::begin`); so does this.
        text.push_str("\\startpipeline\nBEGIN;\n");
        text.push_str(&format!("SET LOCAL ROLE {APP_ROLE};\n"));
        text.push_str(&format!(
            "SELECT set_config('fleetmon.org_id', '{org}', true), \
             set_config('fleetmon.user_id', '', true);\n\\endpipeline\n"
        ));
        for (n, statement) in transaction.statements.iter().enumerate() {
            let sql = substitute(&statement.sql, |index| {
                match statement
                    .params
                    .get(index - 1)
                    .unwrap_or_else(|| panic!("${index} has no parameter in {}", statement.sql))
                {
                    None => "NULL".to_string(),
                    Some(value) => {
                        let name = format!("s{script}_{t}_{n}_{index}");
                        defines.push(format!("{name}={value}"));
                        format!(":{name}")
                    }
                }
            });
            // A pgbench command ends at the end of its line; SQL comments would hide the rest.
            let one_line: Vec<&str> = sql
                .lines()
                .map(|line| line.split("--").next().unwrap_or_default())
                .flat_map(str::split_whitespace)
                .collect();
            text.push_str(&one_line.join(" "));
            text.push_str(";\n");
        }
        text.push_str("COMMIT;\n");
    }
    let path = dir.join(format!("script-{script}.sql"));
    std::fs::write(&path, text).unwrap();
    (path, defines)
}

/// `statement` with its parameters written in as literals, for `EXPLAIN`: untyped literals,
/// like pgbench's untyped parameters, so the planner sees the same values either way.
pub fn with_literals(statement: &Statement) -> String {
    substitute(&statement.sql, |index| match &statement.params[index - 1] {
        None => "NULL".to_string(),
        Some(value) => format!("'{}'", value.replace('\'', "''")),
    })
}

/// `sql` with every `$n` replaced by `replace(n)`.
fn substitute(sql: &str, mut replace: impl FnMut(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            let mut index = 0;
            while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                index = index * 10 + d.to_digit(10).unwrap() as usize;
                chars.next();
            }
            out.push_str(&replace(index));
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `scripts` (each one request's transactions, picked at random with equal weight) from
/// `clients` clients for `seconds`, after `warmup` seconds untimed; per-script latencies come
/// from pgbench's log.
pub fn run(
    options: &PgConnectOptions,
    scripts: &[Vec<Transaction>],
    clients: usize,
    warmup: u64,
    seconds: u64,
) -> Figures {
    let dir = std::env::temp_dir().join(format!("fleetmon-qbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-M".into(),
        "extended".into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        clients.min(2).to_string(),
        "-h".into(),
        options.get_host().to_string(),
        "-p".into(),
        options.get_port().to_string(),
        "-U".into(),
        options.get_username().to_string(),
    ];
    for (index, transactions) in scripts.iter().enumerate() {
        let (path, defines) = write_script(&dir, index, transactions);
        args.push("-f".into());
        args.push(format!("{}@1", path.display()));
        for define in defines {
            args.push("-D".into());
            args.push(define);
        }
    }
    let database = options.get_database().unwrap_or_default().to_string();
    if warmup > 0 {
        pgbench(&args, &["-T".into(), warmup.to_string()], &database);
    }
    let prefix = dir.join("log");
    let timed = [
        "-T".into(),
        seconds.to_string(),
        "-l".into(),
        format!("--log-prefix={}", prefix.display()),
    ];
    let (tps, failed) = pgbench(&args, &timed, &database);
    assert_eq!(failed, 0, "pgbench transactions failed");
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("log")
        {
            continue;
        }
        // client_id transaction_no time script_no time_epoch time_us: `time` is in µs.
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let micros: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
            latencies.push(Duration::from_micros(micros));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Figures::new(latencies, tps)
}

/// Runs pgbench; its reported throughput (without connection time) and failed transactions.
fn pgbench(args: &[String], extra: &[String], database: &str) -> (f64, u64) {
    let output = Command::new("pgbench")
        .args(args)
        .args(extra)
        .arg(database)
        .output()
        .expect("pgbench on PATH");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    let tps = field("tps = ").expect("pgbench reports tps");
    let failed = field("number of failed transactions: ").unwrap_or(0.0) as u64;
    (tps, failed)
}
