//! The drop-in proxy's answers that tollgate writes itself rather than mirrors.

use serde_json::Value;

use crate::app::{spawn_app, SHOP_TOKEN};
use crate::helpers::Backend;
use crate::on_both_backends;
use crate::vendor::Reply;

on_both_backends!(a_vendor_refusing_tollgates_appcode_is_a_backend_failure_to_a_drop_in_client);

async fn a_vendor_refusing_tollgates_appcode_is_a_backend_failure_to_a_drop_in_client(
    backend: Backend,
) {
    let mut app = spawn_app(backend).await;
    app.add_package("voice_notice", 10, "1.00").await;
    app.vendor
        .answer_with(Reply::gateway_error(400, "Invalid AppCode `not exists`"));

    let response = app.send_drop_in("您的快递已送达", SHOP_TOKEN).await;

    // The client's token was right: it must not be told its AppCode is invalid.
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["x-ca-error-message"],
        "Failed To Invoke Backend Service"
    );
    assert_eq!(
        response.headers()["x-tollgate-error-code"],
        "upstream_auth_failed"
    );
    assert!(response.headers().contains_key("x-tollgate-id"));
    let body: Value = response.json().await.unwrap();
    assert!(!body.to_string().contains("Invalid AppCode"), "{body}");
    assert_eq!(app.vendor.calls(), 1);
    assert_eq!(app.quota("voice_notice").await["used"], 0);

    // A wrong token is still the gateway's own answer to a wrong AppCode.
    let unknown = app.send_drop_in("您的快递已送达", "not-a-token").await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.headers()["x-ca-error-message"],
        "Invalid AppCode `not exists`"
    );
    app.stop().await;
}

on_both_backends!(a_form_body_fills_what_the_query_leaves_out);

async fn a_form_body_fills_what_the_query_leaves_out(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("voice_notice", 10, "1.00").await;

    let response = app
        .http
        .post(app.url("/chuangxin/yytz?content=%E6%82%A8%E5%A5%BD+a"))
        .form(&[("mobile", crate::app::MOBILE), ("content", "ignored")])
        .header("Authorization", format!("APPCODE {SHOP_TOKEN}"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let received = app.vendor.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].query["content"], "您好 a");
    assert_eq!(received[0].query["mobile"], crate::app::MOBILE);
    app.stop().await;
}
