//! The dashboard's jobs, job detail and machine detail pages in a real headless Chromium (see
//! `browser`), with data ingested through the real ingest endpoint: filtering through the filter
//! bar, cursor pages, a shared URL reopened in a fresh session, invalid filters said on the page,
//! a retried job's attempts, timeline and error chain, payloads hidden from viewers where the org
//! says so, another org's job as the plain 404, and a machine's page for viewers and admins
//! (removing an offline machine with its audit entry; a viewer's removal is a 404). Every page's
//! screenshot goes to `target/screenshots/`; every page is checked for console errors and CSP
//! violations.

use chrono::{DateTime, Duration, Utc};
use fleetmon_server::db::sql::{query, query_as, query_scalar};
use fleetmon_server::db::TenantContext;
use fleetmon_server::orgs::Role;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::dashboard::{email, fleet_events, open_signed_in, post_form, seconds_ago, Site};
use crate::dashboard_live::shows_within_bound;
use crate::ingest_http::event;
use crate::signin::{account, PASSWORD};

/// Fails unless `text` contains each of `wanted`.
pub fn assert_shows(text: &str, wanted: &[&str]) {
    for shown in wanted {
        assert!(text.contains(shown), "{shown:?} in {text:?}");
    }
}

/// An event of `kind` at `at`.
pub fn event_at(kind: &str, at: DateTime<Utc>, fields: Value) -> Value {
    let mut e = event(kind, fields);
    e["at"] = json!(at.to_rfc3339());
    e
}

/// `data-job` of every row of the jobs table, top to bottom; `None` while the page is being
/// replaced under the reading (a row read went stale).
async fn try_listed(browser: &Browser) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for row in browser.all("tbody tr[data-job]").await {
        ids.push(row.attr("data-job").await.ok()??);
    }
    Some(ids)
}

async fn listed(browser: &Browser) -> Vec<String> {
    try_listed(browser).await.expect("a page that stays put")
}

