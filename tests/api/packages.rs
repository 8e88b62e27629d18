//! `POST /v1/packages` as a client writes it: the vendor's order id is `order_id`.

use serde_json::{json, Value};

use crate::app::{spawn_app, ADMIN_TOKEN};
use crate::helpers::Backend;
use crate::on_both_backends;

on_both_backends!(an_order_registered_twice_is_one_package);

async fn an_order_registered_twice_is_one_package(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let purchase = json!({
        "channel": "sms_code",
        "units": 1000,
        "price": "45.00",
        "order_id": "2026112800001",
    });

    let first = app
        .post_json_as("/v1/packages", ADMIN_TOKEN, &purchase)
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app
        .post_json_as("/v1/packages", ADMIN_TOKEN, &purchase)
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();

    assert_eq!(first["order_id"], "2026112800001");
    assert_eq!(again["id"], first["id"]);
    let listed = app.get_json("/v1/packages", ADMIN_TOKEN).await;
    assert_eq!(listed["packages"].as_array().unwrap().len(), 1);
    assert_eq!(listed["packages"][0]["order_id"], "2026112800001");
    assert_eq!(app.quota("sms_code").await["purchased"], 1000);
    app.stop().await;
}

#[tokio::test]
async fn the_order_id_has_one_name() {
    let mut app = spawn_app(Backend::Sqlite).await;

    let response = app
        .post_json_as(
            "/v1/packages",
            ADMIN_TOKEN,
            &json!({"channel": "sms_code", "units": 10, "price": "1.00", "vendor_order_id": "1"}),
        )
        .await;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vendor_order_id"),
        "{body}"
    );
    app.stop().await;
}
