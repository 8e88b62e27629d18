//! `spawn_app`: the real server on port 0, with its own database and stand-in vendor.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tollgate::app::Application;
use tollgate::config::load_str;
use tollgate::ledger::Ledger;
use tollgate::marketplace::sandbox::{SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET};

use crate::helpers::{Backend, TestDb};
use crate::vendor::StandInVendor;

pub const APPCODE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const ADMIN_TOKEN: &str = "admin-token-8d1e5c2b";
pub const SHOP_TOKEN: &str = "shop-token-5f3a9c71";
/// A number that must never appear in full anywhere but the vendor's query string.
pub const MOBILE: &str = "13912345678";
pub const MOBILE_MASKED: &str = "139****5678";
/// A secret the sandbox's Market API does not accept (`$TEST_MARKET_WRONG_SECRET`).
pub const WRONG_MARKET_SECRET: &str = "not-the-sandbox-secret";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub vendor: StandInVendor,
    pub ledger: Ledger,
    pub alerts: tollgate::alerts::AlertEngine,
    /// The `marketplace_sync` job's sync, when the test configures `[marketplace]`.
    pub marketplace: Option<tollgate::marketplace::MarketplaceSync>,
    pub db: TestDb,
    /// `[ledger] spool_dir`: where settlements the database could not take are held.
    pub spool: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Extra configuration for one test, appended to the standard test configuration.
#[derive(Default)]
pub struct AppOptions {
    pub extra_toml: String,
    pub ledger_mode: Option<&'static str>,
    pub vendor_timeout: Option<&'static str>,
    /// Another app's database (a restart, or a second instance), instead of a new one.
    pub database_url: Option<String>,
    /// Extra keys of the `sms_code` channel's table (such as `package_sizes = [1000]`).
    pub sms_code_keys: String,
    /// Extra keys of the `voice_notice` channel's table (such as `reserve_critical = 5`).
    pub voice_notice_keys: String,
    /// Extra keys of `[server]` (such as `max_connections = 2`); `shutdown_grace` may be
    /// given here to replace the standard one.
    pub server_keys: String,
    /// Extra keys of `[database]` (such as `lock_timeout = "500ms"`).
    pub database_keys: String,
    /// Extra keys of `[ledger]` (such as `sweep_every = "1s"`).
    pub ledger_keys: String,
    /// Keep SPEC §12's built-in per-number limits for critical sends (1 a minute to a
    /// number). Off unless a test asks: most tests send many codes to one number to
    /// prove something else, and the traffic-limit tests turn them on.
    pub default_limits: bool,
    /// Where the channels' vendor is (such as a sandbox's address), instead of the
    /// stand-in; the paths stay the same.
    pub vendor_base: Option<String>,
}

