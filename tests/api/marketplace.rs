//! The marketplace's own count: the Market API client against the sandbox's simulation of
//! it, signatures checked, on a port of its own per test.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use url::Url;

use tollgate::domain::{ProductCode, VendorMethod};
use tollgate::marketplace::sandbox::{SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET};
use tollgate::marketplace::{
    AccessKey, MarketClient, MarketClientConfig, MarketError, Reading, RpcRequest,
    MARKET_API_VERSION,
};
use tollgate::secret::Secret;
use tollgate::upstream::format::VendorFormat;
use tollgate::upstream::sandbox::{self, SandboxAccount, SandboxConfig, SandboxHandle};
use tollgate::upstream::{VendorCall, VendorClient, VendorMessage};

use crate::helpers::{Backend, TestDb};

const APPCODE: &str = "marketplace-test-appcode";
const PRODUCT: &str = "cmapi00037415";
const MOBILE: &str = "13800138000";

async fn spawn_sandbox(quota: u64) -> SandboxHandle {
    crate::helpers::init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    sandbox::spawn(
        listener,
        SandboxConfig {
            appcodes: vec![SandboxAccount {
                appcode: Secret::new(APPCODE),
                quota,
                product_code: Some(PRODUCT.to_owned()),
            }],
            latency: Duration::ZERO,
            ..SandboxConfig::default()
        },
    )
    .await
}

