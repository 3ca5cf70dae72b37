//! The dashboard in a real headless Chromium (see `browser`): signing in and out, the org picker
//! and switcher, the first-org empty state, the overview of a fleet ingested through the real
//! ingest endpoint, what viewers see, and no console error or CSP violation on any page. Every
//! page's screenshot goes to `target/screenshots/`. Over plain HTTP: the security headers, the
//! cached assets, the first load's size, and the forms that work without JavaScript.

use std::sync::Arc;

use chrono::{Duration, Utc};
use fleetmon_server::auth::settings::AuthSettings;
use fleetmon_server::auth::tokens::{self, TokenKind};
use fleetmon_server::db::sql::query;
use fleetmon_server::db::{TenantContext, TenantDb};
use fleetmon_server::http::{AppState, LiveStreams};
use fleetmon_server::live::{listener, Hub};
use fleetmon_server::orgs::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::browser::Browser;
use crate::harness::{self, TestDb};
use crate::ingest_http::event;
use crate::signin::{account, PASSWORD};

/// A server whose public URL is its own address, as a browser's `Origin` must match it.
pub struct Site {
    pub base: String,
    pub db: TestDb,
}

/// A loopback port bound for a [`Site`] before it starts, so that its URL can be given to an
/// identity provider (as a redirect URI) first.
pub struct Reserved {
    socket: tokio::net::TcpListener,
    pub base: String,
}

impl Reserved {
    pub async fn new() -> Self {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", socket.local_addr().unwrap());
        Self { socket, base }
    }
}

impl Site {
    /// A site with live streams, fed by a listener on its database, as `fleetmon serve` runs.
    pub async fn start() -> Self {
        Self::serving(true).await
    }

    /// A site that serves no live streams (they answer 503), for the pages' polling fallback.
    pub async fn without_streams() -> Self {
        Self::serving(false).await
    }

    async fn serving(streams: bool) -> Self {
        let reserved = Reserved::new().await;
        let settings = fleetmon_server::auth::settings::AuthSettings::local_only(&reserved.base);
        Self::open(reserved, settings, streams).await
    }

    /// A site at `reserved` signing in with `settings` (their public URL must be its base).
    pub async fn open(reserved: Reserved, settings: AuthSettings, streams: bool) -> Self {
        let Reserved { socket, base } = reserved;
        assert_eq!(
            settings.public_url, base,
            "the site's public URL is its own"
        );
        let db = TestDb::new().await;
        let tenant = db.tenant();
        let auth = fleetmon_server::auth::Auth::new(settings, &tenant).unwrap();
        let mut state = AppState::new(tenant, Default::default(), auth);
        if streams {
            let hub = Arc::new(Hub::default());
            let options =
                listener::listen_options(None, &harness::cluster().owner_options(&db.name))
                    .unwrap();
            tokio::spawn(listener::run(options, hub.clone()));
            assert!(
                hub.wait_listening(std::time::Duration::from_secs(30)).await,
                "the listener listens"
            );
            state = state.with_live(LiveStreams::new(hub));
        }
        harness::serve_state(socket, state);
        Self { base, db }
    }

