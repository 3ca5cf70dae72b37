//! `fleetmon serve` killed with SIGKILL, repeatedly, while an agent ingests through
//! `fleetmon-client`: nothing the client was told was accepted is lost, nothing is stored twice,
//! and the projected state equals a fresh projection of the stored history.

use crate::harness::{url_for, TestDb};
use crate::stream::serve_on;
use crate::sustained_ingest::{
    assert_projection_is_fresh, assert_stored_exactly, free_port, org_with_ingest_token, Load,
};

/// How many times the server is killed mid-ingest.
const KILLS: usize = 3;
/// Events delivered between two kills, so that every kill lands in sustained ingest.
const EVENTS_BETWEEN_KILLS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_nothing_and_doubles_nothing() {
    let db = TestDb::new().await;
    let tenant = db.tenant();
    let (org, token) = org_with_ingest_token(&tenant).await;
    // The same address after every restart, as behind a load balancer or a service name.
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("DATABASE_URL", url_for(&db.name))];
    let mut server = serve_on(&listen, &env);
    let load = Load::start(&server.base, &token);

    for _ in 0..KILLS {
        load.wait_for_more(EVENTS_BETWEEN_KILLS).await;
        server.kill();
        server = serve_on(&listen, &env);
    }
    load.wait_for_more(EVENTS_BETWEEN_KILLS).await;
    let (sent, stats) = load.finish().await;
    drop(server);

    assert!(
        stats.retries > 0,
        "the kills interrupted delivery: {stats:?}"
    );
    assert_stored_exactly(&tenant, org, &sent, &stats).await;
    assert_projection_is_fresh(&tenant, org, &sent).await;
}
