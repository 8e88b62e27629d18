//! `GET /metrics`: the names of SPEC §9, read from the send path and the ledger.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use tollgate::domain::LedgerMode;
use tollgate::domain::Outcome;
use tollgate::ledger::{Ledger, Settlement, UpstreamRecord};
use tollgate::metrics::names;

use crate::app::{spawn_app, TestApp, ADMIN_TOKEN, MOBILE};
use crate::helpers::{channel, request, reserved, Backend};
use crate::on_both_backends;
use crate::vendor::Reply;

/// One scrape, parsed: every sample with its labels.
pub struct Scrape {
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").expect("a label pair");
                    (key.to_owned(), value.trim_end_matches('"').to_owned())
                })
                .collect();
            let value = value.parse().expect("a numeric sample value");
            samples.push((name.to_owned(), labels, value));
        }
        Scrape { text, samples }
    }

    /// The value of the one series named `name` carrying every label of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, value)| *value)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}{labels:?} matches several series"
        );
        matching.first().copied()
    }

    pub fn series_named(&self, name: &str) -> usize {
        self.samples.iter().filter(|(n, _, _)| n == name).count()
    }
}

pub async fn scrape(app: &TestApp) -> Scrape {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /metrics");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(response.text().await.unwrap())
}

/// A package that expires in 30 days, registered through the API.
pub async fn add_expiring_package(app: &TestApp, channel: &str, units: i64, price: &str) -> i64 {
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let response = app.post_json_as("/v1/packages", ADMIN_TOKEN, &json!({ "channel": channel, "units": units, "price": price, "expires_at": expires_at }))
        .await;
    assert_eq!(response.status(), 201, "registering a package");
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_i64().expect("the package has an id")
}

/// Sends of every kind the metrics tell apart: accepted, refused by the vendor, a
/// gateway error, and a request refused before the vendor (invalid number).
pub async fn send_mixed_traffic(app: &TestApp) {
    for _ in 0..3 {
        assert_eq!(app.send_login_code().await.status(), 200);
    }
    app.vendor.answer_with(Reply::success().with_body(
        r#"{"ReturnStatus":"Faild","Message":"sign参数错误","RemainPoint":0,"TaskID":0,"SuccessCounts":0}"#,
    ));
    assert_eq!(app.send_login_code().await.status(), 200);
    app.vendor.answer_with(Reply::gateway_error(
        500,
        "Failed To Invoke Backend Service",
    ));
    assert_eq!(app.send_login_code().await.status(), 502);
    app.vendor.answer_with(Reply::success());
    let invalid = app
        .send_json(&json!({
            "channel": "sms_code", "to": "12345", "template": "login_code",
            "params": { "code": "482913" }
        }))
        .await;
    assert_eq!(invalid.status(), 400);
}

