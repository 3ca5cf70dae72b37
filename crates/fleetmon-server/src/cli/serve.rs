//! `fleetmon serve`: the HTTP server on a migrated database, with partition maintenance, until
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{open_migrated, ServeArgs};
use crate::config::{self, FileConfig};
use crate::db::{partitions, Database, SystemDb};
use crate::http::{self, AppState};
use crate::ingest::Limits;

/// How often `serve` makes sure the coming days' history partitions exist.
const PARTITION_MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

pub async fn serve(args: ServeArgs, file: &FileConfig) -> anyhow::Result<()> {
    let listen = config::resolve_listen(args.listen, file);
    let ingest_limits = args.ingest.resolve(&file.ingest);
    let db = open_migrated(&args.db, file).await?;
    let result = async {
        let listener = bind(listen).await?;
        serve_on(&db, listener, ingest_limits, shutdown_signal()).await
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

/// Serves until `shutdown`, keeping the coming days' partitions ready meanwhile.
pub async fn serve_on(
    db: &Database,
    listener: TcpListener,
    ingest_limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let maintenance = tokio::spawn(maintain_partitions(db.system()));
    let router = http::router(AppState::new(db.tenant(), ingest_limits));
    let served = http::serve(listener, router, shutdown).await;
    maintenance.abort();
    tracing::info!("fleetmon stopped serving");
    served.context("the HTTP server failed")
}

async fn maintain_partitions(system: SystemDb) {
    let mut every = tokio::time::interval(PARTITION_MAINTENANCE_EVERY);
    every.tick().await; // start-up already ensured them
    loop {
        every.tick().await;
        match partitions::ensure_around_today(&system).await {
            Ok(0) => {}
            Ok(created) => tracing::info!(created, "created history partitions ahead of time"),
            Err(error) => tracing::error!(%error, "could not create history partitions"),
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