/// Waits for the jobs page to show exactly `expected`.
async fn wait_for_rows(browser: &Browser, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + crate::browser::WAIT;
    loop {
        let now = try_listed(browser).await.unwrap_or_default();
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} lists {now:?}, not {expected:?}",
            browser.path().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// j-01 … j-12, a second apart (j-12 newest): odd ones `render`, even ones `ocr`; j-03 and j-07
/// failed out of memory on gpu-01, the others completed on gpu-02. And j-old, two days old.
fn job_history(t0: DateTime<Utc>) -> Vec<Value> {
    let mut events = Vec::new();
    for n in 1..=12 {
        let id = format!("j-{n:02}");
        let at = t0 + Duration::seconds(n);
        let kind = if n % 2 == 1 { "render" } else { "ocr" };
        let (machine, worker) = if n == 3 || n == 7 {
            ("gpu-01", "w-1")
        } else {
            ("gpu-02", "w-2")
        };
        let run = json!({"job_id": id, "worker_id": worker, "machine_id": machine});
        events.push(event_at(
            "job.submitted",
            at,
            json!({"job_id": id, "name": format!("{kind} {n}"), "job_type": kind,
                   "customer_id": "acme", "workflow_id": "wf-1"}),
        ));
        events.push(event_at(
            "job.started",
            at + Duration::milliseconds(100),
            run.clone(),
        ));
        let mut end = run;
        if n == 3 || n == 7 {
            end["error"] =
                json!({"type": "OOMError", "reason": "oom", "message": "CUDA out of memory"});
            events.push(event_at(
                "job.failed",
                at + Duration::milliseconds(900),
                end,
            ));
        } else {
            end["duration_ms"] = json!(800);
            events.push(event_at(
                "job.completed",
                at + Duration::milliseconds(900),
                end,
            ));
        }
    }
    events.push(event_at(
        "job.submitted",
        t0 - Duration::days(2),
        json!({"job_id": "j-old", "name": "render old", "job_type": "render"}),
    ));
    events
}

#[tokio::test]
async fn the_jobs_page_filters_pages_and_a_shared_url_reopens_the_same_view() {
    let site = Site::start().await;
    let user = email("jobs");
    let user_id = account(&site.tenant(), &user).await;
    let org = site
        .org("farm", "Render Farm", &[(user_id, Role::Viewer)])
        .await;
    let t0 = Utc::now() - Duration::minutes(10);
    site.ingest(org, &job_history(t0)).await;

    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/orgs/farm").await;
    browser.click("nav a[href='/orgs/farm/jobs']").await;
    browser.wait_for_path("/orgs/farm/jobs").await;
    let all: Vec<String> = (1..=12)
        .rev()
        .map(|n| format!("j-{n:02}"))
        .chain(["j-old".to_string()])
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_for_rows(&browser, &all).await;
    assert!(
        browser.all("a[rel=next]").await.is_empty(),
        "one page holds them all"
    );
    let failed_row = browser.text("tr[data-job='j-07']").await;
    assert_shows(
        &failed_row,
        &[
            "render 7",
            "failed",
            "render",
            "w-1",
            "gpu-01",
            "OOMError: CUDA out of memory",
        ],
    );
    browser.assert_clean_console("the jobs page", &[]).await;
    browser.screenshot("jobs").await;

    // A job submitted while the newest page is open appears on it within the two
    // seconds, without a reload: the page follows the org's stream.
    browser.find("[data-live='jobs'][data-streaming]").await;
    browser.mark_page().await;
    site.ingest(
        org,
        &[event(
            "job.submitted",
            json!({"job_id": "j-new", "name": "upscale new", "job_type": "upscale"}),
        )],
    )
    .await;
    let ingested = tokio::time::Instant::now();
    shows_within_bound(
        &browser,
        ingested,
        "the new job j-new",
        "document.querySelector(\"tr[data-job='j-new']\") !== null",
    )
    .await;
    browser.assert_same_page().await;
    assert_eq!(listed(&browser).await[0], "j-new", "newest first");
    let marked = browser
        .find("tr[data-job='j-new']")
        .await
        .attr("class")
        .await
        .unwrap();
    assert_eq!(marked.as_deref(), Some("fresh"), "the new row stands out");
    browser
        .assert_clean_console("the jobs page's live region", &[])
        .await;

    // The filter bar is a GET form: the filters land in the URL.
    browser
        .find("#f-status option[value='failed']")
        .await
        .click()
        .await
        .unwrap();
    browser.fill("#f-job_type", "render").await;
    browser.click(".filter-bar button[type=submit]").await;
    wait_for_rows(&browser, &["j-07", "j-03"]).await;
    let shared = browser.path().await;
    assert!(
        shared.starts_with("/orgs/farm/jobs?status=failed&job_type=render&"),
        "{shared}"
    );
    let status = browser.find("#f-status").await.prop("value").await.unwrap();
    assert_eq!(status.as_deref(), Some("failed"), "the form shows the view");
    browser.assert_clean_console("the filtered jobs", &[]).await;
    browser.screenshot("jobs-filtered").await;

    // Text search, and a time range relative to now that leaves out the two-day-old job.
    browser
        .goto(&site.url("/orgs/farm/jobs?q=out+of+memory"))
        .await;
    wait_for_rows(&browser, &["j-07", "j-03"]).await;
    browser
        .goto(&site.url("/orgs/farm/jobs?job_type=render&range=24h"))
        .await;
    wait_for_rows(&browser, &["j-11", "j-09", "j-07", "j-05", "j-03", "j-01"]).await;
    browser
        .goto(&site.url(
            "/orgs/farm/jobs?job_type=render&machine=gpu-02&customer=acme&workflow=wf-1&worker=w-2",
        ))
        .await;
    wait_for_rows(&browser, &["j-11", "j-09", "j-05", "j-01"]).await;

    // Cursor pages keep the filters; "Newest" goes back to the first page.
    browser
        .goto(&site.url("/orgs/farm/jobs?job_type=render&limit=3"))
        .await;
    wait_for_rows(&browser, &["j-11", "j-09", "j-07"]).await;
    assert!(browser.all("a[rel=first]").await.is_empty());
    let older = browser
        .find("a[rel=next]")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        older.starts_with("/orgs/farm/jobs?job_type=render&limit=3&cursor="),
        "{older}"
    );
    browser.click("a[rel=next]").await;
    wait_for_rows(&browser, &["j-05", "j-03", "j-01"]).await;
    browser.click("a[rel=next]").await;
    wait_for_rows(&browser, &["j-old"]).await;
    assert!(browser.all("a[rel=next]").await.is_empty(), "the last page");
    browser.assert_clean_console("the jobs pages", &[]).await;
    browser.screenshot("jobs-last-page").await;
    browser.click("a[rel=first]").await;
    browser
        .wait_for_path("/orgs/farm/jobs?job_type=render&limit=3")
        .await;
    wait_for_rows(&browser, &["j-11", "j-09", "j-07"]).await;

    // Invalid values are said on the page, with the form as it was.
    for (path, said) in [
        ("/orgs/farm/jobs?status=lost", "unknown status \"lost\""),
        (
            "/orgs/farm/jobs?since=yesterday",
            "`since` must be an RFC 3339 time",
        ),
        ("/orgs/farm/jobs?range=soon", "The time range is a duration"),
        (
            "/orgs/farm/jobs?cursor=garbage",
            "`cursor` must be a `next_cursor`",
        ),
        ("/orgs/farm/jobs?colour=red", "unknown parameter `colour`"),
    ] {
        browser.goto(&site.url(path)).await;
        let notice = browser.text(".notice.error").await;
        assert!(notice.contains(said), "{path}: {notice}");
        assert_eq!(browser.text("main h1").await, "Jobs");
        assert!(listed(&browser).await.is_empty());
        browser.assert_clean_console(path, &["400"]).await;
    }
    browser.screenshot("jobs-invalid-filter").await;

    // A row opens the job.
    browser.goto(&site.url(&shared)).await;
    browser.click("tr[data-job='j-07'] a").await;
    browser.wait_for_path("/orgs/farm/jobs/j-07").await;
    assert!(browser.text("main h1").await.contains("render 7"));
    browser.close().await;

    // The shared URL in a fresh browser: sign in, and the same view opens.
    let fresh = Browser::laptop().await;
    open_signed_in(&fresh, &site, &user, &shared).await;
    wait_for_rows(&fresh, &["j-07", "j-03"]).await;
    let job_type = fresh.find("#f-job_type").await.prop("value").await.unwrap();
    assert_eq!(job_type.as_deref(), Some("render"));
    fresh.assert_clean_console("the shared view", &[]).await;
    fresh.close().await;
}

