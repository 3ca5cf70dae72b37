//! The `fleetmon` command line.

mod admin;
mod demo;
mod serve;

use serve::{serve, shutdown_signal};

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{
    DatabaseArgs, FileConfig, GlobalArgs, IngestArgs, LogSettings, ProtectionArgs, RetentionArgs,
};
use crate::db::Database;
use crate::simulate;
use crate::telemetry;

/// fleetmon: monitoring for distributed job/worker fleets, kept in Postgres.
///
/// With no DATABASE_URL, fleetmon starts a private PostgreSQL from the server binaries installed
/// on this machine, in --data-dir.
#[derive(Debug, Parser)]
#[command(name = "fleetmon", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the server: migrates the database, then serves the API.
    Serve(ServeArgs),
    /// Serve on the embedded default with a demo organization and a simulated fleet.
    Demo(DemoArgs),
    /// Drive a fleetmon's ingest API with a realistic simulated fleet.
    Simulate(SimulateArgs),
    /// Apply pending schema migrations, then exit. Safe to run from several places at once.
    Migrate(MigrateArgs),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage API tokens: `ingest` tokens for agents, `read` tokens for programs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage built-in accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the keys fleetmon signs its session tokens with.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Delete history older than each organization's retention_days (serve does it hourly).
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run retention once now: drop expired history partitions, delete expired rows and jobs in
    /// batches, record it in each organization's audit log. Does nothing if another fleetmon is
    /// running it at the same moment.
    Run {
        /// Rows deleted per transaction [default: 5000]
        #[arg(long, env = "FLEETMON_RETENTION_BATCH_SIZE", value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: Option<u32>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start signing with a new key now (they also rotate monthly). The old key keeps
    /// verifying for an hour, so nobody is signed out; to cut off a leaked key at once, revoke
    /// sessions instead.
    Rotate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a built-in account. The password is asked for at the terminal, or read as one line
    /// from standard input when that is not a terminal.
    Create {
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Make the user a member of this organization (by slug)...
        #[arg(long, requires = "role")]
        org: Option<String>,
        /// ...with this role.
        #[arg(long, value_enum, requires = "org")]
        role: Option<crate::orgs::Role>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

impl UserCommand {
    fn db(&self) -> &DatabaseArgs {
        match self {
            Self::Create { db, .. } => db,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    Create {
        /// Short name used in URLs: lowercase letters, digits and dashes.
        slug: String,
        /// Display name [default: the slug]
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

impl OrgCommand {
    fn db(&self) -> &DatabaseArgs {
        match self {
            Self::Create { db, .. } => db,
        }
    }
}

impl TokenCommand {
    fn db(&self) -> &DatabaseArgs {
        match self {
            Self::Create { db, .. } | Self::List { db, .. } | Self::Revoke { db, .. } => db,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Ingest,
    Read,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// What the token is for, shown in listings.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List an organization's tokens (never their secrets).
    List {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a token: requests using it are refused from now on.
    Revoke {
        #[arg(long)]
        org: String,
        /// The token's id, as shown by `token list`.
        id: uuid::Uuid,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "FLEETMON_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// A direct (not pooled) connection to the same database, for receiving change
    /// notifications with LISTEN, which transaction poolers break [default: the database URL; for
    /// a Neon `-pooler` host, the same host without `-pooler`]
    #[arg(
        long,
        env = "FLEETMON_LISTEN_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub listen_database_url: Option<String>,

    /// Serve Prometheus' `/metrics` on this address only (e.g. a private interface) instead of
    /// on the main listener
    #[arg(long, env = "FLEETMON_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub ingest: IngestArgs,

    #[command(flatten)]
    pub protection: ProtectionArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub auth: crate::auth::settings::AuthArgs,
}

/// The shape of a simulated fleet.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulationArgs {
    /// Machines in the fleet.
    #[arg(long, default_value_t = 8)]
    pub machines: usize,
    /// Workers per machine (one per GPU).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Jobs arriving per second, on average.
    #[arg(long, default_value_t = 3.0)]
    pub rate: f64,
    /// Seed of every random choice: the same seed gives the same fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl SimulationArgs {
    fn shape(&self) -> simulate::FleetShape {
        simulate::FleetShape {
            machines: self.machines,
            workers_per_machine: self.workers,
            jobs_per_second: self.rate,
            seed: self.seed,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "FLEETMON_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub simulation: SimulationArgs,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Base URL of the fleetmon to send to, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub url: String,
    /// An ingest token of the organization to fill (`fleetmon token create --kind ingest`).
    #[arg(long, env = "FLEETMON_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Stop after this long (90s, 15m, 2h) [default: until Ctrl-C]
    #[arg(long, value_parser = simulate::parse_duration)]
    pub duration: Option<std::time::Duration>,
    #[command(flatten)]
    pub simulation: SimulationArgs,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.global.config.as_deref())?;
    telemetry::init(&LogSettings::resolve(&cli.global, &file))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args, &file).await,
            Command::Migrate(args) => migrate(args, &file).await,
            Command::Demo(args) => demo::demo(args, &file).await,
            Command::Simulate(args) => {
                let fleet = simulate::Fleet::new(args.simulation.shape());
                let stats = simulate::run(
                    fleet,
                    &args.url,
                    &args.token,
                    args.duration,
                    shutdown_signal(),
                )
                .await?;
                if stats.accepted + stats.duplicates == 0 && fleet_sent(&stats) > 0 {
                    anyhow::bail!(
                        "no event was accepted; check --url and --token (the log above says why)"
                    );
                }
                Ok(())
            }
            Command::Org(command) => {
                let db = open_migrated(command.db(), &file).await?;
                let result = admin::org(&db, command).await;
                db.close().await;
                result
            }
            Command::Token(command) => {
                let db = open_migrated(command.db(), &file).await?;
                let result = admin::token(&db, command).await;
                db.close().await;
                result
            }
            Command::Keys(KeysCommand::Rotate { db }) => {
                let db = open_migrated(&db, &file).await?;
                let result = admin::rotate_keys(&db).await;
                db.close().await;
                result
            }
            Command::Retention(RetentionCommand::Run { batch_size, db }) => {
                let db = open_migrated(&db, &file).await?;
                let result = admin::retention(&db, batch_size, &file).await;
                db.close().await;
                result
            }
            Command::User(command) => {
                // Ask before touching the database, so a mistyped password costs nothing.
                let password = admin::read_password()?;
                let db = open_migrated(command.db(), &file).await?;
                let result = admin::user(&db, command, &password).await;
                db.close().await;
                result
            }
        }
    })
}

/// Events the simulated fleet handed to its client, whatever became of them.
fn fleet_sent(stats: &fleetmon_client::Stats) -> u64 {
    stats.queued + stats.accepted + stats.duplicates + stats.rejected + stats.failed + stats.dropped
}

/// Opens the database and brings its schema up to date.
async fn open_migrated(args: &DatabaseArgs, file: &FileConfig) -> anyhow::Result<Database> {
    let db = Database::open(&args.resolve(file)).await?;
    match db.prepare_schema().await {
        Ok(_) => Ok(db),
        Err(error) => {
            db.close().await;
            Err(error.into())
        }
    }
}

async fn migrate(args: MigrateArgs, file: &FileConfig) -> anyhow::Result<()> {
    let db = Database::open(&args.db.resolve(file)).await?;
    let result = db.prepare_schema().await;
    db.close().await;
    let report = result?;
    if report.applied.is_empty() {
        println!("schema is up to date (version {})", report.current_version);
    } else {
        println!(
            "applied migrations {:?}; schema is at version {}",
            report.applied, report.current_version
        );
    }
    Ok(())
}
