//! The dashboard's charts in a real headless Chromium (see `browser`) and over plain HTTP, against
//! hand-computed values: jobs and GPU samples with known times, sent through the real ingest
//! endpoint, read back from each chart's hover text (`<title>` per bucket): the metrics page for
//! 24 hours and for the last hour (chosen in its range form), the overview's throughput chart,
//! a machine page's per-GPU history over two ranges; a custom range, filters and invalid ranges
//! without JavaScript; another org's metrics as the plain 404. Every page's screenshot goes to
//! `target/screenshots/`; every page is checked for console errors and CSP violations.

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use fleetmon_server::orgs::Role;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::dashboard::{email, open_signed_in, Site};
use crate::dashboard_pages::{assert_shows, event_at};
use crate::ingest_http::event;
use crate::signin::{account, PASSWORD};

/// A job of `job_type` on gpu-01 submitted at `t`, queued and started `queued` and `started`
/// seconds later, ending at `end` s: completed with `duration_ms`, or (`None`) failed, whose
/// duration is from its start.
fn job(
    id: &str,
    job_type: &str,
    t: DateTime<Utc>,
    queued: Option<i64>,
    (started, end): (i64, i64),
    duration_ms: Option<i64>,
) -> Vec<Value> {
    let s = Duration::seconds;
    let run = json!({"job_id": id, "machine_id": "gpu-01", "worker_id": "w-1"});
    let mut events = vec![event_at(
        "job.submitted",
        t,
        json!({"job_id": id, "job_type": job_type, "name": format!("{job_type} {id}")}),
    )];
    if let Some(queued) = queued {
        events.push(event_at("job.queued", t + s(queued), json!({"job_id": id})));
    }
    events.push(event_at("job.started", t + s(started), run.clone()));
    let mut end_event = run;
    match duration_ms {
        Some(ms) => {
            end_event["duration_ms"] = json!(ms);
            events.push(event_at("job.completed", t + s(end), end_event));
        }
        None => {
            end_event["error"] =
                json!({"type": "OOMError", "reason": "oom", "message": "CUDA out of memory"});
            events.push(event_at("job.failed", t + s(end), end_event));
        }
    }
    events
}

/// gpu-01 (two A100s) and, at `t1` (a quarter hour, 15–30 minutes ago) and `t2` = `t1` − 5 h
/// (times in seconds after them; waits and durations in ms):
///
/// | job | type   | at | queued | started | end                      | wait     |
/// |-----|--------|----|--------|---------|--------------------------|----------|
/// | r1  | render | t1 | +1 s   | +11 s   | completed +20 s, 1 000 ms | 10 000   |
/// | r2  | render | t1+2 s | +3 s | +23 s | completed +30 s, 3 000 ms | 20 000   |
/// | r3  | train  | t1+4 s | +5 s | +35 s | failed +40 s (5 000 ms)   | 30 000   |
/// | o1–o3 | render | t2 | —    | +10 s   | completed +60 s, 60 000 ms | 10 000  |
/// | o4  | train  | t2 | —      | +10 s   | failed +70 s (60 000 ms)  | 10 000   |
///
/// So t1's bucket (of a minute or of 15): 3 submitted, 2 completed, 1 failed (33.3 %);
/// durations 1 000, 3 000, 5 000 → p50 3 000, p95 4 800, p99 4 960; waits p50 20 000, p95
/// 29 000. t2's 15-minute bucket: 4, 3, 1 (25 %), durations and p's 60 000, waits 10 000.
///
/// GPU samples: GPU 0 utilisation 40 at t1 and 60 at t1+30 s (mean 50), GPU 1 90 at t1+10 s;
/// memory 61 440 and 20 480 MB; temperature 64 and 80 °C; and GPU 0 at 10 % at t2.
fn seeded(t1: DateTime<Utc>) -> Vec<Value> {
    let t2 = t1 - Duration::hours(5);
    let s = Duration::seconds;
    let a100 = |index: u32| {
        json!({"index": index, "name": "NVIDIA A100 80GB", "memory_total_mb": 81920,
               "memory_used_mb": 20480, "utilization_pct": 50, "temperature_c": 70})
    };
    let mut events = vec![event(
        "machine.heartbeat",
        json!({"machine_id": "gpu-01", "status": "ready", "host": {"hostname": "gpu-01.lan"},
               "gpus": [a100(0), a100(1)]}),
    )];
    events.extend(job("r1", "render", t1, Some(1), (11, 20), Some(1_000)));
    events.extend(job(
        "r2",
        "render",
        t1 + s(2),
        Some(1),
        (21, 28),
        Some(3_000),
    ));
    events.extend(job("r3", "train", t1 + s(4), Some(1), (31, 36), None));
    for id in ["o1", "o2", "o3"] {
        events.extend(job(id, "render", t2, None, (10, 60), Some(60_000)));
    }
    events.extend(job("o4", "train", t2, None, (10, 70), None));
    let sample = |name: &str, gpu: &str, at: DateTime<Utc>, value: f64| json!({"name": name, "value": value, "labels": {"gpu": gpu}, "at": at.to_rfc3339()});
    events.push(event_at(
        "metrics",
        t1,
        json!({"machine_id": "gpu-01", "samples": [
            sample("gpu_utilization_pct", "0", t1, 40.0),
            sample("gpu_utilization_pct", "0", t1 + s(30), 60.0),
            sample("gpu_utilization_pct", "1", t1 + s(10), 90.0),
            sample("gpu_memory_used_mb", "0", t1, 61_440.0),
            sample("gpu_memory_used_mb", "1", t1 + s(10), 20_480.0),
            sample("gpu_temperature_c", "0", t1, 64.0),
            sample("gpu_temperature_c", "1", t1 + s(10), 80.0),
            sample("gpu_utilization_pct", "0", t2, 10.0),
        ]}),
    ));
    events
}