/// r1: attempt 1 runs on w1/m1 and fails out of memory (with a cause) and is retried; attempt 2
/// runs on w2/m2 and completes. m2 and w2 are heartbeating now.
fn retried_job(t0: DateTime<Utc>) -> Vec<Value> {
    let t = |ms| t0 + Duration::milliseconds(ms);
    let a1 = json!({"job_id": "r1", "worker_id": "w1", "machine_id": "m1"});
    let a2 = json!({"job_id": "r1", "attempt": 2, "worker_id": "w2", "machine_id": "m2"});
    let mut failed = a1.clone();
    failed["error"] = json!({"type": "OOMError", "reason": "oom", "message": "CUDA out of memory",
                             "cause": {"type": "RuntimeError", "message": "allocator failed"}});
    failed["will_retry"] = json!(true);
    let mut completed = a2.clone();
    completed["result"] = json!({"frames": 10});
    completed["duration_ms"] = json!(6500);
    let mut progress = a2.clone();
    progress["progress"] = json!(40);
    progress["message"] = json!("frame 4 of 10");
    vec![
        event_at(
            "job.submitted",
            t(0),
            json!({"job_id": "r1", "name": "retry me", "job_type": "render", "max_retries": 2,
                   "payload": {"input": "s3://bucket/r1"}}),
        ),
        event_at("job.queued", t(1_000), json!({"job_id": "r1"})),
        event_at("job.assigned", t(2_000), a1.clone()),
        event_at("job.started", t(3_000), a1),
        event_at("job.failed", t(10_000), failed),
        event_at(
            "job.retried",
            t(11_000),
            json!({"job_id": "r1", "attempt": 2}),
        ),
        event_at("job.assigned", t(12_000), a2.clone()),
        event_at("job.started", t(13_000), a2),
        event_at("job.progress", t(16_000), progress),
        event_at("job.completed", t(20_000), completed),
        seconds_ago(
            1,
            event(
                "machine.heartbeat",
                json!({"machine_id": "m2", "status": "ready"}),
            ),
        ),
        seconds_ago(
            1,
            event(
                "worker.heartbeat",
                json!({"worker_id": "w2", "machine_id": "m2", "status": "idle"}),
            ),
        ),
    ]
}

