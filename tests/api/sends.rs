//! Metered sends end to end: the real server, a stand-in vendor, both backends.

use std::time::Duration;

use serde_json::{json, Value};

use crate::app::*;
use crate::helpers::Backend;
use crate::on_both_backends;
use crate::vendor::Reply;

on_both_backends!(
    every_vendor_answer_is_classified_charged_and_answered_as_the_spec_says,
    a_send_reaches_the_vendor_with_the_appcode_and_the_rendered_text,
    no_local_quota_answers_402_and_never_calls_the_vendor,
    the_drop_in_proxy_answers_403_quota_exhausted_when_local_quota_is_gone,
    the_drop_in_proxy_mirrors_the_vendor_answer,
    concurrent_sends_over_http_never_exceed_remaining_quota,
    a_retried_request_with_the_same_idempotency_key_reaches_the_vendor_once,
    the_vendor_saying_quota_exhausted_marks_the_channel_exhausted,
    every_request_error_code_is_answered_without_charging,
    secrets_and_full_mobile_numbers_appear_nowhere,
    admin_endpoints_refuse_other_clients,
    a_message_can_be_read_back_with_its_charge,
);

struct Row {
    name: &'static str,
    reply: Reply,
    outcome: &'static str,
    charged: bool,
    http_status: u16,
    error_code: Option<&'static str>,
}

fn answer_table() -> Vec<Row> {
    let faild = r#"{"ReturnStatus":"Faild","Message":"sign参数错误","RemainPoint":0,"TaskID":0,"SuccessCounts":0}"#;
    vec![
        Row {
            name: "success",
            reply: Reply::success(),
            outcome: "sent",
            charged: true,
            http_status: 200,
            error_code: None,
        },
        Row {
            name: "lower-case key",
            reply: Reply::success().with_body(r#"{"returnstatus":"Success","taskid":7}"#),
            outcome: "sent",
            charged: true,
            http_status: 200,
            error_code: None,
        },
        Row {
            name: "Faild body",
            reply: Reply::success().with_body(faild),
            outcome: "vendor_rejected",
            charged: true,
            http_status: 200,
            error_code: None,
        },
        Row {
            name: "not billed",
            reply: Reply::success().with_header("X-Ca-Market-Billing-Result", "0"),
            outcome: "sent",
            charged: false,
            http_status: 200,
            error_code: None,
        },
        Row {
            name: "Quota Exhausted",
            reply: Reply::gateway_error(403, "Quota Exhausted"),
            outcome: "vendor_quota_exhausted",
            charged: false,
            http_status: 402,
            error_code: Some("vendor_quota_exhausted"),
        },
        Row {
            name: "Quota Expired",
            reply: Reply::gateway_error(403, "Quota Expired"),
            outcome: "vendor_quota_exhausted",
            charged: false,
            http_status: 402,
            error_code: Some("vendor_quota_exhausted"),
        },
        Row {
            name: "marketplace quota",
            reply: Reply::gateway_error(403, "Api Market Subscription quota exhausted"),
            outcome: "vendor_quota_exhausted",
            charged: false,
            http_status: 402,
            error_code: Some("vendor_quota_exhausted"),
        },
        Row {
            name: "throttled",
            reply: Reply::gateway_error(403, "Throttled by APP Flow Control"),
            outcome: "throttled",
            charged: false,
            http_status: 429,
            error_code: Some("throttled"),
        },
        Row {
            name: "invalid AppCode",
            reply: Reply::gateway_error(400, "Invalid AppCode `not exists`"),
            outcome: "auth_failed",
            charged: false,
            http_status: 502,
            error_code: Some("upstream_auth_failed"),
        },
        Row {
            name: "unauthorized",
            reply: Reply::gateway_error(403, "Unauthorized"),
            outcome: "auth_failed",
            charged: false,
            http_status: 502,
            error_code: Some("upstream_auth_failed"),
        },
        Row {
            name: "gateway 500",
            reply: Reply::gateway_error(500, "Internal Error"),
            outcome: "upstream_error",
            charged: false,
            http_status: 502,
            error_code: Some("upstream_error"),
        },
        Row {
            name: "bad request",
            reply: Reply::gateway_error(400, "Invalid Param Location"),
            outcome: "upstream_error",
            charged: false,
            http_status: 502,
            error_code: Some("upstream_error"),
        },
        Row {
            name: "timeout",
            reply: Reply::success().delayed(Duration::from_secs(5)),
            outcome: "uncertain",
            charged: true,
            http_status: 504,
            error_code: Some("upstream_timeout"),
        },
    ]
}

async fn every_vendor_answer_is_classified_charged_and_answered_as_the_spec_says(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            vendor_timeout: Some("1s"),
            ..Default::default()
        },
    )
    .await;
    for row in answer_table() {
        // A fresh package per row, so that rows which mark the channel exhausted do
        // not affect the next one.
        app.add_package("sms_code", 10, "1.00").await;
        let used_before = app.quota("sms_code").await["used"].as_i64().unwrap();
        app.vendor.answer_with(row.reply.clone());

        let response = app.send_login_code().await;

        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, row.http_status, "{}: {body}", row.name);
        let id = match row.error_code {
            None => {
                assert_eq!(body["status"], row.outcome, "{}", row.name);
                assert_eq!(body["charged"], row.charged, "{}", row.name);
                body["id"].as_str().unwrap().to_owned()
            }
            Some(code) => {
                assert_eq!(body["error"]["code"], code, "{}", row.name);
                assert_eq!(body["error"]["charged"], row.charged, "{}", row.name);
                body["error"]["id"].as_str().unwrap().to_owned()
            }
        };
        let stored = app.ledger.get_send(&id).await.unwrap().unwrap();
        assert_eq!(stored.status.as_str(), row.outcome, "{}", row.name);
        assert_eq!(stored.charged(), row.charged, "{}", row.name);
        assert_eq!(
            stored.needs_reconciliation,
            row.outcome == "uncertain",
            "{}",
            row.name
        );
        let used_after = app.quota("sms_code").await["used"].as_i64().unwrap();
        if row.outcome != "vendor_quota_exhausted" {
            assert_eq!(
                used_after - used_before,
                i64::from(row.charged),
                "{}",
                row.name
            );
        }
    }
    app.stop().await;
}