    pub fn tenant(&self) -> TenantDb {
        self.db.tenant()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An org named `name` with these members.
    pub async fn org(&self, slug: &str, name: &str, members: &[(Uuid, Role)]) -> Uuid {
        let id = Uuid::new_v4();
        let tenant = self.tenant();
        let mut tx = tenant.begin(TenantContext::org(id)).await.unwrap();
        fleetmon_server::orgs::create(tx.conn(), id, slug, name, None)
            .await
            .unwrap();
        for (user, role) in members {
            query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(user)
                .bind(role.as_str())
                .execute(tx.conn())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        id
    }

    /// Liveness thresholds wide enough that a slow test run cannot age a machine past them.
    pub async fn wide_thresholds(&self, org: Uuid) {
        let tenant = self.tenant();
        let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
        query("UPDATE organizations SET settings = settings || '{\"stale_after_s\": 120, \"offline_after_s\": 1200}' WHERE id = $1")
            .bind(org)
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn ingest(&self, org: Uuid, events: &[Value]) {
        let tenant = self.tenant();
        let mut tx = tenant.begin(TenantContext::org(org)).await.unwrap();
        let token = tokens::create(tx.conn(), org, TokenKind::Ingest, "agent", None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let response = reqwest::Client::new()
            .post(self.url("/api/v1/ingest"))
            .bearer_auth(token.secret)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["accepted"], events.len(), "{body}");
    }
}

pub fn email(login: &str) -> String {
    format!(
        "{login}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Signs in on the sign-in page the browser is at.
pub async fn sign_in_here(browser: &Browser, email: &str, password: &str) {
    browser.fill("#local-email", email).await;
    browser.fill("#local-password", password).await;
    browser
        .click("form[data-sign-in] button[type=submit]")
        .await;
}

/// Opens `path`, is sent to sign in, signs in and waits to be back at `path`.
pub async fn open_signed_in(browser: &Browser, site: &Site, email: &str, path: &str) {
    browser.goto(&site.url(path)).await;
    browser.find("#local-email").await;
    sign_in_here(browser, email, PASSWORD).await;
    browser.wait_for_path(path).await;
}

/// An HTTP client with `browser`'s cookies (its session and CSRF token), to send forms exactly
/// as that browser would, those its pages do not offer included.
pub async fn http_session(browser: &Browser, site: &Site) -> crate::signin::Browser {
    let mut http = crate::signin::Browser::new(&site.base);
    for cookie in browser.client.get_all_cookies().await.unwrap() {
        http.cookies
            .insert(cookie.name().to_string(), cookie.value().to_string());
    }
    http
}

#[tokio::test]
async fn signing_in_says_wrong_password_then_opens_the_empty_state_creates_an_org_and_signs_out() {
    let site = Site::start().await;
    let user = email("new");
    account(&site.tenant(), &user).await;
    let browser = Browser::laptop().await;

    browser.goto(&site.url("/orgs")).await;
    browser.wait_for_path("/sign-in?return_to=%2Forgs").await;
    assert_eq!(browser.text("h1").await, "Sign in to fleetmon");
    browser.assert_clean_console("the sign-in page", &[]).await;
    browser.screenshot("sign-in").await;

    sign_in_here(&browser, &user, "not the password").await;
    browser
        .wait_for_text("#sign-in-message", "Wrong email or password.")
        .await;
    assert_eq!(browser.path().await, "/sign-in?return_to=%2Forgs");
    browser
        .assert_clean_console("the sign-in page after a wrong password", &["401"])
        .await;
    browser.screenshot("sign-in-wrong-password").await;

    browser.fill("#local-password", PASSWORD).await;
    browser
        .click("form[data-sign-in] button[type=submit]")
        .await;
    browser.wait_for_path("/orgs").await;
    assert_eq!(browser.text("h1").await, "Welcome to fleetmon");
    assert!(browser.text("main").await.contains(&user));
    browser.assert_clean_console("the empty state", &[]).await;
    browser.screenshot("empty-state").await;

    // The script fills the short name from the name, and creates the org through the API.
    browser.fill("#org-name", "Render Farm 2").await;
    let slug = browser.find("#org-slug").await.prop("value").await.unwrap();
    assert_eq!(slug.as_deref(), Some("render-farm-2"));
    browser
        .click("form[data-create-org] button[type=submit]")
        .await;
    browser.wait_for_path("/orgs/render-farm-2").await;
    assert_eq!(browser.text("h1").await, "Render Farm 2");
    let empty = browser.text(".empty").await;
    assert!(empty.contains("No machines yet"), "{empty}");
    assert!(
        empty.contains("fleetmon token create --org render-farm-2 --kind ingest"),
        "the owner is shown how to connect agents: {empty}"
    );
    assert!(empty.contains(&format!("{}/api/v1/ingest", site.base)));
    browser
        .assert_clean_console("the new org's overview", &[])
        .await;
    browser.screenshot("overview-empty").await;

    browser.click(".who button[type=submit]").await;
    browser.wait_for_path("/sign-in?signed_out=1").await;
    assert_eq!(
        browser.text("#sign-in-message").await,
        "You have signed out."
    );
    // The session is gone: the org's page asks to sign in again.
    browser.goto(&site.url("/orgs/render-farm-2")).await;
    browser
        .wait_for_path("/sign-in?return_to=%2Forgs%2Frender-farm-2")
        .await;
    browser.assert_clean_console("after sign-out", &[]).await;
    browser.close().await;
}

#[tokio::test]
async fn an_expired_access_token_is_renewed_and_an_ended_session_says_so() {
    let site = Site::start().await;
    let user = email("renew");
    let user_id = account(&site.tenant(), &user).await;
    site.org("alpha", "Alpha Fleet", &[(user_id, Role::Owner)])
        .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/orgs/alpha").await;

    // The 5-minute access cookie gone: the page renews it from the session and opens.
    browser.client.delete_cookie("fm_access").await.unwrap();
    browser.goto(&site.url("/orgs/alpha/machines")).await;
    browser.wait_for_path("/orgs/alpha/machines").await;
    assert_eq!(browser.text("h1").await, "Machines");

    // Revoked elsewhere (another tab's sign-out, an admin): the next page says the session ended.
    query("UPDATE sessions SET revoked_at = now() WHERE user_id = $1")
        .bind(user_id)
        .execute(&site.db.pool)
        .await
        .unwrap();
    browser.goto(&site.url("/orgs/alpha")).await;
    browser
        .wait_for_path("/sign-in?ended=1&return_to=%2Forgs%2Falpha")
        .await;
    assert_eq!(
        browser.text("#sign-in-message").await,
        "Your session has ended. Sign in again to continue."
    );
    browser
        .assert_clean_console("renewal and the ended session", &[])
        .await;
    browser.screenshot("session-ended").await;
    browser.close().await;
}

#[tokio::test]
async fn too_many_wrong_passwords_say_when_to_try_again() {
    let site = Site::start().await;
    let user = email("locked");
    account(&site.tenant(), &user).await;
    let mut api = crate::signin::Browser::new(&site.base);
    for _ in 0..fleetmon_server::auth::throttle::ACCOUNT_LIMIT {
        let wrong = api.sign_in(&user, "not the password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let browser = Browser::laptop().await;
    browser.goto(&site.url("/sign-in")).await;
    sign_in_here(&browser, &user, PASSWORD).await;
    browser
        .wait_for_text(
            "#sign-in-message",
            "Too many failed sign-ins. Try again in 15 minutes.",
        )
        .await;
    browser
        .assert_clean_console("the throttled sign-in", &["429"])
        .await;
    browser.screenshot("sign-in-throttled").await;
    browser.close().await;
}

#[tokio::test]
async fn the_org_switcher_moves_between_two_orgs() {
    let site = Site::start().await;
    let user = email("two");
    let user_id = account(&site.tenant(), &user).await;
    site.org("north", "North Farm", &[(user_id, Role::Owner)])
        .await;
    site.org("south", "South Farm", &[(user_id, Role::Viewer)])
        .await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/").await;
    assert_eq!(browser.text("main h1").await, "Your organizations");
    let listed: Vec<String> = {
        let mut names = Vec::new();
        for link in browser.all(".org-list a").await {
            names.push(link.attr("href").await.unwrap().unwrap());
        }
        names
    };
    assert_eq!(listed, ["/orgs/north", "/orgs/south"]);
    browser.assert_clean_console("the org picker", &[]).await;
    browser.screenshot("org-picker").await;

    browser.click(".org-list a[href='/orgs/north']").await;
    browser.wait_for_path("/orgs/north").await;
    assert_eq!(browser.text("main h1").await, "North Farm");
    browser.click(".switcher summary").await;
    let current = browser
        .find(".switcher a[aria-current='true']")
        .await
        .attr("href")
        .await
        .unwrap();
    assert_eq!(current.as_deref(), Some("/orgs/north"));
    browser.screenshot("org-switcher").await;

    browser.click(".switcher a[href='/orgs/south']").await;
    browser.wait_for_path("/orgs/south").await;
    assert_eq!(browser.text("main h1").await, "South Farm");
    assert_eq!(browser.text(".switcher summary").await, "South Farm");
    browser.assert_clean_console("switching orgs", &[]).await;
    browser.close().await;
}

pub fn seconds_ago(seconds: i64, mut event: Value) -> Value {
    event["at"] = json!((Utc::now() - Duration::seconds(seconds)).to_rfc3339());
    event
}

/// gpu-01 online with two GPUs and two workers (one busy on job j-42), gpu-02 stale, gpu-03
/// offline with one idle worker (with [`Site::wide_thresholds`]: stale after 120 s, offline
/// after 1200 s).
pub fn fleet_events() -> Vec<Value> {
    let heartbeat = |machine: &str, gpus: Value| {
        event(
            "machine.heartbeat",
            json!({
                "machine_id": machine, "status": "ready",
                "host": {"hostname": format!("{machine}.lan"), "os": "Ubuntu 24.04", "cpu_cores": 64, "ram_gb": 512, "ip": "10.0.0.7"},
                "gpus": gpus,
            }),
        )
    };
    let a100 = |index: u32, utilization: u32, used_mb: u32| {
        json!({"index": index, "name": "NVIDIA A100 80GB", "memory_total_mb": 81920,
               "memory_used_mb": used_mb, "utilization_pct": utilization, "temperature_c": 64, "power_w": 310})
    };
    vec![
        seconds_ago(
            1,
            heartbeat("gpu-01", json!([a100(0, 87, 61440), a100(1, 13, 8192)])),
        ),
        seconds_ago(600, heartbeat("gpu-02", json!([]))),
        seconds_ago(3600, heartbeat("gpu-03", json!([]))),
        seconds_ago(
            1,
            event(
                "worker.heartbeat",
                json!({"worker_id": "w-busy", "machine_id": "gpu-01", "status": "busy", "current_job_id": "j-42",
                       "services": {"comfyui": "active", "upscale": "idle"}, "version": "1.4.2"}),
            ),
        ),
        seconds_ago(
            1,
            event(
                "worker.heartbeat",
                json!({"worker_id": "w-idle", "machine_id": "gpu-01", "status": "idle"}),
            ),
        ),
        seconds_ago(
            3600,
            event(
                "worker.heartbeat",
                json!({"worker_id": "w-gone", "machine_id": "gpu-03", "status": "idle"}),
            ),
        ),
    ]
}

#[tokio::test]
async fn the_overview_shows_machines_ingested_through_the_api_and_keeps_itself_current() {
    let site = Site::start().await;
    let user = email("ops");
    let user_id = account(&site.tenant(), &user).await;
    let org = site
        .org("gpu-farm", "GPU Farm", &[(user_id, Role::Admin)])
        .await;
    site.wide_thresholds(org).await;
    site.ingest(org, &fleet_events()).await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &user, "/orgs/gpu-farm").await;

    let summary = browser.text(".summary").await;
    for figure in [
        "3 machines",
        "1 online",
        "1 stale",
        "1 offline",
        "3 workers",
        "1 busy",
        "2 GPUs",
        // (87 + 13) / 2
        "50% mean GPU utilisation",
    ] {
        assert!(summary.contains(figure), "{figure:?} in {summary:?}");
    }
    let online = browser.text("li[data-machine='gpu-01']").await;
    for shown in [
        "gpu-01.lan",
        "online",
        "Ubuntu 24.04",
        "64 cores",
        "512 GB",
        "2 GPUs",
        "GPU 0 · NVIDIA A100 80GB",
        "87%",
        "60.0 / 80.0 GB",
        "GPU 1 · NVIDIA A100 80GB",
        "13%",
        "8.0 / 80.0 GB",
        "64 °C",
        "2 workers",
        "w-busy",
        "Job j-42",
        "comfyui: active",
        "upscale: idle",
        "w-idle",
    ] {
        // Section titles are upper case on screen.
        assert!(
            online.to_lowercase().contains(&shown.to_lowercase()),
            "{shown:?} in {online:?}"
        );
    }
    let meter = browser
        .find("li[data-machine='gpu-01'] .gpu meter")
        .await
        .attr("value")
        .await
        .unwrap();
    assert_eq!(meter.as_deref(), Some("87"));
    assert!(browser
        .text("li[data-machine='gpu-02'] .badge")
        .await
        .contains("stale"));
    let offline = browser.text("li[data-machine='gpu-03']").await;
    assert!(offline.contains("offline") && offline.contains("w-gone"));
    browser.assert_clean_console("the overview", &[]).await;
    browser.screenshot("overview-three-machines").await;

    browser
        .click(".filters a[href='/orgs/gpu-farm?liveness=offline']")
        .await;
    browser
        .wait_for_path("/orgs/gpu-farm?liveness=offline")
        .await;
    let cards = browser.all("li.machine").await;
    assert_eq!(cards.len(), 1);
    assert_eq!(
        cards[0].attr("data-machine").await.unwrap().as_deref(),
        Some("gpu-03")
    );

    browser.goto(&site.url("/orgs/gpu-farm/machines")).await;
    let rows = browser.all("tbody tr").await;
    let mut ids = Vec::new();
    for row in &rows {
        ids.push(row.attr("data-machine").await.unwrap().unwrap());
    }
    assert_eq!(ids, ["gpu-01", "gpu-02", "gpu-03"]);
    let first = rows[0].text().await.unwrap();
    assert!(
        first.contains("50%") && first.contains("68.0 / 160.0 GB") && first.contains("2 (1)"),
        "{first}"
    );
    browser.assert_clean_console("the machine list", &[]).await;
    browser.screenshot("machines").await;

    // A machine ingested while the overview is open appears without a reload.
    browser.goto(&site.url("/orgs/gpu-farm")).await;
    browser.find("li[data-machine='gpu-01']").await;
    a_new_machine_appears(&browser, &site, org, "gpu-04").await;
    browser.wait_for_text(".summary", "4 machines").await;
    browser
        .assert_clean_console("the overview's live region", &[])
        .await;

    // The wall screen: the same page on a 2560×1440 screen.
    browser.client.set_window_size(2560, 1440).await.unwrap();
    browser.screenshot("overview-wall").await;
    browser.close().await;
}

/// A render farm as its operator sees it on a working day: eight machines (six online with four
/// GPUs each at varied load, one stale, one offline), one or two workers on each, busy, idle or
/// paused, and the last hours' jobs — mostly completed, some running, a few failed or waiting.
pub fn working_fleet() -> Vec<Value> {
    let models = [
        ("NVIDIA H100 80GB HBM3", 81_559),
        ("NVIDIA A100-SXM4-80GB", 81_920),
        ("NVIDIA L40S", 46_068),
    ];
    let types = ["render", "upscale", "caption", "train"];
    let mut events = Vec::new();
    for m in 0..8u32 {
        let machine = format!("render-{:02}", m + 1);
        let (name, total) = models[(m % 3) as usize];
        let ago = match m {
            6 => 600,
            7 => 5400,
            _ => 2,
        };
        let gpus: Vec<Value> = (0..4u32)
            .map(|g| {
                let load = (m * 37 + g * 23 + 11) % 100;
                json!({"index": g, "name": name, "memory_total_mb": total,
                       "memory_used_mb": total * (load + 5) / 110, "utilization_pct": load,
                       "temperature_c": 38 + load / 3, "power_w": 90 + load * 3})
            })
            .collect();
        events.push(seconds_ago(
            ago,
            event(
                "machine.heartbeat",
                json!({
                    "machine_id": machine, "status": if m == 7 { "stopping" } else { "ready" },
                    "host": {"hostname": format!("{machine}.farm.lan"), "os": "Ubuntu 22.04",
                             "cpu_cores": 96, "ram_gb": 768, "ip": format!("10.20.0.{}", 11 + m)},
                    "gpus": gpus,
                }),
            ),
        ));
        for w in 0..(1 + m % 2) {
            let worker = format!("{machine}-w{w}");
            let status = match (m, w) {
                (6 | 7, _) => "idle",
                _ if (m + w) % 4 < 2 => "busy",
                _ if (m + w) % 4 == 2 => "idle",
                _ => "paused",
            };
            // A busy worker runs a job started a few minutes ago.
            let job = (status == "busy").then(|| format!("job-{machine}-{w}"));
            if let Some(job) = &job {
                let started = 60 + i64::from(m) * 50;
                events.push(seconds_ago(
                    started + 5,
                    event(
                        "job.submitted",
                        json!({"job_id": job, "name": format!("{} shot {}", types[(m % 4) as usize], 40 + m),
                               "job_type": types[(m % 4) as usize], "customer_id": "studio-north"}),
                    ),
                ));
                events.push(seconds_ago(
                    started,
                    event(
                        "job.started",
                        json!({"job_id": job, "worker_id": worker, "machine_id": machine}),
                    ),
                ));
            }
            events.push(seconds_ago(
                ago,
                event(
                    "worker.heartbeat",
                    json!({"worker_id": worker, "machine_id": machine, "status": status,
                           "current_job_id": job, "version": "2.3.1",
                           "services": {"comfyui": "active", "upscaler": if w == 0 { "active" } else { "idle" }}}),
                ),
            ));
        }
    }
    // The last three hours' jobs, one every four minutes: all but the newest two ended, three of
    // them failed.
    for n in 0..45u32 {
        let id = format!("job-h{n:02}");
        let machine = format!("render-{:02}", n % 6 + 1);
        let worker = format!("{machine}-w0");
        let submitted = 10_800 - i64::from(n) * 240;
        let kind = types[(n % 4) as usize];
        let run = json!({"job_id": id, "worker_id": worker, "machine_id": machine});
        events.push(seconds_ago(
            submitted,
            event(
                "job.submitted",
                json!({"job_id": id, "name": format!("{kind} batch {}", 1200 + n), "job_type": kind,
                       "customer_id": "studio-north", "workflow_id": format!("wf-{}", n / 5)}),
            ),
        ));
        if n >= 43 {
            continue; // still waiting
        }
        events.push(seconds_ago(
            submitted - 20,
            event("job.started", run.clone()),
        ));
        let mut end = run;
        if n % 13 == 5 {
            end["error"] = json!({"type": "OOMError", "reason": "oom",
                                  "message": "CUDA out of memory while allocating 2.5 GiB"});
            events.push(seconds_ago(submitted - 95, event("job.failed", end)));
        } else {
            end["duration_ms"] = json!(60_000 + n * 1_700);
            events.push(seconds_ago(submitted - 80, event("job.completed", end)));
        }
    }
    events
}

#[tokio::test]
async fn the_readme_screenshot_shows_a_working_fleet() {
    let site = Site::start().await;
    let user = email("ops");
    let user_id = account(&site.tenant(), &user).await;
    let org = site
        .org("render-farm", "Render Farm", &[(user_id, Role::Admin)])
        .await;
    site.wide_thresholds(org).await;
    site.ingest(org, &working_fleet()).await;
    // Tall enough for the stat cards and a full row of machine cards.
    let browser = Browser::start(1400, 1400).await;
    open_signed_in(&browser, &site, &user, "/orgs/render-farm").await;
    browser.find("[data-live][data-streaming]").await;
    let dark = browser
        .client
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(dark, json!(false), "the README shows the light scheme");
    let summary = browser.text(".summary").await;
    for figure in [
        "8 machines",
        "6 online",
        "1 stale",
        "1 offline",
        "12 workers",
        "32 GPUs",
    ] {
        assert!(summary.contains(figure), "{figure:?} in {summary:?}");
    }
    // Five busy workers' jobs run; of the 43 that ended, 3 failed.
    assert_eq!(browser.text("li[data-stat='active'] strong").await, "5");
    assert_eq!(browser.text("li[data-stat='pending'] strong").await, "2");
    assert_eq!(browser.text("li[data-stat='failed'] strong").await, "3");
    assert_eq!(
        browser.text("li[data-stat='success-rate'] strong").await,
        "93.0%"
    );
    assert_eq!(browser.all("li.machine").await.len(), 8);
    browser
        .assert_clean_console("the overview of a working fleet", &[])
        .await;
    // docs/screenshots/overview.png, shown by the README, is this file from one run.
    browser.screenshot("overview").await;
    browser.close().await;
}

/// Ingests a heartbeat of the new machine `id` while the overview is open and waits until its
/// card is there, on the same page (no reload).
pub async fn a_new_machine_appears(browser: &Browser, site: &Site, org: Uuid, id: &str) {
    browser.mark_page().await;
    site.ingest(
        org,
        &[event(
            "machine.heartbeat",
            json!({"machine_id": id, "status": "starting"}),
        )],
    )
    .await;
    browser.find(&format!("li[data-machine='{id}']")).await;
    browser.assert_same_page().await;
}

#[tokio::test]
async fn a_viewer_sees_no_admin_controls_and_admin_urls_are_not_found() {
    let site = Site::start().await;
    let admin = email("admin");
    let viewer = email("viewer");
    let admin_id = account(&site.tenant(), &admin).await;
    let viewer_id = account(&site.tenant(), &viewer).await;
    site.org(
        "farm",
        "Farm",
        &[(admin_id, Role::Admin), (viewer_id, Role::Viewer)],
    )
    .await;
    site.org("secret", "Secret", &[(admin_id, Role::Owner)])
        .await;

    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &viewer, "/orgs/farm").await;
    assert!(browser
        .all("a[href='/orgs/farm/settings']")
        .await
        .is_empty());
    let empty = browser.text(".empty").await;
    assert!(
        empty.contains("Ask an admin of this organization to connect its agents.")
            && !empty.contains("token create"),
        "{empty}"
    );
    browser
        .assert_clean_console("the viewer's overview", &[])
        .await;
    for path in [
        "/orgs/farm/settings",
        "/orgs/secret",
        "/orgs/no-such-org",
        "/orgs/secret/machines",
    ] {
        browser.goto(&site.url(path)).await;
        assert_eq!(browser.text("h1").await, "Page not found", "{path}");
        browser.assert_clean_console(path, &["404"]).await;
    }
    browser.screenshot("not-found").await;
    browser.close().await;

    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/farm").await;
    browser.click("a[href='/orgs/farm/settings']").await;
    browser.wait_for_path("/orgs/farm/settings").await;
    let members = browser.text("main").await;
    assert!(
        members.contains(&viewer) && members.contains("viewer") && members.contains(&admin),
        "{members}"
    );
    browser.assert_clean_console("the settings page", &[]).await;
    browser.screenshot("settings").await;
    browser.close().await;
}

/// Posts a removal form for `machine` from the page, as its own form would (the script builds
/// it: the page shows none for a machine that is not offline), with this CSRF token.
async fn post_removal(browser: &Browser, machine: &str, csrf: &str) {
    browser
        .client
        .execute(
            "const [machine, csrf] = arguments;
             const form = document.createElement('form');
             form.method = 'post';
             form.action = location.pathname.replace(/[^/]*$/, '') + encodeURIComponent(machine) + '/remove';
             const field = document.createElement('input');
             field.type = 'hidden';
             field.name = 'csrf';
             field.value = csrf;
             form.append(field);
             document.body.append(form);
             form.submit();",
            vec![json!(machine), json!(csrf)],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn error_pages_say_what_happened_without_console_errors() {
    let site = Site::start().await;
    let admin = email("admin");
    let admin_id = account(&site.tenant(), &admin).await;
    let org = site
        .org("gpu-farm", "GPU Farm", &[(admin_id, Role::Admin)])
        .await;
    site.wide_thresholds(org).await;
    site.ingest(org, &fleet_events()).await;
    let browser = Browser::laptop().await;
    open_signed_in(&browser, &site, &admin, "/orgs/gpu-farm/machines/gpu-01").await;
    assert!(
        browser.all("form[action$='/remove']").await.is_empty(),
        "an online machine has no removal form"
    );
    let csrf = browser
        .client
        .get_named_cookie("fm_csrf")
        .await
        .unwrap()
        .value()
        .to_string();

    // The API's 409: only an offline machine can be removed.
    post_removal(&browser, "gpu-01", &csrf).await;
    browser.wait_for_text("h1", "That did not work").await;
    let text = browser.text("main").await;
    assert!(
        text.contains("machine \"gpu-01\" is online; only an offline machine can be removed"),
        "{text}"
    );
    browser
        .assert_clean_console("the 409 error page", &["409"])
        .await;
    browser.screenshot("error-conflict").await;

    // A form without fleetmon's CSRF token: the 403 page, and nothing removed.
    browser
        .goto(&site.url("/orgs/gpu-farm/machines/gpu-03"))
        .await;
    browser.find("form[action$='/remove']").await;
    post_removal(&browser, "gpu-03", "forged").await;
    browser.wait_for_text("h1", "Not allowed").await;
    browser
        .assert_clean_console("the 403 error page", &["403"])
        .await;
    browser.screenshot("error-forbidden").await;
    browser.goto(&site.url("/orgs/gpu-farm/machines")).await;
    assert_eq!(browser.all("tr[data-machine='gpu-03']").await.len(), 1);
    browser.close().await;
}

#[tokio::test]
async fn the_console_check_sees_a_csp_violation() {
    let site = Site::start().await;
    let browser = Browser::laptop().await;
    browser.goto(&site.url("/sign-in")).await;
    browser.find("h1").await;
    browser.assert_clean_console("the sign-in page", &[]).await;
    browser
        .client
        .execute(
            "const s = document.createElement('script'); s.textContent = 'window.x = 1'; document.body.append(s);",
            vec![],
        )
        .await
        .unwrap();
    let entries = browser.take_console().await;
    assert!(
        entries.iter().any(|e| e.is_csp_violation() && e.is_error()),
        "an inline script is refused and reported: {entries:#?}"
    );
    let ran = browser
        .client
        .execute("return window.x === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(ran, json!(true), "the inline script did not run");
    browser.close().await;
}

/// The `href`/`src` of every asset a page names.
fn asset_paths(html: &str) -> Vec<String> {
    let mut paths: Vec<String> = html
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_string)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[tokio::test]
async fn pages_carry_security_headers_and_assets_are_cached_by_content() {
    let site = Site::start().await;
    let http = reqwest::Client::new();
    let page = http.get(site.url("/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<style") && !html.contains(" style="));
    assert!(!html.contains("<script>"), "no inline script");

    // The first load as a browser fetches it, compressed: the page and the assets it names.
    let gzipped = |path: String| {
        let request = http.get(site.url(&path)).header("accept-encoding", "gzip");
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["content-encoding"], "gzip", "{path}");
            (response.headers().clone(), response.bytes().await.unwrap())
        }
    };
    let (_, page) = gzipped("/sign-in".into()).await;
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&page[..]), &mut unzipped)
        .unwrap();
    assert!(unzipped.contains("Sign in to fleetmon"));
    let assets = asset_paths(&html);
    assert_eq!(assets.len(), 3, "{assets:?}");
    let mut first_load = page.len();
    for path in &assets {
        let (headers, body) = gzipped(path.clone()).await;
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let kind = headers["content-type"].to_str().unwrap().to_string();
        let expected = match path.rsplit('.').next() {
            Some("css") => "text/css; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            _ => "image/svg+xml",
        };
        assert_eq!(kind, expected, "{path}");
        first_load += body.len();
    }
    // Well under the 150 KB budget.
    assert!(first_load < 30 * 1024, "first load is {first_load} bytes");
    println!("first load of /sign-in: {first_load} bytes transferred");

    let stale = http
        .get(site.url("/assets/app.000000000000.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 404);

    // A browser asking for a path nobody serves gets the page; the API keeps answering JSON.
    let missing = http
        .get(site.url("/no/such/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("content-security-policy"));
    assert!(missing.text().await.unwrap().contains("Page not found"));
    let api = http
        .get(site.url("/api/v1/nothing"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// A form post as a browser without JavaScript sends it.
pub async fn post_form(
    browser: &mut crate::signin::Browser,
    path: &str,
    origin: Option<&str>,
    form: &impl serde::Serialize,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookies = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut request = client
        .post(format!("{}{path}", browser.base))
        .header("cookie", cookies)
        .form(form);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    browser.keep_cookies(&response);
    response
}

#[tokio::test]
async fn the_forms_work_without_javascript_and_only_from_this_site() {
    let site = Site::start().await;
    let user = email("nojs");
    account(&site.tenant(), &user).await;
    let mut browser = crate::signin::Browser::new(&site.base);
    let page = browser
        .send(reqwest::Method::GET, "/sign-in", None, false)
        .await;
    assert_eq!(page.status(), 200);
    let csrf = browser.cookies["fm_csrf"].clone();
    // The page carries the token masked (a fresh pad each time), never as the cookie has it.
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"csrf\" value=\""));
    assert!(!html.contains(&csrf));
    let ours = Some(site.base.as_str());
    let sign_in = |password: &str, csrf: &str| {
        [
            ("provider", "local".to_string()),
            ("email", user.clone()),
            ("password", password.to_string()),
            ("csrf", csrf.to_string()),
            ("return_to", "/orgs".to_string()),
        ]
    };

    // Another site's form (or one with no Origin at all), or a forged token: refused.
    for (origin, token) in [
        (None, csrf.as_str()),
        (Some("http://evil.example"), csrf.as_str()),
        (ours, "forged"),
    ] {
        let form = sign_in(PASSWORD, token);
        let refused = post_form(&mut browser, "/auth/form/sign-in", origin, &form).await;
        assert_eq!(refused.status(), 403, "{origin:?}");
        assert!(!browser.cookies.contains_key("fm_access"));
        assert!(refused
            .text()
            .await
            .unwrap()
            .contains("This sign-in must come from fleetmon"));
    }

    let form = sign_in("not the password", &csrf);
    let wrong = post_form(&mut browser, "/auth/form/sign-in", ours, &form).await;
    assert_eq!(wrong.status(), 401);
    let text = wrong.text().await.unwrap();
    assert!(text.contains("Wrong email or password."));
    assert!(
        text.contains(&format!("value=\"{user}\"")),
        "the email stays"
    );

    let form = sign_in(PASSWORD, &csrf);
    let signed_in = post_form(&mut browser, "/auth/form/sign-in", ours, &form).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/orgs");
    assert!(browser.cookies.contains_key("fm_access"));
    let csrf = browser.cookies["fm_csrf"].clone();

    // Creating an org by form, through the API's own creation.
    let created = post_form(
        &mut browser,
        "/orgs",
        ours,
        &[
            ("csrf", csrf.as_str()),
            ("name", "No Script"),
            ("slug", "no-script"),
        ],
    )
    .await;
    assert_eq!(created.status(), 303);
    assert_eq!(created.headers()["location"], "/orgs/no-script");
    let again = post_form(
        &mut browser,
        "/orgs",
        ours,
        &[
            ("csrf", csrf.as_str()),
            ("name", "Again"),
            ("slug", "no-script"),
        ],
    )
    .await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("already exists"));
    let foreign = post_form(
        &mut browser,
        "/orgs",
        Some("http://evil.example"),
        &[("csrf", csrf.as_str()), ("name", "Evil"), ("slug", "evil")],
    )
    .await;
    assert_eq!(foreign.status(), 403);
    let orgs = browser
        .send(reqwest::Method::GET, "/api/v1/orgs", None, false)
        .await;
    let orgs: Value = orgs.json().await.unwrap();
    assert_eq!(orgs["orgs"].as_array().unwrap().len(), 1);
    assert_eq!(orgs["orgs"][0]["slug"], "no-script");

    // Sign-out by form revokes the session at once.
    let access = browser.cookies["fm_access"].clone();
    let foreign = post_form(
        &mut browser,
        "/auth/form/sign-out",
        Some("http://evil.example"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(foreign.status(), 403);
    let out = post_form(
        &mut browser,
        "/auth/form/sign-out",
        ours,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/sign-in?signed_out=1");
    let after = crate::signin::bearer_get(site.url("/api/v1/me"), access).await;
    assert_eq!(
        crate::signin::error_code(after).await,
        (StatusCode::UNAUTHORIZED, "session_ended".into())
    );
}

#[tokio::test]
async fn another_orgs_page_is_the_same_404_as_a_missing_one() {
    let site = Site::start().await;
    let user = email("member");
    let user_id = account(&site.tenant(), &user).await;
    let other = account(&site.tenant(), &email("other")).await;
    site.org("mine", "Mine", &[(user_id, Role::Viewer)]).await;
    site.org("theirs", "Theirs", &[(other, Role::Owner)]).await;
    let mut browser = crate::signin::Browser::new(&site.base);
    assert_eq!(browser.sign_in(&user, PASSWORD).await.status(), 200);
    let mut bodies = Vec::new();
    for path in [
        "/orgs/theirs",
        "/orgs/nobody-has-this",
        "/orgs/mine/settings",
    ] {
        let response = browser.send(reqwest::Method::GET, path, None, false).await;
        assert_eq!(response.status(), 404, "{path}");
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0], bodies[2]);
    assert!(!bodies[0].contains("theirs") && !bodies[0].contains("Theirs"));
}