#[tokio::test]
async fn a_retried_job_shows_its_attempts_timeline_and_error_chain() {
    let site = Site::start().await;
    let member = email("member");
    let viewer = email("viewer");
    let member_id = account(&site.tenant(), &member).await;
    let viewer_id = account(&site.tenant(), &viewer).await;
    let org = site
        .org(
            "farm",
            "Farm",
            &[(member_id, Role::Member), (viewer_id, Role::Viewer)],
        )
        .await;
    site.wide_thresholds(org).await;
    site.ingest(org, &retried_job(Utc::now() - Duration::minutes(30)))
        .await;
    // Another org's job, with an id nobody in Farm has.
    let other = site.org("theirs", "Theirs", &[]).await;
    site.ingest(
        other,
        &[event(
            "job.submitted",
            json!({"job_id": "x9", "name": "secret"}),
        )],
    )
    .await;

    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &member, "/orgs/farm/jobs").await;
    browser.click("tr[data-job='r1'] a").await;
    browser.wait_for_path("/orgs/farm/jobs/r1").await;
    let heading = browser.text("main h1").await;
    assert!(
        heading.contains("retry me") && heading.contains("completed"),
        "{heading}"
    );
    let fields = browser.text(".fields").await;
    for shown in ["render", "2 of at most 3", "w2", "m2", "online", "6.5 s"] {
        assert!(fields.contains(shown), "{shown:?} in {fields:?}");
    }
    assert!(
        !fields.contains("frame 4 of 10"),
        "a finished job shows no progress: {fields}"
    );

    // The timeline, grouped per attempt, in the order things happened.
    let kinds = |attempt: &'static str| {
        let browser = &browser;
        async move {
            let mut kinds = Vec::new();
            for e in browser
                .all(&format!(
                    "section.attempt[data-attempt='{attempt}'] li.event"
                ))
                .await
            {
                kinds.push(e.attr("data-kind").await.unwrap().unwrap());
            }
            kinds
        }
    };
    assert_eq!(
        kinds("1").await,
        [
            "job.submitted",
            "job.queued",
            "job.assigned",
            "job.started",
            "job.failed"
        ]
    );
    assert_eq!(
        kinds("2").await,
        [
            "job.retried",
            "job.assigned",
            "job.started",
            "job.progress",
            "job.completed"
        ]
    );
    let first = browser
        .text("section.attempt[data-attempt='1'] header")
        .await;
    assert!(
        first.contains("failed") && first.contains("w1") && first.contains("m1"),
        "{first}"
    );
    let second = browser
        .text("section.attempt[data-attempt='2'] header")
        .await;
    assert!(
        second.contains("completed") && second.contains("w2"),
        "{second}"
    );
    assert!(browser
        .text("section.attempt[data-attempt='2'] li[data-kind='job.progress']")
        .await
        .contains("40% · frame 4 of 10"));

    // The error chain: the failure type and reason, the message and its cause.
    let chain = browser.all(".chain > li").await;
    assert_eq!(chain.len(), 1);
    let link = chain[0].text().await.unwrap();
    assert_shows(
        &link,
        &[
            "Attempt 1",
            "failed",
            "retried",
            "OOMError",
            "oom",
            "CUDA out of memory",
            "RuntimeError: allocator failed",
            "w1",
            "m1",
        ],
    );

    // A member sees the payload and result.
    let payload = browser.text(".split").await;
    assert!(
        payload.contains("s3://bucket/r1") && payload.contains("\"frames\": 10"),
        "{payload}"
    );
    browser.assert_clean_console("the job page", &[]).await;
    browser.screenshot("job-detail").await;

    // The worker's machine.
    browser
        .click(".fields a[href='/orgs/farm/machines/m2']")
        .await;
    browser.wait_for_path("/orgs/farm/machines/m2").await;
    assert_eq!(browser.text("main h1").await, "m2");

    // Another org's job is the same page as any unknown URL.
    browser.goto(&site.url("/orgs/farm/jobs/x9")).await;
    assert_eq!(browser.text("h1").await, "Page not found");
    let foreign = browser.client.source().await.unwrap();
    browser.goto(&site.url("/orgs/farm/no-such-page")).await;
    assert_eq!(browser.text("h1").await, "Page not found");
    assert_eq!(browser.client.source().await.unwrap(), foreign);
    browser.goto(&site.url("/orgs/theirs/jobs/x9")).await;
    assert_eq!(browser.client.source().await.unwrap(), foreign);
    assert!(!foreign.contains("secret"));
    browser
        .assert_clean_console("the job of another org", &["404"])
        .await;
    browser.close().await;

    // Where the org keeps payloads from viewers, the viewer's page has none (not even in the
    // events' data); the member's still does.
    let tenant = site.tenant();
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    query("UPDATE organizations SET settings = settings || '{\"payloads_visible_to_viewers\": false}' WHERE id = $1")
        .bind(org)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &viewer, "/orgs/farm/jobs/r1").await;
    assert!(browser
        .text("#payload + .notice")
        .await
        .contains("keeps payloads and results from viewers"));
    let source = browser.client.source().await.unwrap();
    assert!(
        !source.contains("s3://bucket/r1") && !source.contains("frames"),
        "no payload or result anywhere on the viewer's page"
    );
    assert!(source.contains("CUDA out of memory"), "the rest stays");
    browser
        .assert_clean_console("the viewer's job page", &[])
        .await;
    browser.screenshot("job-detail-viewer").await;
    browser.close().await;
}