async fn a_send_reaches_the_vendor_with_the_appcode_and_the_rendered_text(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("sms_code", 100, "4.50").await;

    let response = app.send_login_code().await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["to"], MOBILE_MASKED);
    assert_eq!(body["units"], 1);
    assert_eq!(body["cost"], "0.045");
    assert_eq!(body["quota"]["remaining_units"], 99);
    assert_eq!(
        body["upstream"]["request_id"],
        "5C6B1D7E-0000-4000-8000-00000000AAAA"
    );
    assert_eq!(body["upstream"]["task_id"], "18424321");
    let received = app.vendor.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/chuangxin/dxjk");
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("APPCODE {APPCODE}").as_str())
    );
    assert_eq!(received[0].query["mobile"], MOBILE);
    assert_eq!(
        received[0].query["content"],
        "【卡池】你的验证码是：482913，3分钟内有效！"
    );
    app.stop().await;
}

async fn no_local_quota_answers_402_and_never_calls_the_vendor(backend: Backend) {
    let mut app = spawn_app(backend).await;

    let response = app.send_login_code().await;

    assert_eq!(response.status(), 402);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exhausted");
    assert_eq!(body["error"]["charged"], false);
    assert_eq!(app.vendor.calls(), 0);
    app.stop().await;
}

async fn the_drop_in_proxy_answers_403_quota_exhausted_when_local_quota_is_gone(backend: Backend) {
    let mut app = spawn_app(backend).await;

    let response = app
        .send_drop_in("您好，您的快递已送达小区门口，请前来签收。", SHOP_TOKEN)
        .await;

    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-ca-error-message"], "Quota Exhausted");
    assert_eq!(app.vendor.calls(), 0);
    app.stop().await;
}

async fn the_drop_in_proxy_mirrors_the_vendor_answer(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("voice_notice", 10, "1.00").await;

    // Exactly what the vendor's Java sample sends, with only the host changed.
    let response = app
        .send_drop_in("您好，您的快递已送达小区门口，请前来签收。", SHOP_TOKEN)
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-ca-request-id"],
        "5C6B1D7E-0000-4000-8000-00000000AAAA"
    );
    assert!(response.headers()["x-tollgate-id"]
        .to_str()
        .unwrap()
        .starts_with("msg_"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ReturnStatus"], "Success");
    let received = app.vendor.received();
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("APPCODE {APPCODE}").as_str())
    );
    assert_eq!(app.quota("voice_notice").await["used"], 1);

    let unknown = app.send_drop_in("hi", "not-a-token").await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.headers()["x-ca-error-message"],
        "Invalid AppCode `not exists`"
    );
    assert_eq!(app.vendor.calls(), 1);
    app.stop().await;
}

