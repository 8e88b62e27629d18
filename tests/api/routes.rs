//! Routes end to end (SPEC §13): one route `otp` over two code channels, each with its
//! own vendor on loopback (a stand-in scripted per test, or the sandbox vendor with its
//! own quota), on both backends. What fails over and what never does, who is charged,
//! the circuit breaker, idempotency across the route, the per-number limit under a
//! failover, the drop-in path and the failover metrics.

use std::time::Duration;

use serde_json::{json, Value};
use tollgate::metrics::names;
use tollgate::secret::Secret;
use tollgate::upstream::sandbox::{self, SandboxConfig, SandboxHandle};
use tollgate_notify::{EventKind, Severity, Status};

use crate::app::{spawn_app_with, AppOptions, TestApp, ADMIN_TOKEN, APPCODE, MOBILE, SHOP_TOKEN};
use crate::helpers::Backend;
use crate::metrics::scrape;
use crate::notifiers::{verify_webhook, Receiver};
use crate::on_both_backends;
use crate::vendor::{Reply, StandInVendor};

on_both_backends!(
    a_first_vendor_running_out_after_3_sends_moves_the_rest_to_the_second,
    a_500_from_the_first_vendor_fails_over_and_only_the_second_is_charged,
    a_timeout_never_fails_over_and_is_charged_and_flagged_on_the_first,
    a_first_channel_without_local_quota_is_never_called,
    an_open_circuit_skips_the_first_vendor_until_its_probe_succeeds,
    a_retried_idempotency_key_after_a_failover_returns_the_first_answer,
    a_code_under_the_per_number_limit_fails_over_instead_of_answering_429,
    failovers_and_the_channels_a_route_has_left_are_in_the_metrics,
    the_routes_drop_in_path_fails_over_too,
);

/// The route's channels, in its order of preference.
const FIRST: &str = "kapool_sms";
const SECOND: &str = "backup_sms";
const ROUTE: &str = "otp";

/// `[upstream] timeout` in these tests: the stand-in holds a call twice as long.
const VENDOR_TIMEOUT: Duration = Duration::from_secs(1);

/// Two code channels (each with its own `login_code`, as templates are looked up by
/// name on each channel) and the route `otp` over them, first `kapool_sms`.
/// `first_keys` are extra keys of the first channel's table (its circuit).
fn route_toml(first_url: &str, second_url: &str, first_keys: &str) -> String {
    format!(
        r#"
        [[channels]]
        name = "{FIRST}"
        kind = "sms_code"
        url = "{first_url}"
        method = "POST"
        signature = "【卡池】"
        {first_keys}

        [[channels]]
        name = "{SECOND}"
        kind = "sms_code"
        url = "{second_url}"
        method = "POST"
        signature = "【卡池】"

        [[templates]]
        name = "login_code"
        channel = "{FIRST}"
        body = "【卡池】你的验证码是：#code#，3分钟内有效！"

        [[templates]]
        name = "login_code"
        channel = "{SECOND}"
        body = "【卡池】验证码#code#，5分钟内有效"

        [[routes]]
        name = "{ROUTE}"
        channels = ["{FIRST}", "{SECOND}"]
        strategy = "priority"
        proxy_path = "/otp"
        "#
    )
}

/// The app with the route over two stand-in vendors of its own, both answering success
/// until a test scripts otherwise; each channel has a package of 10 units.
struct RouteApp {
    app: TestApp,
    first: StandInVendor,
    second: StandInVendor,
}

/// How a test sets the app up besides the route.
#[derive(Default)]
struct RouteOptions {
    /// Extra keys of the first channel (`circuit_failures`, `circuit_cooldown`).
    first_keys: &'static str,
    /// More configuration (a notifier).
    extra_toml: String,
    /// SPEC §12's built-in per-number limits.
    default_limits: bool,
}

async fn spawn_route_app(backend: Backend, options: RouteOptions) -> RouteApp {
    let first = StandInVendor::start().await;
    let second = StandInVendor::start().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: format!(
                "{}\n{}",
                route_toml(
                    &first.url("/chuangxin/dxjk"),
                    &second.url("/chuangxin/dxjk"),
                    options.first_keys
                ),
                options.extra_toml
            ),
            vendor_timeout: Some("1s"),
            default_limits: options.default_limits,
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package(FIRST, 10, "1.00").await;
    app.add_package(SECOND, 10, "2.00").await;
    RouteApp { app, first, second }
}

