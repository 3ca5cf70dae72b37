//! The overview and the machine page following the org's live stream in a real Chromium: changes
//! ingested through the ingest API while the page is open appear within the two seconds,
//! patched into the same page (the machine card, the GPU is the same element, the page was not
//! reloaded); and a server without streams still keeps the overview current by polling.

use fleetmon_server::orgs::Role;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::browser::Browser;
use crate::dashboard::{a_new_machine_appears, email, fleet_events, open_signed_in, Site};
use crate::ingest_http::event;
use crate::signin::{account, PASSWORD};

/// The bound for an ingested event to reach the open page.
pub const LIVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Polls the page until `script` (a JavaScript expression) is true, for at most [`LIVE_WITHIN`]
/// from `since` (when the ingest request returned).
pub async fn shows_within_bound(
    browser: &Browser,
    since: tokio::time::Instant,
    what: &str,
    script: &str,
) {
    let body = format!("return Boolean({script});");
    loop {
        let shown = browser
            .client
            .execute(&body, vec![])
            .await
            .expect("run the check");
        if shown == json!(true) {
            return;
        }
        assert!(
            since.elapsed() < LIVE_WITHIN,
            "the open page did not show {what} within {LIVE_WITHIN:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The text of the first element matching `css` (empty without one), as a JavaScript expression
/// that method calls can follow (`….includes(…)`).
pub fn text_of(css: &str) -> String {
    format!("((document.querySelector({css:?}) || {{}}).textContent || '')")
}

/// Changes to the fleet of [`fleet_events`]: a job started on w-idle, which now reports busy with
/// it, and a new machine gpu-05.
fn changes() -> Vec<Value> {
    let run = json!({"job_id": "j-77", "worker_id": "w-idle", "machine_id": "gpu-01"});
    vec![
        event(
            "job.submitted",
            json!({"job_id": "j-77", "name": "render 77", "job_type": "render"}),
        ),
        event("job.started", run),
        event(
            "worker.heartbeat",
            json!({"worker_id": "w-idle", "machine_id": "gpu-01", "status": "busy", "current_job_id": "j-77"}),
        ),
        event(
            "machine.heartbeat",
            json!({"machine_id": "gpu-05", "status": "ready", "host": {"hostname": "gpu-05.lan"}}),
        ),
    ]
}

/// A site (with live streams or without) whose org `slug` has the fleet of [`fleet_events`],
/// and a browser of one of its viewers on its overview.
async fn overview_of_a_fleet(streams: bool, slug: &str) -> (Site, Uuid, Browser) {
    let site = if streams {
        Site::start().await
    } else {
        Site::without_streams().await
    };
    let user = email("wall");
    let user_id = account(&site.tenant(), &user).await;
    let org = site
        .org(slug, "Live Farm", &[(user_id, Role::Viewer)])
        .await;
    site.wide_thresholds(org).await;
    site.ingest(org, &fleet_events()).await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, &format!("/orgs/{slug}")).await;
    (site, org, browser)
}

#[tokio::test]
async fn an_ingested_event_appears_on_the_open_overview_within_two_seconds() {
    let (site, org, browser) = overview_of_a_fleet(true, "live-farm").await;
    browser.find("[data-live][data-streaming]").await;
    assert!(browser
        .text("li.worker[data-worker='w-idle']")
        .await
        .contains("idle"));
    assert_eq!(browser.text("[data-stat='active'] strong").await, "0");
    browser.mark_page().await;

    site.ingest(org, &changes()).await;
    let ingested = tokio::time::Instant::now();
    let worker = text_of("li.worker[data-worker='w-idle']");
    shows_within_bound(
        &browser,
        ingested,
        "w-idle busy on j-77",
        &format!("{worker}.includes('busy') && {worker}.includes('Job j-77')"),
    )
    .await;
    shows_within_bound(
        &browser,
        ingested,
        "one active job",
        &format!("{} === '1'", text_of("[data-stat='active'] strong")),
    )
    .await;
    shows_within_bound(
        &browser,
        ingested,
        "the new machine gpu-05",
        "document.querySelector(\"li[data-machine='gpu-05']\") !== null",
    )
    .await;
    shows_within_bound(
        &browser,
        ingested,
        "4 machines and 2 busy workers in the summary",
        &format!(
            "{0}.includes('4 machines') && {0}.includes('2 busy')",
            text_of(".summary")
        ),
    )
    .await;
    browser.assert_same_page().await;
    // Read in one go: a re-read still under way may replace the card between two WebDriver calls.
    let link = browser
        .client
        .execute(
            "return document.querySelector(\"li.worker[data-worker='w-idle'] .job a\").getAttribute('href');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(link, json!("/orgs/live-farm/jobs/j-77"));
    browser.assert_clean_console("the live overview", &[]).await;
    browser.screenshot("overview-live").await;
    browser.close().await;
}

#[tokio::test]
async fn a_worker_change_is_patched_into_the_same_card() {
    let (site, org, browser) = overview_of_a_fleet(true, "patch-farm").await;
    browser.find("[data-live][data-streaming]").await;
    browser
        .client
        .execute(
            "document.querySelector(\"li[data-machine='gpu-01']\").fleetmonKept = 1;",
            vec![],
        )
        .await
        .unwrap();

    // Only w-busy changes: it finishes its job and pauses. Nothing new to show, so the page
    // patches the card it has rather than reading the page again.
    site.ingest(
        org,
        &[event(
            "worker.heartbeat",
            json!({"worker_id": "w-busy", "machine_id": "gpu-01", "status": "paused"}),
        )],
    )
    .await;
    let ingested = tokio::time::Instant::now();
    let worker = text_of("li.worker[data-worker='w-busy']");
    shows_within_bound(
        &browser,
        ingested,
        "w-busy paused without a job",
        &format!("{worker}.includes('paused') && !{worker}.includes('Job ')"),
    )
    .await;
    shows_within_bound(
        &browser,
        ingested,
        "0 busy workers in the summary",
        &format!("{}.includes('0 busy')", text_of(".summary")),
    )
    .await;
    let kept = browser
        .client
        .execute(
            "return document.querySelector(\"li[data-machine='gpu-01']\").fleetmonKept;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, json!(1), "gpu-01's card was patched, not replaced");
    browser
        .assert_clean_console("the patched overview", &[])
        .await;
    browser.close().await;
}

#[tokio::test]
async fn without_a_stream_the_overview_polls() {
    let (site, org, browser) = overview_of_a_fleet(false, "poll-farm").await;
    browser.find("li[data-machine='gpu-01']").await;
    // The next re-read (every 10 s) brings it.
    a_new_machine_appears(&browser, &site, org, "gpu-06").await;
    assert!(browser.all("[data-live][data-streaming]").await.is_empty());
    browser
        .assert_clean_console("the polling overview", &["503"])
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_open_machine_page_follows_the_stream() {
    let (site, org, browser) = overview_of_a_fleet(true, "machine-farm").await;
    browser
        .goto(&site.url("/orgs/machine-farm/machines/gpu-01"))
        .await;
    browser.find("[data-live='machine'][data-streaming]").await;
    assert!(browser
        .text("tr[data-worker='w-idle']")
        .await
        .contains("idle"));
    browser
        .client
        .execute("document.querySelector('li.gpu').fleetmonKept = 1;", vec![])
        .await
        .unwrap();
    browser.mark_page().await;

    // A heartbeat with new GPU figures is patched into the same GPU items.
    let gpu = |index: u32, utilization: u32, used_mb: u32, temperature: u32| {
        json!({"index": index, "name": "NVIDIA A100 80GB", "memory_total_mb": 81920,
               "memory_used_mb": used_mb, "utilization_pct": utilization, "temperature_c": temperature})
    };
    site.ingest(
        org,
        &[event(
            "machine.heartbeat",
            json!({"machine_id": "gpu-01", "status": "ready",
                   "gpus": [gpu(0, 42, 20480, 71), gpu(1, 99, 79872, 83)]}),
        )],
    )
    .await;
    let ingested = tokio::time::Instant::now();
    shows_within_bound(
        &browser,
        ingested,
        "GPU 0 at 42% and 20.0 GB, 71 °C",
        &format!(
            "{0}.includes('42%') && {0}.includes('20.0 / 80.0 GB') && {0}.includes('71 °C') \
             && document.querySelector('li.gpu meter').value === 42",
            text_of("li.gpu")
        ),
    )
    .await;
    let kept = browser
        .client
        .execute(
            "return document.querySelector('li.gpu').fleetmonKept;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, json!(1), "the GPU was patched, not replaced");

    // A worker of this machine taking a job: its row says so.
    site.ingest(org, &changes()[..3]).await;
    let ingested = tokio::time::Instant::now();
    let row = text_of("tr[data-worker='w-idle']");
    shows_within_bound(
        &browser,
        ingested,
        "w-idle busy on j-77",
        &format!("{row}.includes('busy') && {row}.includes('j-77')"),
    )
    .await;
    browser.assert_same_page().await;
    browser
        .assert_clean_console("the live machine page", &[])
        .await;
    browser.screenshot("machine-detail-live").await;
    browser.close().await;
}

#[tokio::test]
async fn a_machine_removed_while_its_page_is_open_says_so() {
    let (site, org, browser) = overview_of_a_fleet(true, "removal-farm").await;
    let admin = email("admin");
    let admin_id = account(&site.tenant(), &admin).await;
    fleetmon_server::db::sql::query(
        "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, 'admin')",
    )
    .bind(org)
    .bind(admin_id)
    .execute(&site.db.pool)
    .await
    .unwrap();
    browser
        .goto(&site.url("/orgs/removal-farm/machines/gpu-03"))
        .await;
    browser.find("[data-live='machine'][data-streaming]").await;
    browser.mark_page().await;

    // An admin removes the offline machine elsewhere (through the API).
    let mut api = crate::signin::Browser::new(&site.base);
    assert_eq!(api.sign_in(&admin, PASSWORD).await.status(), 200);
    let removed = api
        .send(
            reqwest::Method::DELETE,
            "/api/v1/orgs/removal-farm/machines/gpu-03",
            None,
            true,
        )
        .await;
    assert!(removed.status().is_success(), "{}", removed.status());
    let answered = tokio::time::Instant::now();
    shows_within_bound(
        &browser,
        answered,
        "that the machine was removed",
        &format!(
            "{}.includes('This machine has been removed from the fleet')",
            text_of("[data-live] .notice.removed")
        ),
    )
    .await;
    browser.assert_same_page().await;
    browser
        .assert_clean_console("a machine removed while its page is open", &[])
        .await;
    browser.screenshot("machine-detail-removed").await;
    browser.close().await;
}
