//! The traffic policy end to end (SPEC §11, §12): send classes, the priority reserve and
//! traffic limits, on the real server with a stand-in vendor, on both backends and
//! across two instances on PostgreSQL.

use std::collections::BTreeMap;

use chrono::{Timelike, Utc};
use serde_json::{json, Value};

use crate::app::*;
use crate::helpers::Backend;
use crate::metrics::scrape;
use crate::on_both_backends;
use crate::vendor::Reply;

on_both_backends!(
    bulk_stops_at_30_normal_at_10_and_codes_take_the_last_unit,
    concurrent_mixed_traffic_never_lets_a_normal_send_take_a_reserved_unit,
    a_second_code_to_a_number_within_a_minute_is_429_and_others_pass,
    a_client_limited_to_5_an_hour_is_refused_its_6th_send,
    a_send_that_was_not_charged_gives_its_count_back,
    a_client_budget_stops_the_sends_once_it_is_spent,
    a_client_cannot_raise_the_class_of_its_own_send,
    every_answer_and_record_names_the_class_of_its_send,
    the_drop_in_proxy_answers_a_reserved_refusal_as_the_vendors_quota_exhausted,
);

/// The shop's templates on `sms_code`: codes (critical, the kind's default), order
/// notices (normal) and a campaign (bulk).
const SHOP_TEMPLATES: &str = r#"
    [[templates]]
    name = "order_notice"
    channel = "sms_code"
    class = "normal"
    body = "【卡池】您的订单#order#已发货"

    [[templates]]
    name = "campaign"
    channel = "sms_code"
    class = "bulk"
    body = "【卡池】双十一全场五折，退订回N"
"#;

/// A marketing window around now, so that bulk sends pass it whenever the test runs.
fn window_around_now() -> String {
    let local = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let hour = |h: u32| format!("{:02}:00", h % 24);
    format!(
        "sending_window = \"{}-{}\"",
        hour(local.hour() + 23),
        hour(local.hour() + 2)
    )
}

/// `sms_code` keeps 10 % for codes and sheds bulk below 30 %.
fn reserved_channel(extra: &str) -> AppOptions {
    AppOptions {
        sms_code_keys: format!(
            "reserve_critical = \"10%\"\nshed_bulk_below = \"30%\"\n\
             proxy_path = \"/chuangxin/dxjk\"\n{}",
            window_around_now()
        ),
        extra_toml: format!("{SHOP_TEMPLATES}\n{extra}"),
        default_limits: true,
        ..AppOptions::default()
    }
}

fn number(i: usize) -> String {
    format!("139{:08}", 10_000_000 + i)
}

fn message(template: &str, to: &str) -> Value {
    let params: BTreeMap<&str, &str> = match template {
        "login_code" => BTreeMap::from([("code", "482913")]),
        "order_notice" => BTreeMap::from([("order", "A1024")]),
        _ => BTreeMap::new(),
    };
    json!({ "channel": "sms_code", "to": to, "template": template, "params": params })
}

/// Sends as the shop client: (HTTP status, body, Retry-After).
async fn send(app: &TestApp, template: &str, to: &str) -> (u16, Value, Option<String>) {
    send_as(app, SHOP_TOKEN, template, to).await
}

async fn send_as(
    app: &TestApp,
    token: &str,
    template: &str,
    to: &str,
) -> (u16, Value, Option<String>) {
    let response = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(token)
        .json(&message(template, to))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), retry_after)
}

/// Sends `template` to fresh numbers (from `first`) until one is refused; returns how
/// many went out and the refusal.
async fn send_until_refused(app: &TestApp, template: &str, first: usize) -> (usize, u16, Value) {
    for i in 0..1000 {
        let (status, body, _) = send(app, template, &number(first + i)).await;
        if status != 200 {
            return (i, status, body);
        }
        assert_eq!(body["charged"], true, "{body}");
    }
    panic!("{template} was never refused");
}