/// A login code to the route.
fn code_to_route(code: &str) -> Value {
    json!({ "channel": ROUTE, "to": MOBILE, "template": "login_code", "params": { "code": code } })
}

/// Sends a login code through the route; the status and the JSON body.
async fn send_code(app: &TestApp, code: &str) -> (u16, Value) {
    let response = app.send_json(&code_to_route(code)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `attempts` as (channel, status) pairs, from an answer or an error's detail.
fn attempts(body: &Value) -> Vec<(String, String)> {
    body["attempts"]
        .as_array()
        .or(body["error"]["attempts"].as_array())
        .unwrap_or_else(|| panic!("no attempts in {body}"))
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap().to_owned(),
                a["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn tried(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(c, s)| ((*c).to_owned(), (*s).to_owned()))
        .collect()
}

/// (used, remaining) of a channel, from `GET /v1/quota/{channel}`.
async fn used_and_remaining(app: &TestApp, channel: &str) -> (i64, i64) {
    let quota = app.quota(channel).await;
    (
        quota["used"].as_i64().unwrap(),
        quota["remaining"].as_i64().unwrap(),
    )
}

async fn sandbox_with_quota(quota: u64) -> SandboxHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sandbox::spawn(
        listener,
        SandboxConfig {
            latency: Duration::ZERO,
            ..SandboxConfig::one_account(Secret::new(APPCODE), quota)
        },
    )
    .await
}

async fn a_first_vendor_running_out_after_3_sends_moves_the_rest_to_the_second(backend: Backend) {
    // The ledger believes the first channel has 10 units; its vendor has 3 left and
    // answers 403 Quota Exhausted after them. Built-in alerts go to the webhook.
    let first = sandbox_with_quota(3).await;
    let second = sandbox_with_quota(100).await;
    let receiver = Receiver::start().await;
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: format!(
                "{}\n[[notifiers]]\nname = \"ops-hook\"\ntype = \"webhook\"\nurl = \"{}\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\n",
                route_toml(
                    &first.url("/chuangxin/dxjk"),
                    &second.url("/chuangxin/dxjk"),
                    ""
                ),
                receiver.url("/hook")
            ),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package(FIRST, 10, "1.00").await;
    app.add_package(SECOND, 100, "20.00").await;

    let mut answers = Vec::new();
    for i in 0..7 {
        answers.push(send_code(&app, &format!("10{i:02}")).await);
    }

    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "send {i}: {body}");
        assert_eq!(body["status"], "sent", "send {i}: {body}");
        assert_eq!(body["route"], ROUTE, "send {i}: {body}");
        let carrier = if i < 3 { FIRST } else { SECOND };
        assert_eq!(body["channel"], carrier, "send {i}: {body}");
    }
    assert_eq!(attempts(&answers[0].1), tried(&[(FIRST, "sent")]));
    assert_eq!(
        attempts(&answers[3].1),
        tried(&[(FIRST, "vendor_quota_exhausted"), (SECOND, "sent")]),
        "the send that met the vendor's Quota Exhausted"
    );
    for (_, body) in &answers[4..] {
        assert_eq!(
            attempts(body),
            tried(&[(FIRST, "quota_exhausted"), (SECOND, "sent")]),
            "once the channel is marked exhausted it is refused locally: {body}"
        );
    }
    // The vendors' own counts: the first took 3 and refused 1; the second took 4.
    let (first_saw, second_saw) = (first.stats(), second.stats());
    assert_eq!(
        (
            first_saw.requests,
            first_saw.successes,
            first_saw.quota_exhausted
        ),
        (4, 3, 1),
        "{first_saw:?}"
    );
    assert_eq!(
        (second_saw.requests, second_saw.successes),
        (4, 4),
        "{second_saw:?}"
    );
    // Each charged only where it went; the first is marked exhausted.
    let first_quota = app.quota(FIRST).await;
    assert_eq!(
        (
            &first_quota["used"],
            &first_quota["remaining"],
            &first_quota["reconciled"]
        ),
        (&json!(3), &json!(0), &json!(-7)),
        "{first_quota}"
    );
    assert_eq!(used_and_remaining(&app, SECOND).await, (4, 96));
    // Its critical alert, once.
    let received = receiver.wait_for(1).await;
    let exhausted: Vec<_> = received
        .iter()
        .map(verify_webhook)
        .filter(|e| e.event == EventKind::QuotaExhausted && e.channel.as_deref() == Some(FIRST))
        .collect();
    assert_eq!(exhausted.len(), 1, "{received:?}");
    assert_eq!(
        (exhausted[0].severity, exhausted[0].status),
        (Severity::Critical, Status::Firing)
    );
    assert!(
        !received
            .iter()
            .map(verify_webhook)
            .any(|e| e.channel.as_deref() == Some(SECOND)),
        "the second channel has units left: no alert"
    );
    let alerts: Value = app.get_json("/v1/alerts", SHOP_TOKEN).await;
    let states: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "quota.exhausted" && a["channel"] == FIRST)
        .collect();
    assert_eq!(states.len(), 1, "{alerts}");
    assert_eq!(states[0]["state"], "firing");
    app.stop().await;
    first.shutdown().await;
    second.shutdown().await;
}

