//! `fleetmon simulate`: a realistic fleet driving the public ingest API, as real agents would,
//! through `fleetmon-client`.

mod model;
mod rng;

use std::time::Duration;

use chrono::Utc;
use fleetmon_client::{Client, ClientConfig};

pub use model::{Fleet, FleetShape, Tally};

/// How often the simulated agents act.
const TICK: Duration = Duration::from_millis(250);
const REPORT_EVERY: Duration = Duration::from_secs(10);
const FINAL_FLUSH: Duration = Duration::from_secs(10);

/// Parses `90`, `90s`, `15m` or `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m or 2h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?} is not a duration like 90s, 15m or 2h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Runs `fleet` against `url` until `duration` has passed (forever if `None`) or `stop` resolves,
/// printing progress; returns the client's final counts.
pub async fn run(
    mut fleet: Fleet,
    url: &str,
    token: &str,
    duration: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<fleetmon_client::Stats, fleetmon_client::StartError> {
    let client = Client::start(ClientConfig::new(url, token))?;
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = started;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => break,
        }
        for event in fleet.tick(Utc::now()) {
            // A full buffer drops the newest events and counts them; the fleet goes on.
            let _ = client.send(event);
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = tokio::time::Instant::now();
            report(started.elapsed(), &fleet.tally, &client.stats());
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    // Deliver what is queued, but do not hang on a server that is gone.
    let flushed = tokio::time::timeout(FINAL_FLUSH, client.flush())
        .await
        .is_ok();
    let stats = client.stats();
    if flushed {
        client.shutdown().await;
    } else {
        tracing::warn!(
            "gave up delivering the last events after {}s",
            FINAL_FLUSH.as_secs()
        );
    }
    report(started.elapsed(), &fleet.tally, &stats);
    Ok(stats)
}

fn report(elapsed: Duration, tally: &Tally, stats: &fleetmon_client::Stats) {
    tracing::info!(
        "simulated {}s: jobs submitted {} completed {} failed {} retried {} cancelled {} | events \
         sent {} accepted {} duplicates {} rejected {} failed {} dropped {}",
        elapsed.as_secs(),
        tally.submitted,
        tally.completed,
        tally.failed,
        tally.retried,
        tally.cancelled,
        tally.events,
        stats.accepted,
        stats.duplicates,
        stats.rejected,
        stats.failed,
        stats.dropped,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