async fn bulk_stops_at_30_normal_at_10_and_codes_take_the_last_unit(backend: Backend) {
    let app = spawn_app_with(backend, reserved_channel("")).await;
    app.add_package("sms_code", 100, "4.50").await;

    // Bulk takes units while more than 30 would be left after it: 70 of them.
    let (bulk, status, refusal) = send_until_refused(&app, "campaign", 0).await;
    assert_eq!((bulk, status), (70, 402), "{refusal}");
    assert_eq!(refusal["error"]["code"], "quota_reserved");
    assert_eq!(refusal["error"]["charged"], false);
    let quota = app.quota("sms_code").await;
    assert_eq!(quota["remaining"], 30);
    assert_eq!(quota["reserve_units"], 10);
    assert_eq!(quota["reserved_for_critical"], 10);

    // Normal stops at the 10 kept for codes; bulk stays refused.
    let (normal, status, refusal) = send_until_refused(&app, "order_notice", 100).await;
    assert_eq!((normal, status), (20, 402), "{refusal}");
    assert_eq!(refusal["error"]["code"], "quota_reserved");
    assert_eq!(send(&app, "campaign", &number(999)).await.0, 402);

    // Codes take the last ten units, and then the package is simply used up.
    let (codes, status, refusal) = send_until_refused(&app, "login_code", 200).await;
    assert_eq!((codes, status), (10, 402), "{refusal}");
    assert_eq!(refusal["error"]["code"], "quota_exhausted");

    // Nothing refused was charged or reached the vendor.
    assert_eq!(app.vendor.calls(), 100);
    let quota = app.quota("sms_code").await;
    assert_eq!(
        (quota["used"].as_i64(), quota["remaining"].as_i64()),
        (Some(100), Some(0))
    );
    assert_eq!(quota["reserved_for_critical"], 0);

    // Every answer and metric carries the class.
    let (_, sent, _) = send(&app, "login_code", &number(300)).await;
    assert_eq!(sent["error"]["code"], "quota_exhausted");
    let metrics = scrape(&app).await;
    let count = |outcome, class| {
        metrics.value(
            "tollgate_sends_total",
            &[
                ("channel", "sms_code"),
                ("outcome", outcome),
                ("class", class),
            ],
        )
    };
    assert_eq!(count("sent", "bulk"), Some(70.0));
    assert_eq!(count("sent", "normal"), Some(20.0));
    assert_eq!(count("sent", "critical"), Some(10.0));
    assert_eq!(count("quota_reserved", "bulk"), Some(2.0));
    assert_eq!(count("quota_reserved", "normal"), Some(1.0));
    assert_eq!(count("quota_exhausted", "critical"), Some(2.0));
    assert_eq!(
        metrics.value("tollgate_quota_reserve_units", &[("channel", "sms_code")]),
        Some(0.0)
    );
}

async fn concurrent_mixed_traffic_never_lets_a_normal_send_take_a_reserved_unit(backend: Backend) {
    let first = spawn_app_with(backend, reserved_channel("")).await;
    // On PostgreSQL a second instance shares the database and half the traffic.
    let second = match backend {
        Backend::Postgres => Some(
            spawn_app_with(
                backend,
                AppOptions {
                    database_url: Some(first.db.url.expose().to_owned()),
                    ..reserved_channel("")
                },
            )
            .await,
        ),
        Backend::Sqlite => None,
    };
    first.add_package("sms_code", 100, "4.50").await;
    let apps: Vec<&TestApp> = std::iter::once(&first).chain(second.as_ref()).collect();

    // 150 notices and 50 codes at once, to 200 numbers, over both instances.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = apps[i % apps.len()];
            let template = if i % 4 == 0 {
                "login_code"
            } else {
                "order_notice"
            };
            let (http, url) = (app.http.clone(), app.url("/v1/messages"));
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(SHOP_TOKEN)
                    .json(&message(template, &number(i)))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (
                    template,
                    (status, response.json::<Value>().await.unwrap(), ()),
                )
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    let ok = |t: &str| {
        results
            .iter()
            .filter(|(template, (status, _, _))| *template == t && *status == 200)
            .count()
    };
    let (normal, codes) = (ok("order_notice"), ok("login_code"));
    for (template, (status, body, _)) in &results {
        match status {
            200 => assert_eq!(body["charged"], true),
            402 => {
                let code = body["error"]["code"].as_str().unwrap();
                let expected = if *template == "login_code" {
                    "quota_exhausted"
                } else {
                    "quota_reserved"
                };
                assert!(
                    code == expected || code == "quota_exhausted",
                    "{template}: {body}"
                );
                assert_eq!(body["error"]["charged"], false);
            }
            other => panic!("{template}: {other} {body}"),
        }
    }
    assert!(normal <= 90, "{normal} notices took reserved units");
    // The codes found every unit the notices left: all 50 went out, or the package is
    // used up.
    assert!(codes == 50 || normal + codes == 100, "{normal} + {codes}");
    let quota = first.quota("sms_code").await;
    assert_eq!(quota["used"].as_i64(), Some((normal + codes) as i64));
    assert_eq!(quota["reserved"], 0);
    let calls = first.vendor.calls() + second.as_ref().map_or(0, |s| s.vendor.calls());
    assert_eq!(
        calls,
        normal + codes,
        "every refusal stayed away from the vendor"
    );
}

