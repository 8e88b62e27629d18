//! The vendor at its worst (SPEC §3's answer table under load): failures, calls that
//! never answer, rejections, jitter, dropped connections, slow answers, the vendor's own
//! quota running out mid-burst, throttling. Each test ends with the ledger checked
//! against what the vendor received (`ledger_check`): every billed answer charged once,
//! nothing charged that the vendor did not bill (uncertain sends aside, flagged),
//! nothing oversold.

use std::time::Duration;

use serde_json::{json, Value};
use tollgate::secret::Secret;
use tollgate::upstream::sandbox::{self, SandboxConfig, SandboxHandle};

use crate::app::{spawn_app_with, AppOptions, TestApp, APPCODE, SHOP_TOKEN};
use crate::helpers::Backend;
use crate::ledger_check::{check_ledger_against_vendor, VendorSaw};
use crate::on_both_backends;
use crate::vendor::Reply;

on_both_backends!(
    a_burst_through_failures_hangs_rejections_and_jitter_charges_what_the_vendor_billed,
    the_vendors_quota_running_out_mid_burst_charges_only_what_it_took,
    a_throttling_vendor_gets_429s_and_charges_nothing_for_them,
    timeouts_5xx_dropped_connections_and_slow_answers_are_charged_as_the_vendor_billed,
);

/// `[upstream] timeout` in these tests: short, so that the calls the vendor holds end
/// quickly, and far above the injected latency of the answers that must arrive.
const VENDOR_TIMEOUT: Duration = Duration::from_secs(1);

/// A distinct valid mobile number per send, so that no per-number limit is what a test
/// meets.
pub fn mobile(i: usize) -> String {
    format!("1391{:07}", i % 10_000_000)
}

/// A voice notice (one unit, class `normal`) to `mobile(i)`, tagged `i` in its text so
/// that what the vendor received can be traced to the client's request.
pub fn voice_notice(i: usize) -> Value {
    json!({ "channel": "voice_notice", "to": mobile(i), "content": format!("您的快递已到，取件码 {i}") })
}

/// Sends `count` voice notices at once; each client's status and body, in order.
pub async fn burst(app: &TestApp, count: usize) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let request = app
                .http
                .post(app.url("/v1/messages"))
                .bearer_auth(SHOP_TOKEN)
                .json(&voice_notice(i));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// The answer's `code` (errors) or `status` (sends that reached the vendor).
fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or(body["status"].as_str())
        .unwrap_or("?")
}

async fn sandbox(config: SandboxConfig) -> SandboxHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sandbox::spawn(listener, config).await
}

async fn app_on_sandbox(backend: Backend, vendor: &SandboxHandle) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            vendor_base: Some(vendor.url("")),
            vendor_timeout: Some("1s"),
            ..AppOptions::default()
        },
    )
    .await
}

/// What each client was told agrees with the send as the ledger recorded it.
async fn answers_match_the_ledger(app: &TestApp, answers: &[(u16, Value)]) {
    for (status, body) in answers {
        let id = body["id"]
            .as_str()
            .or(body["error"]["id"].as_str())
            .unwrap_or_else(|| panic!("a send that reached the vendor has an id: {body}"));
        let stored: Value = app
            .http
            .get(app.url(&format!("/v1/messages/{id}")))
            .bearer_auth(SHOP_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = match stored["status"].as_str().unwrap() {
            "sent" | "vendor_rejected" => 200,
            "vendor_quota_exhausted" => 402,
            "throttled" => 429,
            "auth_failed" | "upstream_error" => 502,
            "uncertain" => 504,
            other => panic!("{id} is {other}"),
        };
        assert_eq!(*status, expected, "{id}: told {body}, recorded {stored}");
        let charged = body["charged"]
            .as_bool()
            .or(body["error"]["charged"].as_bool())
            .unwrap();
        assert_eq!(
            charged,
            stored["charged"].as_bool().unwrap(),
            "{id}: the client is told what was charged"
        );
    }
}

async fn a_burst_through_failures_hangs_rejections_and_jitter_charges_what_the_vendor_billed(
    backend: Backend,
) {
    let vendor = sandbox(SandboxConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(40),
        failure_rate: 0.15,
        timeout_rate: 0.1,
        reject_rate: 0.15,
        ..SandboxConfig::one_account(Secret::new(APPCODE), 1_000)
    })
    .await;
    let mut app = app_on_sandbox(backend, &vendor).await;
    app.add_package("voice_notice", 200, "20.00").await;

    let answers = burst(&app, 120).await;

    let stats = vendor.stats();
    assert_eq!(stats.requests, 120, "every send reached the vendor once");
    assert!(
        stats.injected_failures > 0 && stats.injected_timeouts > 0 && stats.rejections > 0,
        "the faults happened: {stats:?}"
    );
    answers_match_the_ledger(&app, &answers).await;
    let check = check_ledger_against_vendor(app.ledger.db(), &VendorSaw::sandbox(&stats), 0).await;
    // The vendor's bill is the ledger's: successes, rejections and the calls it never
    // answered, each one unit.
    assert_eq!(stats.accounts[0].billed as i64, check.charged_units);
    assert_eq!(
        check.count("upstream_error") as u64,
        stats.injected_failures
    );
    app.stop().await;
    vendor.shutdown().await;
}

