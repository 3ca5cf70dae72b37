//! One listener per process: a connection of its own that `LISTEN`s on [`CHANNEL`] and hands
//! each notification to the hub. When the connection is lost it reconnects with backoff, and the
//! hub tells every client to resync (what was sent meanwhile is gone). Every
//! [`PROBE_EVERY`] it notifies itself and expects to hear it back, so a connection that died
//! silently, or a `LISTEN` a pooler swallowed, is noticed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use uuid::Uuid;

use super::changes::{Notice, CHANNEL};
use super::hub::Hub;
use crate::db::sql::query;
use crate::db::{describe, parse_url, DbError};

/// How the listener's connection shows in `pg_stat_activity.application_name`.
pub const APPLICATION_NAME: &str = "fleetmon-listener";

const PROBE_EVERY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where to listen: `explicit` (`FLEETMON_LISTEN_DATABASE_URL`) if given, else the database's own
/// connection settings — except that a Neon pooler host (`ep-…-pooler.…`) becomes its direct host,
/// since `LISTEN` does not survive a transaction-mode pooler.
pub fn listen_options(
    explicit: Option<&str>,
    database: &PgConnectOptions,
) -> Result<PgConnectOptions, DbError> {
    let options = match explicit.filter(|url| !url.is_empty()) {
        Some(url) => parse_url(url).map_err(|error| match error {
            DbError::InvalidUrl(reason) => DbError::InvalidListenUrl(reason),
            other => other,
        })?,
        None => match direct_host(database.get_host()) {
            Some(host) => database.clone().host(&host),
            None => database.clone(),
        },
    };
    Ok(options.application_name(APPLICATION_NAME))
}

/// The direct host of a Neon pooler host: its first label without the `-pooler` suffix.
fn direct_host(host: &str) -> Option<String> {
    let (first, rest) = host.split_once('.')?;
    let endpoint = first.strip_suffix("-pooler")?;
    Some(format!("{endpoint}.{rest}"))
}

/// Listens until the task is aborted.
pub async fn run(options: PgConnectOptions, hub: Arc<Hub>) {
    let target = describe(&options);
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&options).await {
            Ok(mut listener) => {
                tracing::info!(%target, "listening for changes");
                hub.set_listening(true);
                backoff = Duration::from_millis(100);
                let lost = receive(&mut listener, &hub).await;
                hub.set_listening(false);
                tracing::warn!(%target, reason = %lost, "lost the change listener's connection; clients will resync once it is back");
            }
            Err(error) => {
                tracing::warn!(%target, %error, "could not listen for changes; retrying in {backoff:?}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A pool of one, as sqlx's listener wants one; the listener holds its only connection.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting is ours to do, so that every loss is seen (and resynced).
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Hands notifications to the hub until the connection is lost; returns why it was.
async fn receive(listener: &mut PgListener, hub: &Hub) -> String {
    let mut probe_every = tokio::time::interval(PROBE_EVERY);
    let mut probe: Option<(Uuid, Instant)> = None;
    loop {
        let due = tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    match Notice::parse(notification.payload()) {
                        Some(Notice::Changed { org, changes }) => hub.deliver(org, changes),
                        Some(Notice::Everything { org, .. }) => hub.deliver_everything(org),
                        Some(Notice::Probe { probe: id }) => {
                            if let Some((_, sent)) = probe.filter(|(ours, _)| *ours == id) {
                                hub.record_notify_lag(sent.elapsed());
                                probe = None;
                            }
                        }
                        None => tracing::warn!(payload = notification.payload(), "ignored a notification fleetmon did not send"),
                    }
                    false
                }
                Ok(None) => return "the connection closed".into(),
                Err(error) => return error.to_string(),
            },
            _ = probe_every.tick() => true,
        };
        if due {
            if probe.is_some() {
                return format!("its own probe did not come back within {PROBE_EVERY:?}");
            }
            let id = Uuid::new_v4();
            let sent = query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(Notice::Probe { probe: id }.payload())
                .execute(&mut *listener);
            match tokio::time::timeout(CONNECT_TIMEOUT, sent).await {
                Ok(Ok(_)) => probe = Some((id, Instant::now())),
                Ok(Err(error)) => return error.to_string(),
                Err(_) => return "its probe timed out".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neon_pooler_hosts_listen_on_their_direct_host() {
        let neon = parse_url(
            "postgres://u:p@ep-cool-bird-a1b2c3-pooler.us-east-2.aws.neon.tech/app?sslmode=require",
        )
        .unwrap();
        let options = listen_options(None, &neon).unwrap();
        assert_eq!(
            options.get_host(),
            "ep-cool-bird-a1b2c3.us-east-2.aws.neon.tech"
        );
        assert_eq!(options.get_database(), Some("app"));
        assert_eq!(options.get_application_name(), Some(APPLICATION_NAME));

        let direct = parse_url("postgres://u@db.internal:5432/app").unwrap();
        assert_eq!(
            listen_options(None, &direct).unwrap().get_host(),
            "db.internal"
        );

        let explicit = listen_options(Some("postgres://v@10.0.0.5:5433/app"), &neon).unwrap();
        assert_eq!(
            (explicit.get_host(), explicit.get_port()),
            ("10.0.0.5", 5433)
        );
        assert_eq!(
            listen_options(Some(""), &direct).unwrap().get_host(),
            "db.internal"
        );

        let message = listen_options(Some("mysql://x:secret@h/db"), &direct)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("FLEETMON_LISTEN_DATABASE_URL"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
    }
}