fn market_client(sandbox: &SandboxHandle, key: AccessKey) -> MarketClient {
    MarketClient::new(MarketClientConfig {
        endpoint: Url::parse(&sandbox.url("/")).unwrap(),
        access_key: key,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn product() -> ProductCode {
    ProductCode::parse(PRODUCT).unwrap()
}

/// Calls the sandbox vendor the way a send does, `content` on the voice notice path.
async fn send_through_vendor(sandbox: &SandboxHandle, path: &str, content: &str) {
    let vendor = VendorClient::new(Duration::from_secs(5)).unwrap();
    let appcode = Secret::new(APPCODE);
    vendor
        .call(VendorCall {
            format: &VendorFormat::Kapool,
            url: &sandbox.url(path),
            method: VendorMethod::Get,
            appcode: &appcode,
            mobile: MOBILE,
            message: VendorMessage::Text(content),
        })
        .await;
}

#[tokio::test]
async fn the_right_key_reads_the_figures_of_the_sandbox_account_after_billing() {
    let sandbox = spawn_sandbox(100).await;
    for _ in 0..3 {
        send_through_vendor(&sandbox, "/chuangxin/yytz", "您的快递已送达").await;
    }
    // An SMS without its 【signature】 is refused by the backend, and still billed.
    send_through_vendor(&sandbox, "/chuangxin/dxjk", "no signature").await;
    sandbox.add_quota(APPCODE, 50);
    let client = market_client(
        &sandbox,
        AccessKey::new(SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET),
    );

    let metering = client.describe_api_metering(&product()).await.unwrap();

    assert_eq!(sandbox.remaining(APPCODE), Some(146));
    let [row] = metering.rows.as_slice() else {
        panic!("one row expected: {metering:?}");
    };
    assert_eq!(row.product_code, PRODUCT);
    assert_eq!(row.total_quota, 146, "what is left, as the sample reads");
    assert_eq!(row.total_usage, 4, "every billed call");
    assert_eq!(
        row.total_capacity,
        Some(150),
        "the quota and the package added"
    );
    assert_eq!(row.remaining().reading, Reading::QuotaIsRemaining);
    assert!(metering.confirmed());
    assert_eq!(metering.remaining(), 146);
    assert!(!metering.request_ids.is_empty());
}

#[tokio::test]
async fn a_wrong_secret_fails_clearly_and_names_no_secret() {
    let logs = crate::helpers::capture_logs();
    let sandbox = spawn_sandbox(100).await;
    let client = market_client(
        &sandbox,
        AccessKey::new(SANDBOX_ACCESS_KEY_ID, "a-wrong-secret-value"),
    );

    let err = client.describe_api_metering(&product()).await.unwrap_err();

    assert!(matches!(err, MarketError::WrongSecret { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("the marketplace refused the request signature (SignatureDoesNotMatch): the AccessKey secret is not the one of this AccessKey ID"),
        "{message}"
    );
    let logged = logs
        .map(|buffer| String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned())
        .unwrap_or_default();
    // The capture works when this test has its process to itself (as under nextest).
    assert!(
        logged.is_empty() || logged.contains("SignatureDoesNotMatch"),
        "logs captured nothing useful"
    );
    for (what, text) in [
        ("the error", format!("{message} {err:?}")),
        ("the logs", logged),
    ] {
        assert!(
            !text.contains(SANDBOX_ACCESS_KEY_ID),
            "AccessKey ID in {what}: {text}"
        );
        assert!(
            !text.contains("a-wrong-secret-value"),
            "secret in {what}: {text}"
        );
        assert!(
            !text.contains("Signature="),
            "signed query in {what}: {text}"
        );
    }
    assert_eq!(sandbox.remaining(APPCODE), Some(100));
}

#[tokio::test]
async fn an_unknown_access_key_id_fails_clearly() {
    let sandbox = spawn_sandbox(100).await;
    let client = market_client(
        &sandbox,
        AccessKey::new("LTAI5tUnknownKeyId", SANDBOX_ACCESS_KEY_SECRET),
    );

    let err = client.describe_api_metering(&product()).await.unwrap_err();

    assert!(
        matches!(err, MarketError::UnknownAccessKeyId { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("does not know this AccessKey ID (InvalidAccessKeyId.NotFound)"),
        "{message}"
    );
    assert!(!message.contains("LTAI5tUnknownKeyId"), "{message}");
}

#[tokio::test]
async fn a_reused_nonce_is_refused() {
    let sandbox = spawn_sandbox(100).await;
    let key = AccessKey::new(SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET);
    let query = RpcRequest::new("DescribeApiMetering", MARKET_API_VERSION)
        .parameter("pageNum", "1")
        .parameter("productCode", PRODUCT)
        .signed_query(&key, Utc::now(), "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf");
    let url = sandbox.url(&format!("/?{query}"));
    let http = reqwest::Client::new();

    let first = http.get(&url).send().await.unwrap();
    let replayed = http.get(&url).send().await.unwrap();

    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["Success"], true);
    assert_eq!(first["Result"][0]["TotalQuota"], 100);
    assert_eq!(replayed.status(), 400);
    let replayed: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(replayed["Code"], "SignatureNonceUsed");
    assert_eq!(replayed["HostId"], "market.aliyuncs.com");
    assert!(replayed["RequestId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn the_vendor_still_answers_at_the_root_without_an_action() {
    let sandbox = spawn_sandbox(100).await;

    let response = reqwest::Client::new()
        .get(sandbox.url(&format!("/?content=hi&mobile={MOBILE}")))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["x-ca-error-message"],
        "Invalid AppCode `not exists`"
    );
}

#[tokio::test]
async fn the_sandbox_upstream_command_serves_the_market_api_with_the_configured_key() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "sandbox-upstream",
            "--listen",
            "127.0.0.1:0",
            "--quota",
            "42",
            "--product-code",
            "cmapi12345678",
        ])
        .env("TOLLGATE_SANDBOX_ACCESS_KEY_ID", "demo-key-id")
        .env("TOLLGATE_SANDBOX_ACCESS_KEY_SECRET", "demo-key-secret")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the sandbox starts within 30 s")
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("sandbox vendor listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    let client = |secret: &str| {
        MarketClient::new(MarketClientConfig {
            endpoint: Url::parse(&addr).unwrap(),
            access_key: AccessKey::new("demo-key-id", secret),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    };
    let code = ProductCode::parse("cmapi12345678").unwrap();

    let metering = client("demo-key-secret")
        .describe_api_metering(&code)
        .await
        .unwrap();
    let refused = client(SANDBOX_ACCESS_KEY_SECRET)
        .describe_api_metering(&code)
        .await
        .unwrap_err();

    assert_eq!(metering.remaining(), 42);
    assert_eq!(metering.rows[0].total_usage, 0);
    assert!(
        matches!(refused, MarketError::WrongSecret { .. }),
        "{refused:?}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn config_check_names_the_unset_access_key_variables() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [database]
            url = "{}"

            [marketplace]
            access_key_id_env = "TEST_MARKET_KEY_ID"
            access_key_secret_env = "TEST_MARKET_KEY_SECRET"

            [[channels]]
            name = "voice_notice"
            kind = "voice_notice"
            url = "https://yytz.market.alicloudapi.com/chuangxin/yytz"
            product_code = "{PRODUCT}"
            "#,
            db.url.expose()
        ),
    )
    .unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .env_remove("DATABASE_URL")
        .env_remove("TEST_MARKET_KEY_ID")
        .env_remove("TEST_MARKET_KEY_SECRET")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "[marketplace]: environment variable TEST_MARKET_KEY_ID (the marketplace AccessKey ID) is not set",
        "[marketplace]: environment variable TEST_MARKET_KEY_SECRET (the marketplace AccessKey secret) is not set",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    // A table with a channel to read is acted upon: no warning about it.
    assert!(!text.contains("warning: [marketplace]"), "{text}");
}