/// Lifecycle events of gpu-01 and its worker, and gpu-03's shutdown, for [`fleet_events`].
fn lifecycle_events() -> Vec<Value> {
    vec![
        seconds_ago(
            30,
            event(
                "machine.status",
                json!({"machine_id": "gpu-01", "status": "ready", "message": "drivers loaded"}),
            ),
        ),
        seconds_ago(
            20,
            event(
                "worker.status",
                json!({"worker_id": "w-busy", "machine_id": "gpu-01", "status": "busy"}),
            ),
        ),
        seconds_ago(
            3500,
            event(
                "machine.shutdown",
                json!({"machine_id": "gpu-03", "reason": "maintenance"}),
            ),
        ),
    ]
}

#[tokio::test]
async fn a_machine_page_shows_its_gpus_workers_and_events_and_only_admins_remove_it() {
    let site = Site::start().await;
    let admin = email("admin");
    let viewer = email("viewer");
    let admin_id = account(&site.tenant(), &admin).await;
    let viewer_id = account(&site.tenant(), &viewer).await;
    let org = site
        .org(
            "farm",
            "Farm",
            &[(admin_id, Role::Admin), (viewer_id, Role::Viewer)],
        )
        .await;
    site.wide_thresholds(org).await;
    let mut events = fleet_events();
    events.extend(lifecycle_events());
    site.ingest(org, &events).await;

    // The viewer: from the overview's grid to the machine; no removal anywhere.
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &viewer, "/orgs/farm").await;
    browser
        .click("li[data-machine='gpu-01'] h3 a[href='/orgs/farm/machines/gpu-01']")
        .await;
    browser.wait_for_path("/orgs/farm/machines/gpu-01").await;
    assert_eq!(browser.text("main h1").await, "gpu-01.lan");
    let host = browser.text(".fields").await;
    assert_shows(
        &host,
        &[
            "online",
            "ready",
            "Ubuntu 24.04",
            "64 cores",
            "512 GB",
            "10.0.0.7",
        ],
    );
    let gpus = browser.text(".gpu-inventory").await;
    assert_shows(
        &gpus,
        &[
            "GPU 0 · NVIDIA A100 80GB",
            "87%",
            "60.0 / 80.0 GB",
            "GPU 1 · NVIDIA A100 80GB",
            "13%",
            "64 °C",
        ],
    );
    let busy = browser.text("tr[data-worker='w-busy']").await;
    for shown in ["busy", "j-42", "comfyui: active", "1.4.2"] {
        assert!(busy.contains(shown), "{shown:?} in {busy:?}");
    }
    assert!(browser
        .text("tr[data-worker='w-idle']")
        .await
        .contains("idle"));
    let events = browser.text("ol.events").await;
    assert!(
        events.contains("machine.status")
            && events.contains("drivers loaded")
            && events.contains("worker.status")
            && events.contains("w-busy"),
        "{events}"
    );
    assert!(
        !events.contains("heartbeat"),
        "heartbeats are not lifecycle events"
    );
    assert!(!browser
        .all("a[href='/orgs/farm/jobs/j-42']")
        .await
        .is_empty());
    assert!(browser.all(".danger").await.is_empty());
    browser.assert_clean_console("the machine page", &[]).await;
    browser.screenshot("machine-detail").await;

    browser.goto(&site.url("/orgs/farm/machines/gpu-03")).await;
    assert!(browser.text("ol.events").await.contains("machine.shutdown"));
    assert!(browser.all(".danger").await.is_empty());
    assert!(browser.all("form[action$='/remove']").await.is_empty());
    browser
        .goto(&site.url("/orgs/farm/machines/no-such-machine"))
        .await;
    assert_eq!(browser.text("h1").await, "Page not found");
    browser
        .assert_clean_console("the viewer's machine pages", &["404"])
        .await;
    browser.close().await;

    // The viewer's removal, sent as the form would be: a 404, and the machine stays.
    let mut api = crate::signin::Browser::new(&site.base);
    assert_eq!(api.sign_in(&viewer, PASSWORD).await.status(), 200);
    let csrf = api.cookies["fm_csrf"].clone();
    let refused = post_form(
        &mut api,
        "/orgs/farm/machines/gpu-03/remove",
        Some(&site.base),
        &[("csrf", csrf.as_str()), ("confirm", "yes")],
    )
    .await;
    assert_eq!(refused.status(), 404);
    assert!(refused.text().await.unwrap().contains("Page not found"));

    // The admin: no removal of an online machine; the offline one goes, with its audit entry.
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/farm/machines/gpu-01").await;
    assert!(browser
        .text(".danger")
        .await
        .contains("Only an offline machine can be removed; this one is online."));
    assert!(browser.all(".danger form").await.is_empty());
    browser.click("nav a[href='/orgs/farm/machines']").await;
    browser.wait_for_path("/orgs/farm/machines").await;
    browser
        .click("tr[data-machine='gpu-03'] a[href='/orgs/farm/machines/gpu-03']")
        .await;
    browser.wait_for_path("/orgs/farm/machines/gpu-03").await;
    browser.find(".danger form").await;
    browser
        .assert_clean_console("the admin's machine page", &[])
        .await;
    browser.screenshot("machine-detail-admin").await;
    browser.click("#remove-confirm").await;
    browser.click(".danger button[type=submit]").await;
    browser
        .wait_for_path("/orgs/farm/machines?removed=gpu-03")
        .await;
    assert!(browser
        .text(".notice")
        .await
        .contains("Machine gpu-03 was removed."));
    let mut ids = Vec::new();
    for row in browser.all("tbody tr").await {
        ids.push(row.attr("data-machine").await.unwrap().unwrap());
    }
    assert_eq!(ids, ["gpu-01", "gpu-02"]);
    browser.assert_clean_console("the removal", &[]).await;
    browser.screenshot("machines-after-removal").await;
    browser.close().await;

    let tenant = site.tenant();
    let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
    let (actor, details): (String, Value) = query_as(
        "SELECT actor, details FROM audit_log WHERE org_id = $1 AND action = 'machine.removed' AND target = 'machine:gpu-03'",
    )
    .bind(org)
    .fetch_one(tx.conn())
    .await
    .unwrap();
    let workers: i64 =
        query_scalar("SELECT count(*) FROM workers WHERE org_id = $1 AND id = 'w-gone'")
            .bind(org)
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(actor, format!("user:{admin_id}"));
    assert_eq!(details, json!({"workers": ["w-gone"]}));
    assert_eq!(workers, 0);
}