async fn the_vendors_quota_running_out_mid_burst_charges_only_what_it_took(backend: Backend) {
    // The ledger believes in 50 units; the vendor's account has 10 left.
    let vendor = sandbox(SandboxConfig::one_account(Secret::new(APPCODE), 10)).await;
    let mut app = app_on_sandbox(backend, &vendor).await;
    app.add_package("voice_notice", 50, "5.00").await;

    let answers = burst(&app, 30).await;

    let stats = vendor.stats();
    assert_eq!(stats.successes, 10, "{stats:?}");
    let mut told = std::collections::BTreeMap::<String, usize>::new();
    for (_, body) in &answers {
        *told.entry(code(body).to_owned()).or_default() += 1;
    }
    assert_eq!(told.get("sent"), Some(&10), "{told:?}");
    assert_eq!(
        told.get("vendor_quota_exhausted").unwrap_or(&0)
            + told.get("quota_exhausted").unwrap_or(&0),
        20,
        "the rest are refused, by the vendor or (once it said so) locally: {told:?}"
    );
    // Local refusals never reached the vendor and left no send behind.
    let reached: Vec<_> = answers
        .iter()
        .filter(|(_, body)| code(body) != "quota_exhausted")
        .cloned()
        .collect();
    assert_eq!(reached.len() as u64, stats.requests);
    answers_match_the_ledger(&app, &reached).await;
    let check = check_ledger_against_vendor(app.ledger.db(), &VendorSaw::sandbox(&stats), 0).await;
    assert_eq!(check.charged_units, 10);

    // The channel is exhausted everywhere now: the next send is refused locally.
    let quota = app.quota("voice_notice").await;
    assert_eq!(quota["remaining"], 0, "{quota}");
    assert_eq!(
        quota["reconciled"], -40,
        "the 40 units the vendor does not have are written off"
    );
    let (status, body) = burst(&app, 1).await.remove(0);
    assert_eq!((status, code(&body)), (402, "quota_exhausted"));
    assert_eq!(vendor.stats().requests, stats.requests, "not sent");
    app.stop().await;
    vendor.shutdown().await;
}

async fn a_throttling_vendor_gets_429s_and_charges_nothing_for_them(backend: Backend) {
    let vendor = sandbox(SandboxConfig {
        throttle_per_second: Some(5),
        ..SandboxConfig::one_account(Secret::new(APPCODE), 1_000)
    })
    .await;
    let mut app = app_on_sandbox(backend, &vendor).await;
    app.add_package("voice_notice", 100, "10.00").await;

    let answers = burst(&app, 40).await;

    let stats = vendor.stats();
    assert!(stats.throttled > 0, "{stats:?}");
    assert_eq!(stats.throttled + stats.successes, 40);
    for (status, body) in &answers {
        assert!(
            (*status, code(body)) == (200, "sent") || (*status, code(body)) == (429, "throttled"),
            "{status} {body}"
        );
    }
    answers_match_the_ledger(&app, &answers).await;
    let check = check_ledger_against_vendor(app.ledger.db(), &VendorSaw::sandbox(&stats), 0).await;
    assert_eq!(check.count("throttled") as u64, stats.throttled);
    assert_eq!(check.charged_units as u64, stats.successes);
    app.stop().await;
    vendor.shutdown().await;
}

async fn timeouts_5xx_dropped_connections_and_slow_answers_are_charged_as_the_vendor_billed(
    backend: Backend,
) {
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            vendor_timeout: Some("1s"),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("voice_notice", 100, "10.00").await;
    // Each fault in turn, ten sends at once against each.
    let phases = [
        (
            Reply::success()
                .numbered()
                .delayed(Duration::from_millis(300)),
            200,
            "sent",
        ),
        (
            Reply::gateway_error(500, "Internal Error").numbered(),
            502,
            "upstream_error",
        ),
        (
            Reply::gateway_error(503, "Service Unavailable").numbered(),
            502,
            "upstream_error",
        ),
        (Reply::dropped(), 504, "upstream_timeout"),
        (
            Reply::success().numbered().delayed(2 * VENDOR_TIMEOUT),
            504,
            "upstream_timeout",
        ),
        (
            Reply::success()
                .numbered()
                .with_body(r#"{"ReturnStatus":"Faild","Message":"提交失败","TaskID":{n}}"#),
            200,
            "vendor_rejected",
        ),
    ];
    let mut all = Vec::new();
    for (reply, status, expected) in phases {
        app.vendor.answer_with(reply);
        let answers = burst(&app, 10).await;
        for (got, body) in &answers {
            assert_eq!((*got, code(body)), (status, expected), "{body}");
        }
        all.extend(answers);
    }

    assert_eq!(app.vendor.calls(), 60, "every send reached the vendor once");
    answers_match_the_ledger(&app, &all).await;
    let saw = VendorSaw::stand_in(&app.vendor, VENDOR_TIMEOUT);
    let check = check_ledger_against_vendor(app.ledger.db(), &saw, 0).await;
    assert_eq!(check.uncertain, 20, "the dropped and the unanswered calls");
    assert_eq!(check.charged_units, 40);
    app.stop().await;
}