async fn concurrent_sends_over_http_never_exceed_remaining_quota(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("sms_code", 25, "1.00").await;

    let body = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1234"}});
    let tasks: Vec<_> = (0..100).map(|_| app.spawn_send_json(&body)).collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().status().as_u16());
    }

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 25);
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 75);
    assert_eq!(app.vendor.calls(), 25);
    let quota = app.quota("sms_code").await;
    assert_eq!(
        (quota["used"].as_i64(), quota["remaining"].as_i64()),
        (Some(25), Some(0))
    );
    app.stop().await;
}

async fn a_retried_request_with_the_same_idempotency_key_reaches_the_vendor_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("sms_code", 10, "1.00").await;
    let body = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1234"}});
    let other_body = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "9999"}});
    let key = "signup-7781";

    let first: Value = app
        .send_json_with_idempotency_key(&body, key)
        .await
        .json()
        .await
        .unwrap();
    let again = app.send_json_with_idempotency_key(&body, key).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    let other = app.send_json_with_idempotency_key(&other_body, key).await;

    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["cost"], again["cost"]);
    assert_eq!(app.vendor.calls(), 1);
    assert_eq!(other.status(), 409);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "idempotency_conflict");
    assert_eq!(app.quota("sms_code").await["used"], 1);
    app.stop().await;
}

async fn the_vendor_saying_quota_exhausted_marks_the_channel_exhausted(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("sms_code", 50, "1.00").await;
    app.vendor
        .answer_with(Reply::gateway_error(403, "Quota Exhausted"));

    let response = app.send_login_code().await;
    assert_eq!(response.status(), 402);

    let quota = app.quota("sms_code").await;
    assert_eq!(quota["remaining"], 0);
    app.vendor.answer_with(Reply::success());
    let next = app.send_login_code().await;
    assert_eq!(next.status(), 402);
    let next: Value = next.json().await.unwrap();
    assert_eq!(next["error"]["code"], "quota_exhausted");
    assert_eq!(
        app.vendor.calls(),
        1,
        "an exhausted channel is not sent to again"
    );
    // A new package brings the channel back.
    app.add_package("sms_code", 10, "1.00").await;
    assert_eq!(app.send_login_code().await.status(), 200);
    app.stop().await;
}

