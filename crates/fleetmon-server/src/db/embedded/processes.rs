//! Clearing what a crashed run left behind before the server starts again.
//!
//! The caller holds the data directory's lock, so no live fleetmon owns this cluster: any server
//! process still running on it is an orphan (its fleetmon was killed), and a lock file naming a
//! live process names an unrelated process that reused the pid — which would make `postgres`
//! refuse to start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::EmbeddedError;

/// Stops orphaned server processes on `pgdata` (running `postgres`, the server binary) and removes
/// lock files that name reused pids.
pub fn clear_stale_state(
    pgdata: &Path,
    socket_lock: &Path,
    postgres: &Path,
) -> Result<(), EmbeddedError> {
    let orphans = servers_in(pgdata, postgres);
    if !orphans.is_empty() {
        tracing::warn!(
            count = orphans.len(),
            "stopping server processes left running on the embedded data directory by an earlier run"
        );
        // SIGINT asks a postmaster for a fast shutdown; backends of a dead postmaster are killed.
        signal_all(&orphans, Signal::SIGINT);
        if !wait_gone(&orphans, Duration::from_secs(30)) {
            signal_all(&orphans, Signal::SIGKILL);
            if !wait_gone(&orphans, Duration::from_secs(5)) {
                return Err(EmbeddedError::OrphansSurvived(pgdata.to_path_buf()));
            }
        }
    }
    for lock_file in [pgdata.join("postmaster.pid"), socket_lock.to_path_buf()] {
        remove_if_pid_reused(&lock_file)?;
    }
    Ok(())
}

/// Processes of the server binary `exe` whose working directory is `dir`: the postmaster and
/// every backend chdir there. Anything else there (a shell, an editor, a backup) is left alone.
fn servers_in(dir: &Path, exe: &Path) -> Vec<Pid> {
    let exe = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
            let binary = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (pid != me && cwd == dir && binary == exe).then(|| Pid::from_raw(pid as i32))
        })
        .collect()
}

fn signal_all(pids: &[Pid], signal: Signal) {
    for pid in pids {
        // Already gone is fine.
        let _ = kill(*pid, signal);
    }
}

fn is_alive(pid: Pid) -> bool {
    // EPERM means it exists but belongs to someone else.
    !matches!(kill(pid, None), Err(nix::errno::Errno::ESRCH)) && !is_zombie(pid)
}

fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(after_name == 'Z')
        })
        .unwrap_or(false)
}

pub fn wait_gone(pids: &[Pid], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|pid| !is_alive(*pid)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid on the first line of a PostgreSQL lock file.
pub fn lock_file_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // A standalone backend (not a postmaster) writes its pid negated.
    Some(Pid::from_raw(pid.abs()))
}

/// A lock file naming a dead process is left for `postgres`, which checks it and cleans up the
/// old shared memory itself; one naming a live (hence unrelated) process is removed.
fn remove_if_pid_reused(path: &Path) -> Result<(), EmbeddedError> {
    let Some(pid) = lock_file_pid(path) else {
        return Ok(());
    };
    if is_alive(pid) {
        tracing::warn!(file = %path.display(), %pid, "removing a stale lock file whose pid now belongs to another process");
        std::fs::remove_file(path)
            .map_err(|e| EmbeddedError::io(format!("remove stale {}", path.display()), e))?;
    }
    Ok(())
}

/// The paths a running server's lock file points at, for tests and diagnostics.
pub fn postmaster_pid_file(pgdata: &Path) -> PathBuf {
    pgdata.join("postmaster.pid")
}