async fn a_500_from_the_first_vendor_fails_over_and_only_the_second_is_charged(backend: Backend) {
    let mut routed = spawn_route_app(backend, RouteOptions::default()).await;
    routed
        .first
        .answer_with(Reply::gateway_error(500, "Internal Error"));

    let (status, body) = send_code(&routed.app, "4821").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["channel"], &body["route"]),
        (&json!("sent"), &json!(SECOND), &json!(ROUTE))
    );
    assert_eq!(
        attempts(&body),
        tried(&[(FIRST, "upstream_error"), (SECOND, "sent")])
    );
    assert_eq!(body["charged"], true);
    assert_eq!((routed.first.calls(), routed.second.calls()), (1, 1));
    // The second vendor got the second channel's own template.
    let received = &routed.second.received()[0];
    assert_eq!(received.query["content"], "【卡池】验证码4821，5分钟内有效");
    assert_eq!(received.query["mobile"], MOBILE);
    assert_eq!(used_and_remaining(&routed.app, FIRST).await, (0, 10));
    assert_eq!(used_and_remaining(&routed.app, SECOND).await, (1, 9));
    // The record shows the same: carried and charged by the second, after the first.
    let id = body["id"].as_str().unwrap();
    let record = routed
        .app
        .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
        .await;
    assert_eq!(record["channel"], SECOND);
    assert_eq!(record["route"], ROUTE);
    assert_eq!(attempts(&record), attempts(&body));
    routed.app.stop().await;
}

async fn a_timeout_never_fails_over_and_is_charged_and_flagged_on_the_first(backend: Backend) {
    let mut routed = spawn_route_app(backend, RouteOptions::default()).await;
    routed
        .first
        .answer_with(Reply::success().delayed(2 * VENDOR_TIMEOUT));

    let (status, body) = send_code(&routed.app, "5930").await;

    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert_eq!(body["error"]["charged"], true);
    assert_eq!(attempts(&body), tried(&[(FIRST, "uncertain")]));
    assert_eq!(routed.second.calls(), 0, "the message may have gone out");
    assert_eq!(routed.first.calls(), 1);
    assert_eq!(used_and_remaining(&routed.app, FIRST).await, (1, 9));
    assert_eq!(used_and_remaining(&routed.app, SECOND).await, (0, 10));
    let id = body["error"]["id"].as_str().unwrap();
    let record = routed
        .app
        .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
        .await;
    assert_eq!(
        (
            &record["channel"],
            &record["status"],
            &record["needs_reconciliation"]
        ),
        (&json!(FIRST), &json!("uncertain"), &json!(true))
    );
    assert_eq!(record["route"], ROUTE);
    routed.app.stop().await;
}

async fn a_first_channel_without_local_quota_is_never_called(backend: Backend) {
    let mut routed = spawn_route_app(backend, RouteOptions::default()).await;
    let reconciled = routed
        .app
        .post_json_as(
            "/v1/reconciliations",
            ADMIN_TOKEN,
            &json!({ "channel": FIRST, "remaining": 0, "note": "vendor console shows 0" }),
        )
        .await;
    assert!(reconciled.status().is_success(), "{}", reconciled.status());
    assert_eq!(used_and_remaining(&routed.app, FIRST).await, (0, 0));

    let (status, body) = send_code(&routed.app, "7002").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channel"], SECOND);
    assert_eq!(
        attempts(&body),
        tried(&[(FIRST, "quota_exhausted"), (SECOND, "sent")])
    );
    assert_eq!(routed.first.calls(), 0, "refused before its vendor");
    assert_eq!(routed.second.calls(), 1);
    assert_eq!(used_and_remaining(&routed.app, SECOND).await, (1, 9));
    routed.app.stop().await;
}