#[tokio::test]
async fn the_overview_counts_the_last_days_jobs_and_lists_its_failures() {
    let site = Site::start().await;
    let user = email("ops");
    let user_id = account(&site.tenant(), &user).await;
    let org = site.org("farm", "Farm", &[(user_id, Role::Viewer)]).await;
    site.wide_thresholds(org).await;
    let mut events = fleet_events();
    events.extend(job_history(Utc::now() - Duration::minutes(10)));
    site.ingest(org, &events).await;

    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/orgs/farm").await;
    let stat = |name: &'static str| {
        let browser = &browser;
        async move {
            browser
                .text(&format!("li[data-stat='{name}'] strong"))
                .await
        }
    };
    // j-old was submitted and never ran (pending, whenever created); 10 of the window's 12 ended
    // jobs completed.
    assert_eq!(stat("active").await, "0");
    assert_eq!(stat("pending").await, "1");
    assert_eq!(stat("completed").await, "10");
    assert_eq!(stat("failed").await, "2");
    assert_eq!(stat("success-rate").await, "83.3%");
    let mut failures = Vec::new();
    for item in browser.all(".recent-failures li[data-job]").await {
        failures.push(item.attr("data-job").await.unwrap().unwrap());
    }
    assert_eq!(failures, ["j-07", "j-03"]);
    let latest = browser.text(".recent-failures li[data-job='j-07']").await;
    assert!(
        latest.contains("OOMError: CUDA out of memory") && latest.contains("gpu-01"),
        "{latest}"
    );
    browser
        .assert_clean_console("the overview's stat cards", &[])
        .await;
    browser.screenshot("overview-stats").await;

    browser.click("li[data-stat='failed'] a").await;
    browser
        .wait_for_path("/orgs/farm/jobs?status=failed%2Ctimeout&range=24h")
        .await;
    wait_for_rows(&browser, &["j-07", "j-03"]).await;
    browser
        .assert_clean_console("the failures in the jobs list", &[])
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_bad_filter_is_a_400_page_in_ones_own_org_and_the_404_in_anothers() {
    let site = Site::start().await;
    let user = email("filters");
    let user_id = account(&site.tenant(), &user).await;
    let other = account(&site.tenant(), &email("other")).await;
    site.org("mine", "Mine", &[(user_id, Role::Viewer)]).await;
    site.org("theirs", "Theirs", &[(other, Role::Owner)]).await;
    let mut api = crate::signin::Browser::new(&site.base);
    assert_eq!(api.sign_in(&user, PASSWORD).await.status(), 200);

    let bad = api
        .send(
            reqwest::Method::GET,
            "/orgs/mine/jobs?status=lost",
            None,
            false,
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.headers().contains_key("content-security-policy"));
    let text = bad.text().await.unwrap();
    assert!(
        text.contains("This filter cannot be used: unknown status"),
        "{text}"
    );
    assert!(text.contains("name=\"status\""), "the filter bar stays");

    // Access is checked before the filter: another org's jobs page is the 404 whatever the
    // filter, the same bytes as a missing job or page.
    let mut bodies = Vec::new();
    for path in [
        "/orgs/theirs/jobs?status=lost",
        "/orgs/theirs/jobs",
        "/orgs/mine/jobs/no-such-job",
        "/orgs/mine/machines/no-such-machine",
    ] {
        let response = api.send(reqwest::Method::GET, path, None, false).await;
        assert_eq!(response.status(), 404, "{path}");
        bodies.push(response.text().await.unwrap());
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    assert!(bodies[0].contains("Page not found"));
}