/// A site with org `lab` (the viewer `user`) holding [`seeded`] data, and its `t1`.
async fn seeded_site() -> (Site, String, DateTime<Utc>) {
    let site = Site::start().await;
    let user = email("metrics");
    let user_id = account(&site.tenant(), &user).await;
    let org = site.org("lab", "Lab", &[(user_id, Role::Viewer)]).await;
    site.wide_thresholds(org).await;
    let t1 = Utc::now().duration_trunc(Duration::minutes(15)).unwrap() - Duration::minutes(15);
    site.ingest(org, &seeded(t1)).await;
    (site, user, t1)
}

fn start(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What a chart's bucket starting `at` says on hover: its time, then each series' value.
fn hover_text(at: DateTime<Utc>, values: &str) -> String {
    format!("{} · {values}", at.format("%Y-%m-%d %H:%M UTC"))
}

/// The hover text of chart `chart`'s bucket starting `at` on the open page, if it has one.
async fn hover(browser: &Browser, chart: &str, at: DateTime<Utc>) -> Option<String> {
    let script = "const title = document.querySelector(\
        `[data-chart='${arguments[0]}'] rect[data-start='${arguments[1]}'] title`);\
        return title ? title.textContent : null;";
    let value = browser
        .client
        .execute(script, vec![json!(chart), json!(start(at))])
        .await
        .expect("read a chart");
    value.as_str().map(str::to_string)
}

async fn assert_hover(browser: &Browser, chart: &str, at: DateTime<Utc>, values: &str) {
    assert_eq!(
        hover(browser, chart, at).await,
        Some(hover_text(at, values)),
        "{chart} at {at} on {}",
        browser.path().await
    );
}

/// The same, read from a page's HTML as served.
fn hover_in(html: &str, chart: &str, at: DateTime<Utc>) -> Option<String> {
    let from = html.find(&format!("data-chart=\"{chart}\""))?;
    let figure = &html[from..from + html[from..].find("</figure>")?];
    let marker = format!("data-start=\"{}\"><title>", start(at));
    let text = &figure[figure.find(&marker)? + marker.len()..];
    Some(text[..text.find("</title>")?].to_string())
}

#[tokio::test]
async fn the_metrics_page_charts_seeded_jobs_and_gpus_and_its_range_changes_the_data() {
    let (site, user, t1) = seeded_site().await;
    let t2 = t1 - Duration::hours(5);
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/orgs/lab").await;

    // The overview's throughput chart: the last 24 hours in 15-minute buckets.
    let chart = "overview-throughput";
    assert_hover(
        &browser,
        chart,
        t1,
        "Submitted: 3 · Completed: 2 · Failed: 1",
    )
    .await;
    assert_hover(
        &browser,
        chart,
        t2,
        "Submitted: 4 · Completed: 3 · Failed: 1",
    )
    .await;
    browser.assert_clean_console("the overview", &[]).await;
    browser.scroll_to(".overview-chart").await;
    browser.screenshot("overview-throughput").await;

    // The metrics page, from the navigation: 24 hours unless told otherwise.
    browser.click("nav a[href='/orgs/lab/metrics']").await;
    browser.wait_for_path("/orgs/lab/metrics").await;
    for (total, value) in [
        ("submitted", "7"),
        ("completed", "5"),
        ("failed", "2"),
        ("failure-rate", "28.6%"),
    ] {
        assert_eq!(
            browser.text(&format!("[data-total='{total}']")).await,
            value,
            "{total}"
        );
    }
    let range = browser.find("#m-range").await.prop("value").await.unwrap();
    assert_eq!(range.as_deref(), Some("24h"));
    for (chart, at, values) in [
        ("throughput", t1, "Submitted: 3 · Completed: 2 · Failed: 1"),
        ("throughput", t2, "Submitted: 4 · Completed: 3 · Failed: 1"),
        ("failure-rate", t1, "Failure rate: 33.3%"),
        ("failure-rate", t2, "Failure rate: 25.0%"),
        ("duration", t1, "p50: 3.0 s · p95: 4.8 s · p99: 5.0 s"),
        (
            "duration",
            t2,
            "p50: 1 min 0 s · p95: 1 min 0 s · p99: 1 min 0 s",
        ),
        ("queue-wait", t1, "p50: 20.0 s · p95: 29.0 s"),
        ("queue-wait", t2, "p50: 10.0 s · p95: 10.0 s"),
        (
            "fleet-gpu_utilization_pct",
            t1,
            "Mean of GPUs: 70.0% · Busiest GPU: 90.0%",
        ),
        (
            "fleet-gpu_utilization_pct",
            t2,
            "Mean of GPUs: 10.0% · Busiest GPU: 10.0%",
        ),
        (
            "fleet-gpu_memory_used_mb",
            t1,
            "Mean of GPUs: 40.0 GB · Fullest GPU: 60.0 GB",
        ),
        (
            "fleet-gpu_temperature_c",
            t1,
            "Mean of GPUs: 72.0 °C · Hottest GPU: 80.0 °C",
        ),
    ] {
        assert_hover(&browser, chart, at, values).await;
    }
    // Read aloud: the chart's description sums it up.
    let desc = browser
        .client
        .execute(
            "return document.querySelector(\"[data-chart='throughput'] svg[role='img'] desc\").textContent;",
            vec![],
        )
        .await
        .unwrap();
    let desc = desc.as_str().unwrap_or_default();
    assert_shows(
        desc,
        &[
            "buckets of 15 min",
            "Submitted: 7 in all, at most 4 in a bucket",
            "Failed: 2 in all",
        ],
    );
    browser.assert_clean_console("the metrics page", &[]).await;
    browser.screenshot("metrics-24h").await;
    browser.scroll_to("#gpus-title").await;
    browser.screenshot("metrics-24h-gpus").await;

    // The last hour, chosen in the range form: t2 is out of it, and buckets are minutes.
    browser
        .find("#m-range option[value='1h']")
        .await
        .click()
        .await
        .unwrap();
    browser.click(".filter-bar button[type=submit]").await;
    browser
        .wait_for_path("/orgs/lab/metrics?range=1h&since=&until=&job_type=&machine=&worker=")
        .await;
    for (total, value) in [("submitted", "3"), ("completed", "2"), ("failed", "1")] {
        assert_eq!(
            browser.text(&format!("[data-total='{total}']")).await,
            value,
            "{total} in the last hour"
        );
    }
    assert_hover(
        &browser,
        "throughput",
        t1,
        "Submitted: 3 · Completed: 2 · Failed: 1",
    )
    .await;
    // A bucket without jobs has nothing to say on hover.
    let next_minute = t1 + Duration::minutes(1);
    for chart in ["throughput", "duration"] {
        assert_eq!(hover(&browser, chart, next_minute).await, None, "{chart}");
    }
    assert_hover(
        &browser,
        "fleet-gpu_utilization_pct",
        t1,
        "Mean of GPUs: 70.0% · Busiest GPU: 90.0%",
    )
    .await;
    for chart in ["throughput", "fleet-gpu_utilization_pct"] {
        assert_eq!(hover(&browser, chart, t2).await, None, "{chart}: t2 is out");
    }
    let range = browser.find("#m-range").await.prop("value").await.unwrap();
    assert_eq!(range.as_deref(), Some("1h"), "the form shows the view");
    browser
        .assert_clean_console("the last hour's metrics", &[])
        .await;
    browser.screenshot("metrics-1h").await;

    // Dark mode: the charts take the dark palette (the first series' colour in each).
    let stroke = async || {
        let value = browser
            .client
            .execute(
                "return getComputedStyle(document.querySelector(\"[data-chart='failure-rate'] path.line\")).stroke;",
                vec![],
            )
            .await
            .unwrap();
        value.as_str().unwrap_or_default().to_string()
    };
    assert_eq!(stroke().await, "rgb(37, 99, 235)");
    browser.prefer_dark().await;
    assert_eq!(stroke().await, "rgb(110, 168, 254)");
    browser
        .assert_clean_console("the metrics page in dark mode", &[])
        .await;
    browser.screenshot("metrics-1h-dark").await;
    browser.close().await;
}

#[tokio::test]
async fn a_machine_page_charts_each_gpu_over_the_chosen_range() {
    let (site, user, t1) = seeded_site().await;
    let t2 = t1 - Duration::hours(5);
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/orgs/lab/machines/gpu-01").await;

    // 24 hours by default, in 15-minute buckets: a line per GPU.
    let current = browser
        .text("#gpu-history nav a[aria-current='page']")
        .await;
    assert_eq!(current, "Last 24 hours");
    let util = "machine-gpu_utilization_pct";
    assert_hover(&browser, util, t1, "GPU 0: 50.0% · GPU 1: 90.0%").await;
    assert_hover(&browser, util, t2, "GPU 0: 10.0% · GPU 1: —").await;
    assert_hover(
        &browser,
        "machine-gpu_memory_used_mb",
        t1,
        "GPU 0: 60.0 GB · GPU 1: 20.0 GB",
    )
    .await;
    assert_hover(
        &browser,
        "machine-gpu_temperature_c",
        t1,
        "GPU 0: 64.0 °C · GPU 1: 80.0 °C",
    )
    .await;
    let legend = browser
        .text(&format!("[data-chart='{util}'] .legend"))
        .await;
    assert_shows(&legend, &["GPU 0", "GPU 1"]);
    browser.assert_clean_console("the machine page", &[]).await;
    browser.scroll_to("#gpu-history").await;
    browser.screenshot("machine-gpu-history-24h").await;

    // The last hour: minute buckets, and t2 is out of it.
    browser
        .click("#gpu-history nav a[href='/orgs/lab/machines/gpu-01?range=1h#gpu-history']")
        .await;
    browser
        .wait_for_path("/orgs/lab/machines/gpu-01?range=1h")
        .await;
    assert_hover(&browser, util, t1, "GPU 0: 50.0% · GPU 1: 90.0%").await;
    assert_eq!(hover(&browser, util, t1 + Duration::minutes(1)).await, None);
    assert_eq!(hover(&browser, util, t2).await, None);
    browser
        .assert_clean_console("the machine page's last hour", &[])
        .await;
    browser.scroll_to("#gpu-history").await;
    browser.screenshot("machine-gpu-history-1h").await;
    browser.close().await;
}

#[tokio::test]
async fn the_metrics_page_reads_without_javascript_and_says_what_is_wrong_with_a_range() {
    let (site, user, t1) = seeded_site().await;
    let t2 = t1 - Duration::hours(5);
    let other = account(&site.tenant(), &email("other")).await;
    site.org("theirs", "Theirs", &[(other, Role::Owner)]).await;
    let mut api = crate::signin::Browser::new(&site.base);
    assert_eq!(api.sign_in(&user, PASSWORD).await.status(), 200);
    let mut get = async |path: &str, status: u16| {
        let response = api.send(reqwest::Method::GET, path, None, false).await;
        assert_eq!(response.status(), status, "{path}");
        assert!(response.headers().contains_key("content-security-policy"));
        response.text().await.unwrap()
    };

    // The charts are in the HTML as served: no script needed to read them.
    let day = get("/orgs/lab/metrics?range=24h", 200).await;
    assert_eq!(
        hover_in(&day, "throughput", t2),
        Some(hover_text(t2, "Submitted: 4 · Completed: 3 · Failed: 1"))
    );
    assert!(day.contains("<strong data-total=\"submitted\">7</strong>"));
    assert!(day.contains("role=\"img\""));
    let hour = get("/orgs/lab/metrics?range=1h", 200).await;
    assert_eq!(
        hover_in(&hour, "throughput", t1),
        Some(hover_text(t1, "Submitted: 3 · Completed: 2 · Failed: 1"))
    );
    assert_eq!(hover_in(&hour, "throughput", t2), None);

    // Empty buckets cost no markup: whatever the range, this sparse history is a small page.
    for range in ["1h", "24h", "7d", "30d"] {
        let page = get(&format!("/orgs/lab/metrics?range={range}"), 200).await;
        println!("metrics page, {range}: {} bytes", page.len());
        assert!(page.len() < 40_000, "{range}: {} bytes", page.len());
    }

    // A custom range around t2 (From and To as the form sends them, in UTC): 31 minutes, so
    // minute buckets — the submissions in t2's minute, the endings in the next.
    let form_time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    let custom = get(
        &format!(
            "/orgs/lab/metrics?range=custom&since={}&until={}",
            form_time(t2 - Duration::minutes(1)),
            form_time(t2 + Duration::minutes(30))
        ),
        200,
    )
    .await;
    assert!(custom.contains("<strong data-total=\"submitted\">4</strong>"));
    assert_eq!(
        hover_in(&custom, "throughput", t2),
        Some(hover_text(t2, "Submitted: 4 · Completed: 0 · Failed: 0"))
    );
    assert_eq!(
        hover_in(&custom, "throughput", t2 + Duration::minutes(1)),
        Some(hover_text(
            t2 + Duration::minutes(1),
            "Submitted: 0 · Completed: 3 · Failed: 1"
        ))
    );
    assert!(custom.contains("<option value=\"custom\" selected>"));

    // Filters are the API's: one job type; a machine with nothing to show says so.
    let train = get("/orgs/lab/metrics?range=1h&job_type=train", 200).await;
    assert_eq!(
        hover_in(&train, "throughput", t1),
        Some(hover_text(t1, "Submitted: 1 · Completed: 0 · Failed: 1"))
    );
    assert!(train.contains("GPU charts follow the machine filter only"));
    let elsewhere = get("/orgs/lab/metrics?range=1h&machine=gpu-99", 200).await;
    assert!(elsewhere.contains("No job was submitted or finished in this range."));
    assert!(elsewhere.contains("data-chart=\"fleet-gpu_utilization_pct\" data-empty"));

    // The machine page's GPU history, too.
    let machine = get("/orgs/lab/machines/gpu-01?range=1h", 200).await;
    assert_eq!(
        hover_in(&machine, "machine-gpu_utilization_pct", t1),
        Some(hover_text(t1, "GPU 0: 50.0% · GPU 1: 90.0%"))
    );

    // Ranges that cannot be shown: said on the page, with the form.
    for (path, message) in [
        ("/orgs/lab/metrics?range=soon", "range is a duration"),
        (
            "/orgs/lab/metrics?range=24h&since=2026-12-01T00:00",
            "not both",
        ),
        ("/orgs/lab/metrics?range=custom", "needs a From or a To"),
        (
            "/orgs/lab/metrics?range=custom&since=2026-12-02T00:00&until=2026-12-01T00:00",
            "must be before",
        ),
    ] {
        let page = get(path, 400).await;
        assert_shows(&page, &["This range cannot be shown: ", message]);
        assert!(page.contains("name=\"range\""), "the form stays: {path}");
    }
    let bad_machine_range = get("/orgs/lab/machines/gpu-01?range=soon", 400).await;
    assert!(bad_machine_range.contains("range is a duration"));

    // Another org's metrics, with or without a bad range: the same 404 as a missing machine.
    let missing = get("/orgs/lab/machines/no-such-machine", 404).await;
    for path in ["/orgs/theirs/metrics", "/orgs/theirs/metrics?range=soon"] {
        assert_eq!(get(path, 404).await, missing, "{path}");
    }
}