async fn an_open_circuit_skips_the_first_vendor_until_its_probe_succeeds(backend: Backend) {
    let mut routed = spawn_route_app(
        backend,
        RouteOptions {
            first_keys: "circuit_failures = 2\ncircuit_cooldown = \"1s\"",
            ..RouteOptions::default()
        },
    )
    .await;
    let app = &routed.app;
    // The second channel carries every send while the first is skipped.
    app.add_package(SECOND, 200, "40.00").await;
    let circuit_open =
        |scrape: &crate::metrics::Scrape| scrape.value(names::CIRCUIT_OPEN, &[("channel", FIRST)]);
    assert_eq!(circuit_open(&scrape(app).await), Some(0.0));
    routed
        .first
        .answer_with(Reply::gateway_error(503, "Service Unavailable"));

    // Two failures in a row open the first channel's circuit.
    for code in ["1001", "1002"] {
        let (status, body) = send_code(app, code).await;
        assert_eq!((status, &body["channel"]), (200, &json!(SECOND)), "{body}");
        assert_eq!(
            attempts(&body),
            tried(&[(FIRST, "upstream_error"), (SECOND, "sent")])
        );
    }
    assert_eq!(routed.first.calls(), 2);
    assert_eq!(circuit_open(&scrape(app).await), Some(1.0));

    // While it is open the first vendor is skipped, not called.
    let (status, body) = send_code(app, "1003").await;
    assert_eq!((status, &body["channel"]), (200, &json!(SECOND)), "{body}");
    assert_eq!(
        attempts(&body),
        tried(&[(FIRST, "circuit_open"), (SECOND, "sent")])
    );
    assert_eq!(routed.first.calls(), 2, "skipped while the circuit is open");

    // The vendor is back. After the cool-down one send probes it, and its success
    // closes the circuit; until then every send is skipped past it.
    routed.first.answer_with(Reply::success());
    let mut probe = None;
    for i in 0..100 {
        let (status, body) = send_code(app, &format!("2{i:03}")).await;
        assert_eq!(status, 200, "{body}");
        if body["channel"] == FIRST {
            probe = Some(body);
            break;
        }
        assert_eq!(
            attempts(&body),
            tried(&[(FIRST, "circuit_open"), (SECOND, "sent")])
        );
        assert_eq!(routed.first.calls(), 2, "no call before the cool-down ends");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = probe.expect("the probe went out within 10 s of a 1 s cool-down");
    assert_eq!(attempts(&probe), tried(&[(FIRST, "sent")]));
    assert_eq!(routed.first.calls(), 3, "one probe");
    assert_eq!(circuit_open(&scrape(app).await), Some(0.0));
    // Closed again: the next send goes to the first vendor at once.
    let (_, body) = send_code(app, "3001").await;
    assert_eq!(body["channel"], FIRST, "{body}");
    assert_eq!(routed.first.calls(), 4);
    routed.app.stop().await;
}

async fn a_retried_idempotency_key_after_a_failover_returns_the_first_answer(backend: Backend) {
    let mut routed = spawn_route_app(backend, RouteOptions::default()).await;
    routed
        .first
        .answer_with(Reply::gateway_error(500, "Internal Error"));
    let send = || {
        routed
            .app
            .http
            .post(routed.app.url("/v1/messages"))
            .bearer_auth(SHOP_TOKEN)
            .header("Idempotency-Key", "signup-route-42")
            .json(&code_to_route("6114"))
            .send()
    };
    let first_answer: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first_answer["channel"], SECOND, "{first_answer}");

    // The first vendor is well again: a retry that went out anew would go there.
    routed.first.answer_with(Reply::success());
    let again = send().await.unwrap();

    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    for field in [
        "id", "channel", "route", "status", "charged", "cost", "attempts",
    ] {
        assert_eq!(again[field], first_answer[field], "{field}: {again}");
    }
    assert_eq!(
        (routed.first.calls(), routed.second.calls()),
        (1, 1),
        "no vendor was called again"
    );
    assert_eq!(used_and_remaining(&routed.app, FIRST).await, (0, 10));
    assert_eq!(used_and_remaining(&routed.app, SECOND).await, (1, 9));
    routed.app.stop().await;
}

