//! `fleetmon demo`: `serve` on the embedded default, plus a demo organization, its owner account
//! (password printed once, on first start), an ingest token and a simulated fleet running in the
//! same process, so a new user sees a living fleet at once.

use tokio::sync::watch;

use super::admin;
use super::serve::{bind, serve_on, shutdown_signal, Listeners, ServeSettings};
use super::{DemoArgs, SimulationArgs};
use crate::auth::local;
use crate::auth::tokens::{self, TokenKind};
use crate::config::{self, FileConfig};
use crate::db::sql::query;
use crate::db::{Database, TenantContext};
use crate::simulate;

pub const DEMO_ORG: &str = "demo";
const DEMO_ADMIN: &str = "admin@demo.fleetmon.local";
const DEMO_TOKEN: &str = "demo simulator";

pub async fn demo(args: DemoArgs, file: &FileConfig) -> anyhow::Result<()> {
    let listen = config::resolve_listen(args.listen, file);
    let db = super::open_migrated(&args.db, file).await?;
    let result = run(&db, listen, args.simulation, file).await;
    db.close().await;
    result
}

async fn run(
    db: &Database,
    listen: std::net::SocketAddr,
    simulation: SimulationArgs,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let tenant = db.tenant();
    let org_id = match admin::org_id(&tenant, DEMO_ORG).await {
        Ok(id) => id,
        Err(_) => admin::create_org(&tenant, DEMO_ORG, "Demo fleet").await?,
    };
    // A fresh token each run; the previous run's is revoked so only one is ever live.
    let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
    query("UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL")
        .bind(DEMO_TOKEN)
        .execute(tx.conn())
        .await?;
    let token = tokens::create(tx.conn(), org_id, TokenKind::Ingest, DEMO_TOKEN, None).await?;
    tx.commit().await?;

    let admin_password = ensure_admin(&tenant, org_id).await?;

    let listener = bind(listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!();
    println!("fleetmon demo is running at {url}");
    println!("  organization:    {DEMO_ORG}");
    println!(
        "  simulated fleet: {} machines x {} workers, {} jobs/s (seed {})",
        simulation.machines, simulation.workers, simulation.rate, simulation.seed
    );
    match &admin_password {
        Some(password) => {
            println!("  admin account:   {DEMO_ADMIN} / {password} (shown only this once)")
        }
        None => {
            println!("  admin account:   {DEMO_ADMIN} (its password was shown when it was created)")
        }
    }
    println!(
        "  ingest token:    {} (for your own agents; shown once)",
        token.secret
    );
    println!("  try:             curl {url}/readyz");
    println!("Press Ctrl-C to stop.");
    println!();

    // On Ctrl-C the fleet stops first and delivers what it has queued; then the server stops.
    let (stop_fleet, fleet_stopped) = watch::channel(false);
    let (stop_server, server_stopped) = watch::channel(false);
    let fleet = simulate::Fleet::new(simulation.shape());
    let simulator = {
        let url = url.clone();
        let secret = token.secret.clone();
        async move {
            let ran = simulate::run(fleet, &url, &secret, None, until(fleet_stopped)).await;
            if let Err(error) = ran {
                tracing::error!(%error, "the simulated fleet could not start");
            }
            let _ = stop_server.send(true);
        }
    };
    let signal = async move {
        shutdown_signal().await;
        let _ = stop_fleet.send(true);
    };
    let auth = crate::auth::settings::AuthSettings::local_only(&url);
    let listeners = Listeners {
        api: listener,
        metrics: None,
    };
    let changes = crate::live::listener::listen_options(
        file.listen_database_url.as_deref(),
        &db.connect_options(),
    )?;
    let server = serve_on(
        db,
        listeners,
        settings_of(file),
        auth,
        changes,
        until(server_stopped),
    );
    let (served, (), ()) = tokio::join!(server, simulator, signal);
    served
}

/// Creates the demo's owner account on first start; returns its password then, `None` after.
async fn ensure_admin(
    tenant: &crate::db::TenantDb,
    org_id: uuid::Uuid,
) -> anyhow::Result<Option<String>> {
    let password = crate::auth::random_base62(16);
    let mut tx = tenant.begin(TenantContext::none()).await?;
    let user_id =
        match local::create_account(tx.conn(), DEMO_ADMIN, Some("Demo admin"), &password).await {
            Ok(id) => id,
            Err(local::AccountError::Exists(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
    tx.commit().await?;
    let mut tx = tenant.begin(TenantContext::org(org_id)).await?;
    local::add_member(tx.conn(), org_id, user_id, "owner").await?;
    tx.commit().await?;
    Ok(Some(password))
}

/// Resolves once `flag` turns true.
async fn until(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// The demo takes its serving settings from `fleetmon.toml` only.
fn settings_of(file: &FileConfig) -> ServeSettings {
    ServeSettings {
        ingest_limits: crate::config::IngestArgs::default().resolve(&file.ingest),
        protection: crate::config::ProtectionArgs::default().resolve(&file.protection),
        retention: crate::config::RetentionArgs::default().resolve(&file.retention),
    }
}
