//! The private PostgreSQL server fleetmon starts when no `DATABASE_URL` is given.
//!
//! Layout of the data directory (`FLEETMON_DATA_DIR`, default `./fleetmon-data`):
//!
//! - `postgres/` — the cluster, created once by `initdb` (into a temporary directory that is
//!   renamed into place, so a crash during `initdb` never leaves a half-made cluster);
//! - `run/` — the Unix socket; the server listens on nothing else;
//! - `postgres.log` — the server's log;
//! - `fleetmon.lock` — held while a fleetmon process runs the server, so two never share it and a
//!   new one can tell an orphan of a killed run from a live owner.
//!
//! The server is spawned directly (not through `pg_ctl`) from a supervisor thread that waits on
//! it; the kernel sends it SIGINT (fast shutdown) if that thread — so fleetmon — dies, even by
//! SIGKILL. It is also in its own process group, so a Ctrl-C in the terminal reaches fleetmon
//! only, which then stops the server after the last request.

mod binaries;
mod processes;
mod service_user;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

pub use binaries::{BinarySearch, PgBinaries};
pub use service_user::ServiceUser;

/// The cluster's superuser, and the database fleetmon keeps its data in.
pub const SUPERUSER: &str = "fleetmon";
pub const DATABASE: &str = "fleetmon";
const PORT: u16 = 5432;
/// `sun_path` is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked at PG_BINDIR, `pg_config --bindir` and \
         {}/*/bin). Install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; \
         Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`) and set \
         PG_BINDIR if it is elsewhere, or set DATABASE_URL to use an existing PostgreSQL 14 or newer",
        lib_root.display()
    )]
    NoBinaries { lib_root: PathBuf },
    #[error(
        "PG_BINDIR={} does not contain the PostgreSQL server binaries `initdb` and `postgres`; \
         point it at the server's bin directory (for example /usr/lib/postgresql/16/bin) or unset it",
        .0.display()
    )]
    BadBindir(PathBuf),
    #[error(
        "the PostgreSQL server in {} is version {major_version}; fleetmon needs 14 or newer \
         (set PG_BINDIR to a newer server's bin directory, or set DATABASE_URL)",
        bindir.display()
    )]
    TooOld { bindir: PathBuf, major_version: u32 },
    #[error(
        "fleetmon runs as root and PostgreSQL refuses to, but there is no unprivileged `postgres` \
         or `nobody` user to run it as; create one (`useradd --system postgres`) or set DATABASE_URL"
    )]
    NoServiceUser,
    #[error(
        "the embedded PostgreSQL runs as user `{user}` (it refuses to run as root), which cannot \
         reach {}: {} is not searchable by it. Set FLEETMON_DATA_DIR to a directory it can reach \
         (for example /var/lib/fleetmon), or set DATABASE_URL",
        data_dir.display(), blocked_by.display()
    )]
    Unreachable {
        user: String,
        data_dir: PathBuf,
        blocked_by: PathBuf,
    },
    #[error(
        "{} exists but is not a PostgreSQL data directory; move it away or choose another \
         FLEETMON_DATA_DIR",
        .0.display()
    )]
    NotACluster(PathBuf),
    #[error(
        "the data in {} was created by PostgreSQL {data}, but the server binaries found are version \
         {binaries}; set PG_BINDIR to the PostgreSQL {data} binaries, or upgrade the data with pg_upgrade",
        pgdata.display()
    )]
    VersionMismatch {
        pgdata: PathBuf,
        data: u32,
        binaries: u32,
    },
    #[error(
        "{} is in use by another running fleetmon; stop it first or choose another FLEETMON_DATA_DIR",
        .0.display()
    )]
    InUse(PathBuf),
    #[error(
        "the socket path {} is longer than the 107 bytes Unix allows; choose a shorter FLEETMON_DATA_DIR",
        .0.display()
    )]
    SocketPathTooLong(PathBuf),
    #[error("{} is not a directory; move it away or choose another FLEETMON_DATA_DIR", .0.display())]
    NotADirectory(PathBuf),
    #[error("server processes left on {} by an earlier run would not stop", .0.display())]
    OrphansSurvived(PathBuf),
    #[error("initdb failed ({status}); its output:\n{output}")]
    InitdbFailed { status: ExitStatus, output: String },
    #[error("the embedded PostgreSQL exited during start-up ({status}); the end of {}:\n{log_tail}", log.display())]
    StartFailed {
        status: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("the embedded PostgreSQL was not ready after {}s; see {}", READY_TIMEOUT.as_secs(), .0.display())]
    StartTimeout(PathBuf),
    #[error("could not {action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("could not create the fleetmon database in the embedded PostgreSQL: {0}")]
    CreateDatabase(sqlx::Error),
}

impl EmbeddedError {
    fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

/// Paths inside the data directory.
#[derive(Debug, Clone)]
struct Layout {
    root: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
}

impl Layout {
    fn new(root: PathBuf) -> Self {
        Self {
            pgdata: root.join("postgres"),
            socket_dir: root.join("run"),
            log: root.join("postgres.log"),
            root,
        }
    }

    fn socket_lock(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{PORT}.lock"))
    }
}

/// A running embedded server. Stop it with [`EmbeddedPostgres::stop`]; dropping it stops it too.
pub struct EmbeddedPostgres {
    layout: Layout,
    pid: Pid,
    exited: Mutex<mpsc::Receiver<ExitStatus>>,
    /// Set once the server's exit has been seen: its pid may then belong to another process.
    reaped: std::sync::atomic::AtomicBool,
    /// Held for as long as this server runs; see the module docs.
    _lock: File,
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Initializes (once) and starts the server in `data_dir`, using the binaries found on this
    /// machine. Blocks until the server accepts connections.
    pub fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        Self::start_with(data_dir, &BinarySearch::from_env())
    }

    pub fn start_with(data_dir: &Path, search: &BinarySearch) -> Result<Self, EmbeddedError> {
        let binaries = search.find()?;
        let user = ServiceUser::choose()?;

        user.create_root(data_dir)?;
        let root = data_dir
            .canonicalize()
            .map_err(|e| EmbeddedError::io(format!("resolve {}", data_dir.display()), e))?;
        let layout = Layout::new(root);
        let socket = layout.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EmbeddedError::SocketPathTooLong(socket));
        }
        user.check_reachable(&layout.root)?;
        let lock = lock_data_dir(&layout.root)?;

        initdb_once(&layout, &binaries, &user)?;
        user.private_dir(&layout.socket_dir)?;
        processes::clear_stale_state(&layout.pgdata, &layout.socket_lock(), &binaries.postgres())?;

        let (pid, exited) = spawn_server(&layout, &binaries, &user)?;
        let server = Self {
            layout,
            pid,
            exited: Mutex::new(exited),
            reaped: std::sync::atomic::AtomicBool::new(false),
            _lock: lock,
            stopped: false,
        };
        server.wait_ready()?;
        tracing::info!(
            data_dir = %server.layout.root.display(),
            version = binaries.major_version,
            user = %user.name,
            "embedded PostgreSQL is ready"
        );
        Ok(server)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn socket_dir(&self) -> &Path {
        &self.layout.socket_dir
    }

    pub fn port(&self) -> u16 {
        PORT
    }

    /// Options for the `fleetmon` database over the Unix socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.connect_options_for(DATABASE)
    }

    pub fn connect_options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(&self.layout.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    /// Creates the `fleetmon` database on first start.
    pub async fn create_database_if_missing(&self) -> Result<(), EmbeddedError> {
        let mut conn = self
            .connect_options_for("postgres")
            .connect()
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
        let exists: bool = crate::db::sql::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
        )
        .bind(DATABASE)
        .fetch_one(&mut conn)
        .await
        .map_err(EmbeddedError::CreateDatabase)?;
        if !exists {
            sqlx::raw_sql(&format!("CREATE DATABASE {DATABASE}"))
                .execute(&mut conn)
                .await
                .map_err(EmbeddedError::CreateDatabase)?;
        }
        conn.close().await.map_err(EmbeddedError::CreateDatabase)
    }

    fn wait_ready(&self) -> Result<(), EmbeddedError> {
        let started = Instant::now();
        let mut announced = false;
        let pid_file = processes::postmaster_pid_file(&self.layout.pgdata);
        loop {
            if let Ok(status) = self.exited.lock().expect("exit channel").try_recv() {
                self.reaped.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(EmbeddedError::StartFailed {
                    status: status.to_string(),
                    log: self.layout.log.clone(),
                    log_tail: log_tail(&self.layout.log),
                });
            }
            if is_ready(&pid_file, self.pid) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(EmbeddedError::StartTimeout(self.layout.log.clone()));
            }
            if !announced && started.elapsed() > Duration::from_secs(3) {
                tracing::info!("waiting for the embedded PostgreSQL to become ready (it may be recovering after a crash)");
                announced = true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Fast shutdown: ends sessions, checkpoints and exits. Escalates if the server hangs.
    pub fn stop(mut self) -> Result<(), EmbeddedError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), EmbeddedError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let exited = self.exited.lock().expect("exit channel");
        for (signal, wait) in [
            (Signal::SIGINT, STOP_TIMEOUT),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            // Never signal a pid whose process has been reaped: it may be someone else's now.
            if self.reaped.load(std::sync::atomic::Ordering::SeqCst)
                || !matches!(exited.try_recv(), Err(mpsc::TryRecvError::Empty))
            {
                return Ok(());
            }
            let _ = kill(self.pid, signal);
            match exited.recv_timeout(wait) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(%signal, "embedded PostgreSQL did not stop in time; escalating")
                }
            }
        }
        Err(EmbeddedError::OrphansSurvived(self.layout.pgdata.clone()))
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "embedded PostgreSQL did not stop");
        }
    }
}

fn lock_data_dir(root: &Path) -> Result<File, EmbeddedError> {
    let path = root.join("fleetmon.lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(|e| EmbeddedError::io(format!("create {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EmbeddedError::InUse(root.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(EmbeddedError::io(format!("lock {}", path.display()), e))
        }
    }
}

/// Runs `initdb` unless the cluster exists; checks an existing one matches the binaries.
fn initdb_once(
    layout: &Layout,
    binaries: &PgBinaries,
    user: &ServiceUser,
) -> Result<(), EmbeddedError> {
    let version_file = layout.pgdata.join("PG_VERSION");
    if let Ok(text) = std::fs::read_to_string(&version_file) {
        let data: u32 = text
            .trim()
            .parse()
            .map_err(|_| EmbeddedError::NotACluster(layout.pgdata.clone()))?;
        if data != binaries.major_version {
            return Err(EmbeddedError::VersionMismatch {
                pgdata: layout.pgdata.clone(),
                data,
                binaries: binaries.major_version,
            });
        }
        return Ok(());
    }
    if layout.pgdata.exists() {
        return Err(EmbeddedError::NotACluster(layout.pgdata.clone()));
    }

    let staging = layout.root.join("postgres.initdb-tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| {
            EmbeddedError::io(format!("remove the unfinished {}", staging.display()), e)
        })?;
    }
    // Made by fleetmon and given to the server's user, who could not create it in a data
    // directory that stays fleetmon's own.
    user.private_dir(&staging)?;
    tracing::info!(data_dir = %layout.root.display(), "creating the embedded PostgreSQL cluster (first start)");
    let mut command = Command::new(binaries.initdb());
    command
        .arg("--pgdata")
        .arg(&staging)
        .args([
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
        ])
        .current_dir(&layout.root)
        .stdin(Stdio::null());
    as_service_user(&mut command, user);
    let output = command
        .output()
        .map_err(|e| EmbeddedError::io(format!("run {}", binaries.initdb().display()), e))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(EmbeddedError::InitdbFailed {
            status: output.status,
            output: text,
        });
    }
    std::fs::rename(&staging, &layout.pgdata).map_err(|e| {
        EmbeddedError::io(
            format!("move the new cluster to {}", layout.pgdata.display()),
            e,
        )
    })
}

fn as_service_user(command: &mut Command, user: &ServiceUser) {
    if user.switch {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

/// Starts the postmaster from a supervisor thread; returns its pid and a channel that yields
/// its exit status.
fn spawn_server(
    layout: &Layout,
    binaries: &PgBinaries,
    user: &ServiceUser,
) -> Result<(Pid, mpsc::Receiver<ExitStatus>), EmbeddedError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&layout.log)
        .map_err(|e| EmbeddedError::io(format!("open {}", layout.log.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| EmbeddedError::io("duplicate the log file handle", e))?;
    let mut command = Command::new(binaries.postgres());
    command
        .arg("-D")
        .arg(&layout.pgdata)
        .arg("-k")
        .arg(&layout.socket_dir)
        .args(["-p", &PORT.to_string()])
        .args(["-c", "listen_addresses="])
        .args(["-c", "unix_socket_permissions=0700"])
        .current_dir(&layout.root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    as_service_user(&mut command, user);
    // SAFETY: the closure runs in the forked child before exec and only makes one
    // async-signal-safe system call (prctl). It runs after std has switched user, which matters:
    // changing credentials resets the parent-death signal.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
        });
    }

    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-postgres".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(child.id()));
                match child.wait() {
                    Ok(status) => {
                        tracing::debug!(%status, "embedded PostgreSQL exited");
                        let _ = exit_tx.send(status);
                    }
                    Err(error) => tracing::error!(%error, "lost track of the embedded PostgreSQL"),
                }
            }
            Err(error) => {
                let _ = spawned_tx.send(Err(error));
            }
        })
        .map_err(|e| EmbeddedError::io("start the supervisor thread", e))?;
    let pid = spawned_rx
        .recv()
        .map_err(|_| {
            EmbeddedError::io(
                "start postgres",
                std::io::Error::other("supervisor thread died"),
            )
        })?
        .map_err(|e| EmbeddedError::io(format!("run {}", binaries.postgres().display()), e))?;
    Ok((Pid::from_raw(pid as i32), exit_rx))
}

/// The postmaster writes `ready` on line 8 of `postmaster.pid` once it accepts connections.
fn is_ready(pid_file: &Path, pid: Pid) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(&pid.to_string())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

/// The last few kilobytes of the server log, for error messages.
fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 4096;
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}
