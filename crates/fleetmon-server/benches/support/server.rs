//! A `fleetmon serve` child process for a benchmark, and the simulator's events to send it.
//! (Benchmarks include this file by path.)

use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use fleetmon_proto::ingest::Event;
use fleetmon_server::simulate::{Fleet, FleetShape};

/// The simulator's events for a busy fleet (100 machines × 4 workers, 150 jobs/s), over the
/// last minutes of simulated time.
pub fn generate(count: usize) -> Vec<Event> {
    let mut fleet = Fleet::new(FleetShape {
        machines: 100,
        workers_per_machine: 4,
        jobs_per_second: 150.0,
        seed: 2026,
    });
    let start = Utc::now() - chrono::Duration::minutes(40);
    let mut events = Vec::with_capacity(count);
    let mut tick = 0;
    while events.len() < count {
        events.extend(fleet.tick(start + chrono::Duration::milliseconds(tick * 250)));
        tick += 1;
    }
    events.truncate(count);
    events
}

/// The server under test, as its own process so that its memory can be read; it dies with the
/// benchmark, even when that panics.
pub struct Server {
    child: std::process::Child,
    pub base: String,
}

impl Server {
    /// Starts `fleetmon serve` on a free loopback port against `database_url`, with `env` set,
    /// and waits until it is ready.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_fleetmon"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", database_url)
            .env("FLEETMON_LOG", "error")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        while http
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the server in KiB, from `/proc`: `VmRSS:` now, `VmHWM:` the peak.
    pub fn memory_kib(&self, field: &str) -> u64 {
        memory_kib_of(self.pid(), field)
    }
}

/// A memory figure of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn memory_kib_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
