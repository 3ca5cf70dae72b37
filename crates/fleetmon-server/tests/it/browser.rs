//! A real browser for the dashboard's tests: Debian's `chromium`, headless, driven over WebDriver
//! (fantoccini) by its `chromedriver`, which each test starts on a free loopback port with a
//! profile of its own. Dropping the browser kills chromedriver's whole process group, so no
//! Chromium outlives its test, and removes the profile.
//!
//! The browser's console is read through chromedriver's log endpoint: console errors, failed
//! loads and Content-Security-Policy violations all land there.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// A safety net for a driver that never starts, not a measurement.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a test waits for something to appear on the page before it fails.
pub const WAIT: Duration = Duration::from_secs(20);
const INSTALL: &str = "install Debian's chromium and chromium-driver (scripts/test does)";

/// One line of the browser's log.
#[derive(Debug, Clone, Deserialize)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

impl LogEntry {
    pub fn is_error(&self) -> bool {
        self.level == "SEVERE"
    }

    pub fn is_csp_violation(&self) -> bool {
        self.message.contains("Content Security Policy")
    }
}

/// chromedriver's (non-W3C, still served) log endpoint: the entries since the last read.
#[derive(Debug)]
struct ReadLog;

impl WebDriverCompatibleCommand for ReadLog {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// A Chrome DevTools Protocol command, through chromedriver's endpoint for them.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}

/// chromedriver in a process group of its own, killed with every Chromium it started.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

pub struct Browser {
    pub client: Client,
    profile: PathBuf,
    _driver: Driver,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let port = free_port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = Driver(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run chromedriver ({e}): {INSTALL}")),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let ready = reqwest::get(format!("{url}/status"))
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!(
            "fleetmon-browser-{}-{}",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).expect("a browser profile directory");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    // Root (as in CI) cannot use Chromium's sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium ({e}): {INSTALL}"));
        Self {
            client,
            profile,
            _driver: driver,
        }
    }

    /// A laptop-sized window.
    pub async fn laptop() -> Self {
        Self::start(1440, 900).await
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.path().await),
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// Every element matching `css` now (none is fine).
    pub async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
    }

    /// Waits until the element `css` has text containing `wanted`.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(wanted) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} on {} never said {wanted:?}; it says {text:?}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the browser is at `path` (with its query, if any).
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the browser stayed at {now}, not {path}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("clear input");
        input.send_keys(value).await.expect("type into input");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Scrolls the first element matching `css` to the top of the window (for screenshots).
    pub async fn scroll_to(&self, css: &str) {
        let element = self.find(css).await;
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'start'});",
                vec![serde_json::to_value(&element).expect("an element reference")],
            )
            .await
            .expect("scroll");
    }

    /// Marks the page's window, for [`Self::assert_same_page`] to tell that it was not reloaded.
    pub async fn mark_page(&self) {
        self.client
            .execute("window.fleetmonTestMarker = 1;", vec![])
            .await
            .expect("mark the page");
    }

    /// Fails if the page marked by [`Self::mark_page`] was reloaded or left since.
    pub async fn assert_same_page(&self) {
        let marker = self
            .client
            .execute("return window.fleetmonTestMarker;", vec![])
            .await
            .expect("read the page's mark");
        assert_eq!(marker, json!(1), "the page was reloaded");
    }

    /// From now on the pages see `prefers-color-scheme: dark`, as on a system set to dark.
    pub async fn prefer_dark(&self) {
        let features = json!([{ "name": "prefers-color-scheme", "value": "dark" }]);
        self.client
            .issue_cmd(Cdp {
                cmd: "Emulation.setEmulatedMedia",
                params: json!({ "features": features }),
            })
            .await
            .expect("emulate a dark colour scheme");
    }

    /// What the console said since the last read.
    pub async fn take_console(&self) -> Vec<LogEntry> {
        let value = self
            .client
            .issue_cmd(ReadLog)
            .await
            .expect("read the browser log");
        serde_json::from_value(value).expect("log entries")
    }

    /// Fails on any console error or CSP violation since the last read, except the failed loads
    /// the test caused on purpose (`expected`: HTTP statuses such as "401").
    pub async fn assert_clean_console(&self, page: &str, expected: &[&str]) {
        let entries = self.take_console().await;
        let unexpected: Vec<&LogEntry> = entries
            .iter()
            .filter(|e| e.is_error() || e.is_csp_violation())
            .filter(|e| {
                !(e.source == "network"
                    && expected
                        .iter()
                        .any(|status| e.message.contains(&format!("status of {status}"))))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "console errors on {page}: {unexpected:#?}"
        );
    }

    /// Saves a PNG of the window as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// Ends the WebDriver session (Chromium exits); dropping also kills what is left.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// `target/screenshots`, in the target directory this test binary was built into.
pub fn screenshot_dir() -> PathBuf {
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    target.join("screenshots")
}