async fn metrics_count_sends_and_read_quota_and_cost_from_the_ledger(backend: Backend) {
    let app = spawn_app(backend).await;
    let package = add_expiring_package(&app, "sms_code", 1000, "45.00").await;
    app.add_package("voice_notice", 10, "1.00").await;

    send_mixed_traffic(&app).await;
    let metrics = scrape(&app).await;

    let sends = |outcome| {
        metrics.value(
            names::SENDS_TOTAL,
            &[
                ("channel", "sms_code"),
                ("outcome", outcome),
                ("class", "critical"),
            ],
        )
    };
    assert_eq!(sends("sent"), Some(3.0));
    assert_eq!(sends("vendor_rejected"), Some(1.0));
    assert_eq!(sends("upstream_error"), Some(1.0));
    assert_eq!(sends("rejected"), Some(1.0));
    assert_eq!(sends("quota_exhausted"), Some(0.0));
    let latency_count = "tollgate_upstream_request_duration_seconds_count";
    assert_eq!(
        metrics.value(latency_count, &[("channel", "sms_code")]),
        Some(5.0)
    );
    // Charged: 3 sent and 1 vendor_rejected, at ¥0.045 a unit.
    let sms = [("channel", "sms_code")];
    assert_eq!(metrics.value(names::BILLED_UNITS_TOTAL, &sms), Some(4.0));
    assert_eq!(metrics.value(names::COST_YUAN_TOTAL, &sms), Some(0.18));
    assert_eq!(
        metrics.value(names::QUOTA_REMAINING_UNITS, &sms),
        Some(996.0)
    );
    assert_eq!(
        metrics.value(names::QUOTA_PURCHASED_UNITS, &sms),
        Some(1000.0)
    );
    assert_eq!(
        metrics.value(names::QUOTA_REMAINING_RATIO, &sms),
        Some(0.996)
    );
    assert!(metrics.value(names::QUOTA_TIME_LEFT_SECONDS, &sms).unwrap() > 0.0);
    // A channel that never charged: counters at 0, and no forecast at all.
    let voice = [("channel", "voice_notice")];
    assert_eq!(metrics.value(names::BILLED_UNITS_TOTAL, &voice), Some(0.0));
    assert_eq!(metrics.value(names::QUOTA_TIME_LEFT_SECONDS, &voice), None);
    assert_eq!(
        metrics.value(names::QUOTA_REMAINING_UNITS, &voice),
        Some(10.0)
    );
    // Only the package with an expiry has an expiry series.
    let expiry = metrics
        .value(
            names::PACKAGE_EXPIRY_TIMESTAMP_SECONDS,
            &[("channel", "sms_code"), ("package", &package.to_string())],
        )
        .expect("the expiring package has a series");
    let in_30_days = (chrono::Utc::now() + chrono::Duration::days(30)).timestamp() as f64;
    assert!((expiry - in_30_days).abs() < 120.0);
    assert_eq!(
        metrics.series_named(names::PACKAGE_EXPIRY_TIMESTAMP_SECONDS),
        1
    );
    assert_eq!(
        metrics.value(names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    // No label value is a number, a message id or error text.
    assert!(!metrics.text.contains(MOBILE));
    assert!(!metrics.text.contains("msg_"));
    assert!(!metrics.text.contains("Failed To Invoke"));
}

async fn a_local_quota_refusal_is_counted_as_quota_exhausted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_package("sms_code", 1, "1.00").await;
    assert_eq!(app.send_login_code().await.status(), 200);

    assert_eq!(app.send_login_code().await.status(), 402);

    let metrics = scrape(&app).await;
    let sms = |outcome| {
        [
            ("channel", "sms_code"),
            ("outcome", outcome),
            ("class", "critical"),
        ]
    };
    assert_eq!(
        metrics.value(names::SENDS_TOTAL, &sms("quota_exhausted")),
        Some(1.0)
    );
    assert_eq!(metrics.value(names::SENDS_TOTAL, &sms("sent")), Some(1.0));
    assert_eq!(
        metrics.value(names::QUOTA_REMAINING_RATIO, &[("channel", "sms_code")]),
        Some(0.0)
    );
}

async fn ledger_metrics_include_what_other_instances_charged(backend: Backend) {
    // Another process on the same database charges 2 units; this one never saw those
    // sends, yet reports them: billed units and cost are the ledger's running totals,
    // the same on every instance and unaffected by any process restarting.
    let app = spawn_app(backend).await;
    app.add_package("sms_code", 100, "10.00").await;
    assert_eq!(app.send_login_code().await.status(), 200);
    let other = Ledger::new(app.db.another_instance().await, LedgerMode::Enforce);
    let reservation = reserved(
        other
            .reserve(&channel("sms_code"), request(2))
            .await
            .unwrap(),
    );
    other
        .settle(
            &reservation,
            Settlement {
                outcome: Outcome::Sent,
                charge: true,
                upstream: UpstreamRecord::default(),
            },
        )
        .await
        .unwrap();

    let metrics = scrape(&app).await;

    let sms = [("channel", "sms_code")];
    assert_eq!(metrics.value(names::BILLED_UNITS_TOTAL, &sms), Some(3.0));
    assert_eq!(metrics.value(names::COST_YUAN_TOTAL, &sms), Some(0.3));
    assert_eq!(
        metrics.value(names::QUOTA_REMAINING_UNITS, &sms),
        Some(97.0)
    );
    // The send counter is this process's own: it saw one send.
    assert_eq!(
        metrics.value(
            names::SENDS_TOTAL,
            &[
                ("channel", "sms_code"),
                ("outcome", "sent"),
                ("class", "critical")
            ]
        ),
        Some(1.0)
    );
}

on_both_backends!(
    metrics_count_sends_and_read_quota_and_cost_from_the_ledger,
    a_local_quota_refusal_is_counted_as_quota_exhausted,
    ledger_metrics_include_what_other_instances_charged,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promtool_accepts_the_real_metrics_output() {
    let app = spawn_app(Backend::Sqlite).await;
    add_expiring_package(&app, "sms_code", 100, "10.00").await;
    send_mixed_traffic(&app).await;
    let metrics = scrape(&app).await;

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus; see .ci/run)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();

    // The linter must find nothing: a parse error, a missing HELP, a counter without
    // _total or a name in other units than the base ones all fail.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let findings: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(findings.is_empty(), "promtool check metrics: {report}");
    assert!(
        matches!(output.status.code(), Some(0) | Some(3)),
        "promtool check metrics exited with {:?}: {report}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scrape_without_the_database_answers_503() {
    let app = spawn_app(Backend::Postgres).await;
    app.add_package("sms_code", 10, "1.00").await;
    app.db.drop_database_now().await;

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();

    assert_eq!(response.status(), 503);
    assert!(!response.text().await.unwrap().contains("tollgate_"));
}
