//! A real browser for the console's tests: Debian's headless Chromium, driven over
//! WebDriver by `fantoccini` through a chromedriver of the test's own, on a port the
//! driver picks itself.
//!
//! fantoccini is built without TLS (`default-features = false`): it only speaks to the
//! chromedriver on loopback, so no TLS stack besides the project's rustls/ring is linked.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A desktop-sized window; [`Browser::screenshot_phone`] narrows it.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh Chromium profile. The flags keep Chromium from
    /// reaching for the network, which this machine does not have (it would hang on the
    /// lookups).
    pub async fn start() -> Browser {
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts (scripts/test installs Debian's chromium-driver)");
        let port = driver_port(&mut driver).await;
        let profile = tempfile::tempdir().expect("a profile folder");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("{css} is on the page: {err}"))
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The session cookie the browser holds, as a `Cookie` header value for reqwest.
    pub async fn session_cookie(&self) -> String {
        let cookie = self
            .client
            .get_named_cookie("tollgate_console")
            .await
            .expect("the browser holds a session cookie");
        format!("tollgate_console={}", cookie.value())
    }

    /// Writes the whole page to `<target>/console-screenshots/<name>.png` (the window is
    /// stretched to the page's height first) and prints the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.capture(name, WIDTH).await
    }

    /// The same at a phone's width (390 px).
    pub async fn screenshot_phone(&self, name: &str) -> PathBuf {
        self.capture(name, 390).await
    }

    async fn capture(&self, name: &str, width: u32) -> PathBuf {
        self.client.set_window_size(width, HEIGHT).await.unwrap();
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .ok()
            .and_then(|value| value.as_u64())
            .unwrap_or(u64::from(HEIGHT));
        // The window's frame takes some of its height; a little more shows the bottom.
        let height = (height as u32 + 140).clamp(HEIGHT, 6000);
        self.client.set_window_size(width, height).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(WIDTH, HEIGHT).await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot of {name}: {}", path.display());
        path
    }

    /// Ends the session (and Chromium) and the driver.
    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

/// `<target>/console-screenshots`: beside the test's temporary folder in the target
/// directory, wherever `CARGO_TARGET_DIR` puts it.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console-screenshots")
}

/// The port chromedriver announces (`… started successfully on port N.`).
async fn driver_port(driver: &mut Child) -> u16 {
    let stdout = driver.stdout.take().expect("chromedriver's output");
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("on port ").nth(1) {
                if line.contains("started successfully") {
                    return rest.trim_end_matches('.').trim().parse().unwrap();
                }
            }
        }
        panic!("chromedriver stopped before saying its port");
    };
    let port = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("chromedriver says its port within 30 s");
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}