/// The token scrapes present when a test sets `[metrics] token_env = "TEST_METRICS_TOKEN"`.
pub const METRICS_TOKEN: &str = "metrics-token-3b7e9d41";

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, AppOptions::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions) -> TestApp {
    let db = TestDb::new(backend).await;
    let vendor = StandInVendor::start().await;
    let spool = tempfile::tempdir().expect("a spool folder");
    let vendor_url = |path: &str| match &options.vendor_base {
        Some(base) => format!("{base}{path}"),
        None => vendor.url(path),
    };
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        timezone = "Asia/Shanghai"
        {shutdown_grace}
        {server_keys}

        [database]
        url = "{db_url}"
        {database_keys}

        [ledger]
        mode = "{mode}"
        spool_dir = "{spool_dir}"
        {ledger_keys}

        [upstream]
        appcode_env = "TEST_APPCODE"
        timeout = "{timeout}"

        [[channels]]
        name = "sms_code"
        kind = "sms_code"
        url = "{sms_url}"
        method = "POST"
        signature = "【卡池】"
        {sms_code_keys}

        [[channels]]
        name = "voice_notice"
        kind = "voice_notice"
        url = "{voice_url}"
        method = "GET"
        proxy_path = "/chuangxin/yytz"
        {voice_notice_keys}

        [[channels]]
        name = "voice_code"
        kind = "voice_code"
        url = "{voice_code_url}"
        method = "POST"

        [[templates]]
        name = "login_code"
        channel = "sms_code"
        body = "【卡池】你的验证码是：#code#，3分钟内有效！"

        [[clients]]
        name = "ops"
        token_env = "TEST_ADMIN_TOKEN"
        admin = true

        [[clients]]
        name = "shop-backend"
        token_env = "TEST_SHOP_TOKEN"

        [traffic]
        default_limits = {default_limits}

        {extra}
        "#,
        default_limits = options.default_limits,
        db_url = options.database_url.as_deref().unwrap_or(db.url.expose()),
        mode = options.ledger_mode.unwrap_or("enforce"),
        timeout = options.vendor_timeout.unwrap_or("5s"),
        sms_url = vendor_url("/chuangxin/dxjk"),
        voice_url = vendor_url("/chuangxin/yytz"),
        voice_code_url = vendor_url("/chuangxin/yyyzm"),
        extra = options.extra_toml,
        sms_code_keys = options.sms_code_keys,
        voice_notice_keys = options.voice_notice_keys,
        shutdown_grace = if options.server_keys.contains("shutdown_grace") {
            ""
        } else {
            "shutdown_grace = \"10s\""
        },
        server_keys = options.server_keys,
        database_keys = options.database_keys,
        ledger_keys = options.ledger_keys,
        spool_dir = spool.path().display(),
    );
    let env: HashMap<&str, &str> = HashMap::from([
        ("TEST_APPCODE", APPCODE),
        ("TEST_ADMIN_TOKEN", ADMIN_TOKEN),
        ("TEST_SHOP_TOKEN", SHOP_TOKEN),
        ("TEST_WEBHOOK_SECRET", crate::notifiers::WEBHOOK_SECRET),
        ("TEST_METRICS_TOKEN", METRICS_TOKEN),
        // The AccessKey pair the sandbox's Market API accepts, and a wrong secret.
        ("TEST_MARKET_KEY_ID", SANDBOX_ACCESS_KEY_ID),
        ("TEST_MARKET_KEY_SECRET", SANDBOX_ACCESS_KEY_SECRET),
        ("TEST_MARKET_WRONG_SECRET", WRONG_MARKET_SECRET),
    ]);
    let lookup = |key: &str| env.get(key).map(|v| v.to_string());
    let settings =
        load_str("test configuration", &config, &|_| None).expect("test configuration is valid");
    let app = Application::build(settings, &lookup)
        .await
        .expect("the server starts");
    let addr = app.local_addr();
    let ledger = app.ledger().clone();
    let alerts = app.alerts().clone();
    let marketplace = app.marketplace().cloned();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        http: reqwest::Client::new(),
        vendor,
        ledger,
        alerts,
        marketplace,
        db,
        spool,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Registers a package through the API as the admin client.
    pub async fn add_package(&self, channel: &str, units: i64, price: &str) -> Value {
        let response = self
            .post_json_as(
                "/v1/packages",
                ADMIN_TOKEN,
                &json!({ "channel": channel, "units": units, "price": price }),
            )
            .await;
        assert_eq!(response.status(), 201, "registering a package");
        response.json().await.unwrap()
    }

    /// Sends a login code through `POST /v1/messages` as the shop client.
    pub async fn send_login_code(&self) -> reqwest::Response {
        self.send_json(&json!({
            "channel": "sms_code",
            "to": MOBILE,
            "template": "login_code",
            "params": { "code": "482913" }
        }))
        .await
    }

    pub async fn send_json(&self, body: &Value) -> reqwest::Response {
        self.post_json_as("/v1/messages", SHOP_TOKEN, body).await
    }

    /// `POST /v1/messages` as the shop client, with an `Idempotency-Key`: a retry.
    pub async fn send_json_with_idempotency_key(
        &self,
        body: &Value,
        key: &str,
    ) -> reqwest::Response {
        self.request_as(reqwest::Method::POST, "/v1/messages", SHOP_TOKEN)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/messages` as the shop client on a task of its own, which does not borrow
    /// the app: for sends under way while the test does something else (sends more, or
    /// stops the server).
    pub fn spawn_send_json(&self, body: &Value) -> tokio::task::JoinHandle<reqwest::Response> {
        let request = self
            .request_as(reqwest::Method::POST, "/v1/messages", SHOP_TOKEN)
            .json(body);
        tokio::spawn(async move { request.send().await.unwrap() })
    }

    /// A request to `path` as the client holding `token`, still to be given a body and
    /// sent: for tables of requests, and for what the helpers below do not cover.
    pub fn request_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// `GET path` as the client holding `token`.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.request_as(reqwest::Method::GET, path, token)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with no credentials, as probes and readers of public documents ask.
    pub async fn get_without_credentials(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `GET path` as the client holding `token`, which must succeed; its JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let response = self.get_as(path, token).await;
        let status = response.status();
        let body = response.json().await.unwrap();
        assert!(status.is_success(), "GET {path} answered {status}: {body}");
        body
    }

    /// `POST path` with a JSON body as the client holding `token`.
    pub async fn post_json_as(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.request_as(reqwest::Method::POST, path, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A send through the drop-in path `/chuangxin/yytz` as the vendor's samples make
    /// it: `content` and `mobile` in the query, the token where the AppCode was.
    pub async fn send_drop_in(&self, content: &str, token: &str) -> reqwest::Response {
        self.send_drop_in_at("/chuangxin/yytz", content, token)
            .await
    }

    /// [`TestApp::send_drop_in`] through another drop-in path (`proxy_path`).
    pub async fn send_drop_in_at(
        &self,
        path: &str,
        content: &str,
        token: &str,
    ) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .query(&[("content", content), ("mobile", MOBILE)])
            .header("Authorization", format!("APPCODE {token}"))
            .send()
            .await
            .unwrap()
    }

    pub async fn quota(&self, channel: &str) -> Value {
        self.get_json(&format!("/v1/quota/{channel}"), SHOP_TOKEN)
            .await
    }

    /// Stops the server gracefully and waits for it; the database stays for inspection.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Every text column of every table, for scanning what is stored.
    pub async fn stored_text(&self) -> String {
        let mut all = String::new();
        for table in ["packages", "sends", "ledger_entries", "reconciliations"] {
            let rows: Vec<sqlx::any::AnyRow> = sqlx::query(&format!("SELECT * FROM {table}"))
                .fetch_all(self.db.db.pool())
                .await
                .unwrap();
            for row in rows {
                use sqlx::Row;
                for i in 0..row.len() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                        all.push_str(&text);
                        all.push('\n');
                    }
                }
            }
        }
        all
    }
}

/// Sends `request`; its status, and its body as JSON (`Null` if it is none).
pub async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