async fn a_second_code_to_a_number_within_a_minute_is_429_and_others_pass(backend: Backend) {
    let app = spawn_app_with(backend, reserved_channel("")).await;
    app.add_package("sms_code", 100, "4.50").await;

    assert_eq!(send(&app, "login_code", MOBILE).await.0, 200);
    // The same number again, written the international way.
    let (status, body, retry_after) = send(&app, "login_code", &format!("+86{MOBILE}")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["charged"], false);
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=61).contains(&wait), "Retry-After: {wait}");
    let text = body.to_string();
    assert!(text.contains("default.critical_per_number_1m"), "{text}");
    assert!(!text.contains(MOBILE), "the number leaks: {text}");

    // Another number, and a notice to the same number, pass.
    assert_eq!(send(&app, "login_code", &number(1)).await.0, 200);
    assert_eq!(send(&app, "order_notice", MOBILE).await.0, 200);
    // Only the three sends that passed reached the vendor and were charged.
    assert_eq!(app.vendor.calls(), 3);
    assert_eq!(app.quota("sms_code").await["used"], 3);

    // The drop-in proxy answers a limited send as the gateway's own flow control does.
    let proxied = app
        .http
        .post(app.url("/chuangxin/dxjk"))
        .query(&[
            ("content", "【卡池】你的验证码是：482913"),
            ("mobile", MOBILE),
        ])
        .header("Authorization", format!("APPCODE {SHOP_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 403);
    assert_eq!(
        proxied.headers()["x-ca-error-message"],
        "Throttled by USER Flow Control"
    );
    assert_eq!(proxied.headers()["x-tollgate-error-code"], "rate_limited");
    assert!(proxied.headers().contains_key("retry-after"));
    assert_eq!(app.vendor.calls(), 3);

    // The count is kept as a keyed hash: the number is in no stored row.
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT limit_name, subject FROM traffic_windows")
            .fetch_all(app.db.db.pool())
            .await
            .unwrap();
    assert!(stored.len() >= 3, "{stored:?}");
    for (_, subject) in &stored {
        assert!(!subject.contains("12345678"), "{subject}");
    }

    // A second instance on the same database sees the same count.
    if backend == Backend::Postgres {
        let other = spawn_app_with(
            backend,
            AppOptions {
                database_url: Some(app.db.url.expose().to_owned()),
                ..reserved_channel("")
            },
        )
        .await;
        let (status, body, _) = send(&other, "login_code", MOBILE).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(other.vendor.calls(), 0);
    }
}

async fn a_client_limited_to_5_an_hour_is_refused_its_6th_send(backend: Backend) {
    let app = spawn_app_with(
        backend,
        reserved_channel(
            r#"
            [[limits]]
            name = "shop-hourly"
            scope = "client"
            window = "1h"
            max_sends = 5
            "#,
        ),
    )
    .await;
    app.add_package("sms_code", 100, "4.50").await;
    for i in 0..5 {
        let (status, body, _) = send(&app, "order_notice", &number(i)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, retry_after) = send(&app, "order_notice", &number(5)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shop-hourly"));
    let wait: u64 = retry_after.unwrap().parse().unwrap();
    assert!(wait > 60 && wait <= 3_660, "Retry-After: {wait}");
    // Each client has its own count.
    assert_eq!(
        send_as(&app, ADMIN_TOKEN, "order_notice", &number(6))
            .await
            .0,
        200
    );
    assert_eq!(app.vendor.calls(), 6);
}

async fn a_send_that_was_not_charged_gives_its_count_back(backend: Backend) {
    let app = spawn_app_with(backend, reserved_channel("")).await;
    // No package yet: refused for quota, so the number's minute is not used up.
    let (status, body, _) = send(&app, "login_code", MOBILE).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("quota_exhausted"))
    );
    app.add_package("sms_code", 100, "4.50").await;
    // The vendor fails without delivering: nothing charged, the count given back.
    app.vendor
        .answer_with(Reply::gateway_error(500, "Internal Error"));
    let (status, body, _) = send(&app, "login_code", MOBILE).await;
    assert_eq!(
        (status, body["error"]["charged"].as_bool()),
        (502, Some(false)),
        "{body}"
    );
    // So the user's retry goes out, and is then counted.
    app.vendor.answer_with(Reply::success());
    let (status, body, _) = send(&app, "login_code", MOBILE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(send(&app, "login_code", MOBILE).await.0, 429);
}

async fn a_client_budget_stops_the_sends_once_it_is_spent(backend: Backend) {
    let app = spawn_app_with(
        backend,
        reserved_channel(
            r#"
            [[limits]]
            name = "shop-daily-budget"
            scope = "client"
            window = "1d"
            max_cost = "0.10"
            "#,
        ),
    )
    .await;
    // 0.045 a unit: sends are admitted while the day's spend is below 0.10.
    app.add_package("sms_code", 100, "4.50").await;
    for i in 0..3 {
        let (status, body, _) = send(&app, "order_notice", &number(i)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, _) = send(&app, "order_notice", &number(3)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shop-daily-budget"));
    assert_eq!(app.quota("sms_code").await["used"], 3);
}

/// A send through `sms_code`'s drop-in path as the shop client, with `extra` query
/// fields beside the vendor's `content` and `mobile`.
async fn send_drop_in(
    app: &TestApp,
    content: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut query = vec![("content", content), ("mobile", to)];
    query.extend_from_slice(extra);
    app.http
        .post(app.url("/chuangxin/dxjk"))
        .query(&query)
        .header("Authorization", format!("APPCODE {SHOP_TOKEN}"))
        .send()
        .await
        .unwrap()
}

/// The campaign template's text, as a drop-in client sends it.
const CAMPAIGN_TEXT: &str = "【卡池】双十一全场五折，退订回N";

async fn a_client_cannot_raise_the_class_of_its_own_send(backend: Backend) {
    let app = spawn_app_with(backend, reserved_channel("")).await;
    // 10 units: 1 kept for codes, bulk shed below 3.
    app.add_package("sms_code", 10, "0.45").await;
    assert_eq!(app.quota("sms_code").await["reserve_units"], 1);

    // The send API has no such field, and says so: nothing charged, vendor untouched.
    let mut raised = message("campaign", MOBILE);
    raised["class"] = json!("critical");
    let response = app.send_json(&raised).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    assert_eq!(body["error"]["charged"], false, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("class"),
        "{body}"
    );
    assert_eq!(app.vendor.calls(), 0);
    assert_eq!(app.quota("sms_code").await["used"], 0);

    // The drop-in proxy takes the campaign's text on a channel whose kind is critical,
    // with a `class` asked for beside it: the send is still the template's bulk.
    let proxied = send_drop_in(&app, CAMPAIGN_TEXT, MOBILE, &[("class", "critical")]).await;
    assert_eq!(proxied.status(), 200);
    let id = proxied.headers()["x-tollgate-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let record = app
        .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
        .await;
    assert_eq!(record["class"], "bulk", "{record}");

    // So once bulk is shed (3 left), the proxy refuses it as the API does.
    let (bulk, status, refusal) = send_until_refused(&app, "campaign", 0).await;
    assert_eq!((bulk, status), (6, 402), "{refusal}");
    assert_eq!(refusal["error"]["code"], "quota_reserved");
    let refused = send_drop_in(&app, CAMPAIGN_TEXT, MOBILE, &[("class", "critical")]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-tollgate-error-code"], "quota_reserved");
    assert_eq!(
        app.vendor.calls(),
        7,
        "the refused send never reached the vendor"
    );
    assert_eq!(app.quota("sms_code").await["used"], 7);
    // A code through the same path still goes out: the refusal was for the class.
    let code = send_drop_in(
        &app,
        "【卡池】你的验证码是：482913，3分钟内有效！",
        MOBILE,
        &[],
    )
    .await;
    assert_eq!(code.status(), 200);
    assert_eq!(app.vendor.calls(), 8);
}

async fn every_answer_and_record_names_the_class_of_its_send(backend: Backend) {
    let app = spawn_app_with(backend, reserved_channel("")).await;
    app.add_package("sms_code", 100, "4.50").await;
    for (template, class) in [
        ("login_code", "critical"),
        ("order_notice", "normal"),
        ("campaign", "bulk"),
    ] {
        let (status, body, _) = send(&app, template, MOBILE).await;
        assert_eq!(status, 200, "{template}: {body}");
        assert_eq!(body["class"], class, "{template}: {body}");
        let id = body["id"].as_str().unwrap();
        let record = app
            .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
            .await;
        assert_eq!(record["id"], id);
        assert_eq!(record["class"], class, "{template}: {record}");
    }
}

async fn the_drop_in_proxy_answers_a_reserved_refusal_as_the_vendors_quota_exhausted(
    backend: Backend,
) {
    // `voice_notice` (normal) keeps 5 units for critical sends; 6 are bought.
    let app = spawn_app_with(
        backend,
        AppOptions {
            voice_notice_keys: "reserve_critical = 5".into(),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("voice_notice", 6, "0.60").await;
    let notice = "您的订单A1024已发货";
    let sent = app.send_drop_in(notice, SHOP_TOKEN).await;
    assert_eq!(sent.status(), 200);
    assert_eq!(app.vendor.calls(), 1);

    // The next would take a unit kept for critical sends.
    let refused = app.send_drop_in(notice, SHOP_TOKEN).await;
    assert_eq!(refused.status(), 403);
    let headers = refused.headers().clone();
    assert_eq!(headers["x-ca-error-message"], "Quota Exhausted");
    assert_eq!(headers["x-tollgate-error-code"], "quota_reserved");
    assert!(headers.contains_key("x-ca-request-id"));
    assert!(
        !headers.contains_key("x-tollgate-id"),
        "nothing was recorded"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["ReturnStatus"], "Faild", "{body}");
    // Not charged, and the vendor never heard of it.
    assert_eq!(app.vendor.calls(), 1);
    let quota = app.quota("voice_notice").await;
    assert_eq!(
        (quota["used"].as_i64(), quota["reserved"].as_i64()),
        (Some(1), Some(0)),
        "{quota}"
    );
    assert_eq!(quota["remaining"], 5);
}

/// SPEC §12: a client's count is one count however many instances serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgres_share_a_clients_hourly_count() {
    let limit = r#"
        [[limits]]
        name = "shop-hourly"
        scope = "client"
        window = "1h"
        max_sends = 5
    "#;
    let first = spawn_app_with(Backend::Postgres, reserved_channel(limit)).await;
    let second = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            database_url: Some(first.db.url.expose().to_owned()),
            ..reserved_channel(limit)
        },
    )
    .await;
    first.add_package("sms_code", 100, "4.50").await;
    for (app, i) in [
        (&first, 0),
        (&first, 1),
        (&first, 2),
        (&second, 3),
        (&second, 4),
    ] {
        let (status, body, _) = send(app, "order_notice", &number(i)).await;
        assert_eq!(status, 200, "send {i}: {body}");
    }
    // The 6th is refused on either instance.
    for (app, i) in [(&first, 5), (&second, 6)] {
        let (status, body, retry_after) = send(app, "order_notice", &number(i)).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(body["error"]["charged"], false);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shop-hourly"));
        let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!((1..=3_660).contains(&wait), "Retry-After: {wait}");
    }
    assert_eq!((first.vendor.calls(), second.vendor.calls()), (3, 2));
    assert_eq!(first.quota("sms_code").await["used"], 5);
}

mod burst {
    use chrono::{Duration, DurationRound, Utc};
    use tollgate::alerts::{AlertEngine, Step};
    use tollgate::config::load_str;
    use tollgate::domain::{ManualClock, SendClass};
    use tollgate::ledger::ImportedCharge;

    use crate::helpers::{add_package, channel, Backend, PackageSpec, TestDb};
    use crate::on_both_backends;

    on_both_backends!(a_burst_of_ten_times_the_baseline_fires_once_and_resolves_when_it_passes);

    fn charge(i: usize, at: chrono::DateTime<Utc>) -> ImportedCharge {
        ImportedCharge {
            send_id: format!("msg_history_{i}"),
            client: "shop-backend".into(),
            class: SendClass::Critical,
            units: 1,
            at,
            mobile_masked: "139****0000".into(),
        }
    }

    async fn a_burst_of_ten_times_the_baseline_fires_once_and_resolves_when_it_passes(
        backend: Backend,
    ) {
        let db = TestDb::new(backend).await;
        // 55 minutes into an hour, so that the burst below falls in one hour bucket.
        let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap() + Duration::minutes(55);
        let clock = ManualClock::new(now);
        let ledger = db.ledger_at(&clock);
        add_package(
            &ledger,
            PackageSpec {
                units: 10_000,
                ..PackageSpec::default()
            },
        )
        .await;
        // A week at 2 sends an hour, then 40 in the last hour: 20 times the baseline.
        let mut history: Vec<ImportedCharge> = (0..7 * 24 * 2)
            .map(|i| {
                charge(
                    i,
                    now - Duration::days(7) + Duration::minutes(30 * i as i64),
                )
            })
            .filter(|c| c.at < now - Duration::hours(1))
            .collect();
        let baseline = history.len();
        history.extend((0..40).map(|i| {
            charge(
                baseline + i,
                now - Duration::minutes(50) + Duration::seconds(i as i64 * 60),
            )
        }));
        ledger
            .import_charges(&channel("sms_code"), &history)
            .await
            .unwrap();
        let settings = load_str(
            "burst test",
            &format!(
                r#"
                [database]
                url = "{url}"
                [[channels]]
                name = "sms_code"
                kind = "sms_code"
                url = "http://127.0.0.1:9/dxjk"
                signature = "【卡池】"
                [[alert_rules]]
                name = "code-burst"
                channels = ["sms_code"]
                burst_factor_above = 10
                severity = "critical"
                notify = ["hook"]
                [[notifiers]]
                name = "hook"
                type = "webhook"
                url = "http://127.0.0.1:9/hook"
                "#,
                url = db.url.expose()
            ),
            &|_| None,
        )
        .unwrap();
        let engine = AlertEngine::new(ledger.clone(), &settings, clock.clock());
        let steps = |changes: Vec<tollgate::alerts::Evaluation>| -> Vec<(String, Step)> {
            changes.into_iter().map(|c| (c.rule, c.step)).collect()
        };
        let sms = channel("sms_code");

        assert_eq!(
            steps(engine.evaluate_channel(&sms).await.unwrap()),
            [("code-burst".to_owned(), Step::Fire)]
        );
        clock.advance(Duration::minutes(5));
        assert_eq!(steps(engine.evaluate_channel(&sms).await.unwrap()), []);
        // Two quiet hours later the last hour is back under the baseline's tenfold.
        clock.advance(Duration::hours(2));
        assert_eq!(
            steps(engine.evaluate_channel(&sms).await.unwrap()),
            [("code-burst".to_owned(), Step::Resolve)]
        );

        let payloads: Vec<String> =
            sqlx::query_scalar("SELECT payload FROM notifications ORDER BY created_at")
                .fetch_all(db.db.pool())
                .await
                .unwrap();
        assert_eq!(payloads.len(), 2, "one firing, one resolved: {payloads:?}");
        let fired: serde_json::Value = serde_json::from_str(&payloads[0]).unwrap();
        assert_eq!(fired["event"], "traffic.burst");
        assert_eq!(fired["status"], "firing");
        let last_hour = fired["last_hour_sends"].as_i64().unwrap();
        assert_eq!(last_hour, 40, "{fired}");
        let average = fired["hourly_average_sends"].as_f64().unwrap();
        assert!((1.5..=2.3).contains(&average), "{average}");
        assert!(
            fired["summary"]
                .as_str()
                .unwrap()
                .contains(&last_hour.to_string()),
            "{fired}"
        );
        let resolved: serde_json::Value = serde_json::from_str(&payloads[1]).unwrap();
        assert_eq!(resolved["event"], "traffic.burst");
        assert_eq!(resolved["status"], "resolved");
    }
}