async fn every_request_error_code_is_answered_without_charging(backend: Backend) {
    // Windows relative to the time in Shanghai now, so the test holds at any hour.
    let local = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let at = |hours: i64| {
        (local + chrono::Duration::hours(hours))
            .format("%H:%M")
            .to_string()
    };
    let closed = format!("{}-{}", at(6), at(7));
    let open = format!("{}-{}", at(-1), at(1));
    let extra = format!(
        r#"
        [[channels]]
        name = "sms_marketing"
        kind = "sms_marketing"
        url = "http://127.0.0.1:9/never"
        signature = "【卡池】"
        sending_window = "{closed}"

        [[channels]]
        name = "sms_marketing_open"
        kind = "sms_marketing"
        url = "http://127.0.0.1:9/never"
        signature = "【卡池】"
        sending_window = "{open}"

        [[channels]]
        name = "sms_raw"
        kind = "sms_notice"
        url = "http://127.0.0.1:9/never"
        proxy_path = "/chuangxin/dxtz"

        [[templates]]
        name = "promo"
        channel = "sms_marketing"
        body = "【卡池】#shop#周年店庆，全场5折起！退订回N"

        [[templates]]
        name = "promo_no_suffix"
        channel = "sms_marketing_open"
        body = "【卡池】#shop#周年店庆，全场5折起！"

        [[templates]]
        name = "long"
        channel = "sms_code"
        body = "【卡池】#text#"
    "#
    );
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: extra,
            ..Default::default()
        },
    )
    .await;
    let channels = [
        "sms_code",
        "voice_code",
        "voice_notice",
        "sms_marketing",
        "sms_marketing_open",
        "sms_raw",
    ];
    for channel in channels {
        app.add_package(channel, 100, "1.00").await;
    }
    let login = |params: Value| json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": params});
    let cases: Vec<(&str, u16, Value)> = vec![
        (
            "invalid_request",
            400,
            json!({"channel": "sms_code", "to": MOBILE}),
        ),
        (
            "invalid_request",
            400,
            json!({"channel": "sms_code", "to": MOBILE, "content": "【卡池】hi"}),
        ),
        (
            "invalid_request",
            400,
            json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "surprise": 1}),
        ),
        ("invalid_request", 400, login(json!({"code": "12#34"}))),
        (
            "unknown_channel",
            400,
            json!({"channel": "fax", "to": MOBILE, "content": "x"}),
        ),
        (
            "invalid_mobile",
            400,
            json!({"channel": "sms_code", "to": "12345", "template": "login_code", "params": {"code": "1"}}),
        ),
        (
            "unknown_template",
            400,
            json!({"channel": "sms_code", "to": MOBILE, "template": "nope"}),
        ),
        ("missing_template_param", 400, login(json!({}))),
        (
            "unknown_template_param",
            400,
            login(json!({"code": "1", "extra": "2"})),
        ),
        (
            "content_empty",
            400,
            json!({"channel": "voice_notice", "to": MOBILE, "content": "   "}),
        ),
        (
            "content_too_long",
            400,
            json!({"channel": "sms_code", "to": MOBILE, "template": "long", "params": {"text": "字".repeat(500)}}),
        ),
        (
            "content_too_long",
            400,
            json!({"channel": "voice_notice", "to": MOBILE, "content": "字".repeat(501)}),
        ),
        (
            "invalid_voice_code",
            400,
            json!({"channel": "voice_code", "to": MOBILE, "content": "12ab"}),
        ),
        (
            "missing_unsubscribe_suffix",
            400,
            json!({"channel": "sms_marketing_open", "to": MOBILE, "template": "promo_no_suffix", "params": {"shop": "卡池商城"}}),
        ),
        (
            "outside_sending_window",
            400,
            json!({"channel": "sms_marketing", "to": MOBILE, "template": "promo", "params": {"shop": "卡池商城"}}),
        ),
    ];
    for (code, status, body) in cases {
        let response = app.send_json(&body).await;
        assert_eq!(response.status().as_u16(), status, "{code} for {body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "for {body}: {answer}");
        assert_eq!(answer["error"]["charged"], false, "{code}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }

    let unauthorized = app
        .http
        .post(app.url("/v1/messages"))
        .json(&login(json!({"code": "1"})))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        unauthorized.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let too_large = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(SHOP_TOKEN)
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\"channel\":\"sms_code\",\"to\":\"{MOBILE}\",\"content\":\"{}\"}}",
            "x".repeat(100_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert_eq!(
        too_large.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    let not_json = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(SHOP_TOKEN)
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    // A channel without a signature of its own: raw text through the drop-in proxy
    // must carry one.
    let unsigned = app
        .send_drop_in_at("/chuangxin/dxtz", "您的订单已发货", SHOP_TOKEN)
        .await;
    assert_eq!(unsigned.status(), 400);
    assert_eq!(
        unsigned.headers()["x-tollgate-error-code"],
        "missing_signature"
    );

    assert_eq!(app.vendor.calls(), 0);
    for channel in channels {
        assert_eq!(app.quota(channel).await["used"], 0, "{channel}");
    }
    app.stop().await;
}

async fn secrets_and_full_mobile_numbers_appear_nowhere(backend: Backend) {
    let logs = crate::helpers::capture_logs();
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            vendor_timeout: Some("1s"),
            ..Default::default()
        },
    )
    .await;
    app.add_package("sms_code", 100, "1.00").await;
    let mut answers = String::new();
    for reply in [
        Reply::success(),
        Reply::gateway_error(400, "Invalid AppCode `not exists`"),
        Reply::success().with_body(&format!(
            r#"{{"ReturnStatus":"Faild","Message":"号码{MOBILE}在黑名单"}}"#
        )),
        Reply::success().delayed(Duration::from_secs(3)),
        Reply::gateway_error(500, "Internal Error"),
    ] {
        app.vendor.answer_with(reply);
        answers.push_str(&app.send_login_code().await.text().await.unwrap());
    }
    answers.push_str(
        &app.send_json(
            &json!({"channel": "sms_code", "to": format!("+86{MOBILE}"), "template": "nope"}),
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    answers.push_str(
        &app.send_json(
            &json!({"channel": "sms_code", "to": format!("{MOBILE}9"), "template": "login_code"}),
        )
        .await
        .text()
        .await
        .unwrap(),
    );

    // The drop-in proxy, reading a send back, and the metrics.
    app.add_package("voice_notice", 10, "1.00").await;
    app.vendor.answer_with(Reply::success());
    let proxied = app.send_drop_in("您的快递已送达", SHOP_TOKEN).await;
    let id = proxied.headers()["x-tollgate-id"]
        .to_str()
        .unwrap()
        .to_owned();
    answers.push_str(&proxied.text().await.unwrap());
    for path in [format!("/v1/messages/{id}"), "/metrics".to_owned()] {
        let response = app.get_as(&path, ADMIN_TOKEN).await;
        answers.push_str(&response.text().await.unwrap());
    }

    let stored = app.stored_text().await;
    app.stop().await;
    let logged = logs
        .map(|buffer| String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned())
        .unwrap_or_default();
    // The capture works when this test has its process to itself (as under nextest):
    // the sends it logged name the number masked.
    assert!(
        logged.is_empty() || logged.contains(MOBILE_MASKED),
        "logs captured nothing useful"
    );
    for (what, text) in [
        ("answers", &answers),
        ("stored rows", &stored),
        ("logs", &logged),
    ] {
        assert!(!text.contains(APPCODE), "AppCode in {what}");
        assert!(!text.contains(MOBILE), "full number in {what}: {text}");
    }
    assert!(stored.contains(MOBILE_MASKED));
    assert!(answers.contains(MOBILE_MASKED));
}

async fn admin_endpoints_refuse_other_clients(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let attempts = [
        app.post_json_as(
            "/v1/packages",
            SHOP_TOKEN,
            &json!({"channel": "sms_code", "units": 10, "price": "1"}),
        )
        .await,
        app.get_as("/v1/packages", SHOP_TOKEN).await,
        app.post_json_as(
            "/v1/reconciliations",
            SHOP_TOKEN,
            &json!({"channel": "sms_code", "remaining": 0}),
        )
        .await,
    ];
    for response in attempts {
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            "forbidden"
        );
    }
    let bad_packages = [
        json!({"channel": "fax", "units": 10, "price": "1"}),
        json!({"channel": "sms_code", "units": 0, "price": "1"}),
        json!({"channel": "sms_code", "units": -5, "price": "1"}),
        json!({"channel": "sms_code", "units": 10, "price": "cheap"}),
        json!({"channel": "sms_code", "units": 10, "price": "1", "purchased_at": "2026-02-01", "expires_at": "2026-01-01"}),
    ];
    for body in bad_packages {
        let response = app.post_json_as("/v1/packages", ADMIN_TOKEN, &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let listed: Value = app.get_json("/v1/packages", ADMIN_TOKEN).await;
    assert_eq!(
        listed["packages"].as_array().unwrap().len(),
        0,
        "a refused package changes nothing"
    );
    app.stop().await;
}

async fn a_message_can_be_read_back_with_its_charge(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("sms_code", 1000, "45.00").await;
    let sent: Value = app.send_login_code().await.json().await.unwrap();
    let id = sent["id"].as_str().unwrap();

    let own: Value = app
        .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
        .await;
    let admin = app.get_as(&format!("/v1/messages/{id}"), ADMIN_TOKEN).await;
    let missing = app.get_as("/v1/messages/msg_nope", SHOP_TOKEN).await;

    assert_eq!(own["status"], "sent");
    assert_eq!(own["cost"], "0.045");
    assert_eq!(own["client"], "shop-backend");
    assert_eq!(own["to"], MOBILE_MASKED);
    assert_eq!(admin.status(), 200);
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

mod shutdown_and_outages {
    use super::*;
    use crate::on_both_backends;

    on_both_backends!(graceful_shutdown_finishes_sends_under_way);

    async fn graceful_shutdown_finishes_sends_under_way(backend: Backend) {
        let mut app = spawn_app(backend).await;
        app.add_package("sms_code", 10, "1.00").await;
        app.vendor
            .answer_with(Reply::success().delayed(Duration::from_millis(800)));
        let in_flight = app.spawn_send_json(
            &json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1"}}),
        );
        // Stop only once the vendor has the request, so the send is truly under way.
        while app.vendor.calls() == 0 {
            tokio::task::yield_now().await;
        }
        app.stop().await;

        let response = in_flight.await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        // The server's own pool is closed now; read through the test's.
        let ledger = app.db.ledger(tollgate::domain::LedgerMode::Enforce);
        let stored = ledger
            .get_send(body["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stored.status.as_str(), stored.charged_units), ("sent", 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_database_outage_answers_503_and_sends_nothing() {
        let app = spawn_app(Backend::Postgres).await;
        app.add_package("sms_code", 10, "1.00").await;
        app.db.drop_database_now().await;

        let response = app.send_login_code().await;

        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(body["error"]["charged"], false);
        assert_eq!(app.vendor.calls(), 0);
        let ready = app.get_without_credentials("/readyz").await;
        assert_eq!(ready.status(), 503);
    }
}
