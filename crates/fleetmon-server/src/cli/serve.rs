//! `fleetmon serve`: the HTTP server on a migrated database, with partition maintenance,
//! retention and the change listener behind live streams, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;

use super::{open_migrated, ServeArgs};
use crate::auth::settings::AuthSettings;
use crate::auth::svix::WebhookSecrets;
use crate::auth::{signing, Auth};
use crate::config::{self, FileConfig, RetentionSettings};
use crate::db::{partitions, Database, SystemDb, TenantContext, TenantDb};
use crate::http::{self, AppState};
use crate::ingest::Limits;
use crate::live::{self, Hub};
use crate::retention;

/// How often `serve` runs its maintenance.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
/// How long start-up waits for the change listener before serving anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

pub async fn serve(args: ServeArgs, file: &FileConfig) -> anyhow::Result<()> {
    let listen = config::resolve_listen(args.listen, file);
    let settings = ServeSettings {
        ingest_limits: args.ingest.resolve(&file.ingest),
        protection: args.protection.resolve(&file.protection),
        retention: args.retention.resolve(&file.retention),
    };
    let auth = args.auth.resolve(file, listen)?;
    let listen_url = args
        .listen_database_url
        .or_else(|| file.listen_database_url.clone());
    let db = open_migrated(&args.db, file).await?;
    let result = async {
        let listener = bind(listen).await?;
        let metrics = match args.metrics_listen.or(file.metrics_listen) {
            Some(address) => Some(bind_metrics(address).await?),
            None => None,
        };
        let listeners = Listeners {
            api: listener,
            metrics,
        };
        let changes = live::listener::listen_options(listen_url.as_deref(), &db.connect_options())?;
        serve_on(&db, listeners, settings, auth, changes, shutdown_signal()).await
    }
    .await;
    db.close().await;
    result
}

pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}; is another server using it? choose another with --listen"))?;
    tracing::info!("fleetmon is listening on http://{}", listener.local_addr()?);
    Ok(listener)
}

async fn bind_metrics(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("could not listen on {address} for /metrics; choose another with --metrics-listen")
    })?;
    tracing::info!("metrics at http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}

/// Where to serve: the API, and `/metrics` on a listener of its own or (`None`) with the API.
pub struct Listeners {
    pub api: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// How `serve_on` serves: what requests may carry, back-pressure, retention.
pub struct ServeSettings {
    pub ingest_limits: Limits,
    pub protection: http::Protection,
    pub retention: RetentionSettings,
}

/// Serves until `shutdown`, keeping the coming days' partitions ready and running retention
/// meanwhile, with live streams fed by a change listener connecting with `changes`.
pub async fn serve_on(
    db: &Database,
    listeners: Listeners,
    settings: ServeSettings,
    auth: AuthSettings,
    changes: PgConnectOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let providers: Vec<&str> = [
        auth.local.then_some("local"),
        auth.stack.as_ref().map(|_| "stack"),
    ]
    .into_iter()
    .flatten()
    .chain(auth.oidc.iter().map(|o| o.name.as_str()))
    .collect();
    tracing::info!(providers = %providers.join(", "), public_url = %auth.public_url, "sign-in providers");
    let webhook = match &auth.stack {
        Some(stack) if !stack.webhook_secrets.is_empty() => Some(http::StackWebhook {
            issuer: stack.settings.issuer(),
            secrets: WebhookSecrets::parse(&stack.webhook_secrets.join(" "))
                .context("FLEETMON_STACK_WEBHOOK_SECRET is not usable")?,
        }),
        _ => None,
    };
    let auth = Auth::new(auth, &db.tenant()).context("could not set up sign-in")?;
    let maintenance = tokio::spawn(maintain(db.system(), db.tenant()));
    let retention = settings.retention.interval.map(|every| {
        tokio::spawn(retain(
            db.system(),
            db.tenant(),
            every,
            settings.retention.batch_size,
        ))
    });
    let hub = Arc::new(Hub::default());
    let listening = tokio::spawn(live::listener::run(changes, hub.clone()));
    // Streams opened before the listener listens would only start with a resync.
    if !hub.wait_listening(LISTEN_WAIT).await {
        tracing::warn!(
            "serving without listening for changes yet: live streams start once it does"
        );
    }
    let mut state = AppState::new(db.tenant(), settings.ingest_limits, auth)
        .with_live(http::LiveStreams::new(hub.clone()))
        .with_protection(settings.protection);
    if let Some(webhook) = webhook {
        state = state.with_stack_webhook(webhook);
    }
    let (router, metrics) = match listeners.metrics {
        Some(listener) => {
            let metrics = http::metrics_router(state.clone());
            let serving = tokio::spawn(async move {
                axum::serve(listener, metrics).await.map_err(|error| {
                    tracing::error!(%error, "the /metrics listener failed");
                })
            });
            (http::router_without_metrics(state), Some(serving))
        }
        None => (http::router(state), None),
    };
    // Streams never end by themselves: shutting down ends them.
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let served = http::serve(listeners.api, router, shutdown).await;
    listening.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    maintenance.abort();
    // A run cut short rolls back its open batch and releases its lock; the next run resumes.
    if let Some(retention) = retention {
        retention.abort();
    }
    tracing::info!("fleetmon stopped serving");
    served.context("the HTTP server failed")
}

/// Hourly: the coming days' history partitions, and the rotation of fleetmon's signing key.
async fn maintain(system: SystemDb, tenant: TenantDb) {
    let mut every = tokio::time::interval(MAINTENANCE_EVERY);
    // Start-up already ensured the partitions, and the signing key is created when first used.
    every.tick().await;
    loop {
        every.tick().await;
        match partitions::ensure_around_today(&system).await {
            Ok(0) => {}
            Ok(created) => tracing::info!(created, "created history partitions ahead of time"),
            Err(error) => tracing::error!(%error, "could not create history partitions"),
        }
        let rotated = async {
            let mut tx = tenant.begin(TenantContext::none()).await?;
            let rotated = signing::rotate_if_due(tx.conn()).await?;
            tx.commit().await?;
            Ok::<_, crate::db::DbError>(rotated)
        }
        .await;
        match rotated {
            Ok(None) => {}
            Ok(Some(kid)) => {
                tracing::info!(%kid, "rotated the signing key of fleetmon's access tokens")
            }
            Err(error) => tracing::error!(%error, "could not check the signing key's age"),
        }
    }
}

/// Retention every `every`, the first run at start-up (replicas restarted more often than the
/// interval must still run it). Only one replica at a time does the work; the others skip.
async fn retain(system: SystemDb, tenant: TenantDb, every: Duration, batch_size: u32) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match retention::run(&system, &tenant, batch_size, chrono::Utc::now()).await {
            Ok(outcome) => log_retention(&outcome),
            Err(error) => tracing::error!(%error, "retention failed; it is tried again next run"),
        }
    }
}

/// One line per run that did something, one per org it removed rows from.
pub fn log_retention(outcome: &retention::Outcome) {
    match outcome {
        retention::Outcome::Skipped => {
            tracing::info!("retention skipped: another fleetmon is running it")
        }
        retention::Outcome::Completed(report) => {
            for org in &report.orgs {
                tracing::info!(org = %org.org_id, rows = org.total(), cutoff = %org.cutoff, deleted = ?org.deleted, "retention removed expired data");
            }
            if !report.partitions_dropped.is_empty() {
                tracing::info!(partitions = ?report.partitions_dropped, "retention dropped history partitions");
            }
        }
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