async fn a_code_under_the_per_number_limit_fails_over_instead_of_answering_429(backend: Backend) {
    // SPEC §12's built-in limits are on: one code a minute to a number. The attempt on
    // the first vendor delivered nothing, so it must not use up the number's minute.
    let mut routed = spawn_route_app(
        backend,
        RouteOptions {
            default_limits: true,
            ..RouteOptions::default()
        },
    )
    .await;
    routed
        .first
        .answer_with(Reply::gateway_error(500, "Internal Error"));

    let (status, body) = send_code(&routed.app, "8842").await;

    assert_eq!(status, 200, "a critical send fails over: {body}");
    assert_eq!(body["class"], "critical");
    assert_eq!(body["channel"], SECOND);
    assert_eq!(
        attempts(&body),
        tried(&[(FIRST, "upstream_error"), (SECOND, "sent")])
    );
    assert_eq!((routed.first.calls(), routed.second.calls()), (1, 1));
    // The limit is on and counts the send that went out: the next code to the number
    // within the minute is refused, before any vendor.
    let (status, body) = send_code(&routed.app, "8843").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!((routed.first.calls(), routed.second.calls()), (1, 1));
    routed.app.stop().await;
}

async fn failovers_and_the_channels_a_route_has_left_are_in_the_metrics(backend: Backend) {
    let mut routed = spawn_route_app(backend, RouteOptions::default()).await;
    let failovers = |scrape: &crate::metrics::Scrape, from: &str, to: &str, reason: &str| {
        scrape.value(
            names::ROUTE_FAILOVERS_TOTAL,
            &[
                ("route", ROUTE),
                ("from", from),
                ("to", to),
                ("reason", reason),
            ],
        )
    };
    let before = scrape(&routed.app).await;
    assert_eq!(
        failovers(&before, FIRST, SECOND, "upstream_error"),
        Some(0.0)
    );
    let route = [("route", ROUTE)];
    assert_eq!(before.value(names::ROUTE_CHANNELS, &route), Some(2.0));
    assert_eq!(
        before.value(names::ROUTE_CHANNELS_AVAILABLE, &route),
        Some(2.0)
    );

    routed
        .first
        .answer_with(Reply::gateway_error(500, "Internal Error"));
    let (status, body) = send_code(&routed.app, "9051").await;
    assert_eq!(status, 200, "{body}");

    let after = scrape(&routed.app).await;
    assert_eq!(
        failovers(&after, FIRST, SECOND, "upstream_error"),
        Some(1.0)
    );
    for reason in ["vendor_quota_exhausted", "quota_exhausted", "circuit_open"] {
        assert_eq!(
            failovers(&after, FIRST, SECOND, reason),
            Some(0.0),
            "{reason}"
        );
    }
    assert_eq!(
        failovers(&after, SECOND, FIRST, "upstream_error"),
        Some(0.0)
    );
    // The first channel runs dry: the route has one channel left.
    routed
        .app
        .post_json_as(
            "/v1/reconciliations",
            ADMIN_TOKEN,
            &json!({ "channel": FIRST, "remaining": 0, "note": "used up" }),
        )
        .await;
    let dry = scrape(&routed.app).await;
    assert_eq!(dry.value(names::ROUTE_CHANNELS, &route), Some(2.0));
    assert_eq!(
        dry.value(names::ROUTE_CHANNELS_AVAILABLE, &route),
        Some(1.0)
    );
    routed.app.stop().await;
}

async fn the_routes_drop_in_path_fails_over_too(backend: Backend) {
    let mut routed = spawn_route_app(backend, RouteOptions::default()).await;
    routed
        .first
        .answer_with(Reply::gateway_error(500, "Internal Error"));
    routed.second.answer_with(Reply::success().numbered());
    let content = "【卡池】你的验证码是：4417，3分钟内有效！";

    let response = routed
        .app
        .http
        .get(routed.app.url("/otp"))
        .query(&[("content", content), ("mobile", MOBILE)])
        .header("Authorization", format!("APPCODE {SHOP_TOKEN}"))
        .send()
        .await
        .unwrap();

    // The second vendor's answer, mirrored.
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ca-request-id"], "standin-1");
    let id = response.headers()["x-tollgate-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ReturnStatus"], "Success");
    assert_eq!((routed.first.calls(), routed.second.calls()), (1, 1));
    assert_eq!(routed.second.received()[0].query["content"], content);
    let record = routed
        .app
        .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
        .await;
    assert_eq!(
        (&record["channel"], &record["route"], &record["status"]),
        (&json!(SECOND), &json!(ROUTE), &json!("sent"))
    );
    assert_eq!(
        attempts(&record),
        tried(&[(FIRST, "upstream_error"), (SECOND, "sent")])
    );
    assert_eq!(used_and_remaining(&routed.app, FIRST).await, (0, 10));
    assert_eq!(used_and_remaining(&routed.app, SECOND).await, (1, 9));
    routed.app.stop().await;
}
