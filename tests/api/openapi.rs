//! `GET /openapi.json`: a valid OpenAPI 3.1 document that describes every route the
//! router serves, and every refusal the API answers.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::app::{answer, spawn_app, TestApp, ADMIN_TOKEN, MOBILE, SHOP_TOKEN};
use crate::helpers::Backend;

/// The document as the running server serves it.
async fn document(app: &TestApp) -> Value {
    let response = app.get_without_credentials("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Every (method, path) the document describes.
fn operations(document: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in [
            "get", "post", "put", "patch", "delete", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                found.push((method.to_owned(), path.clone()));
            }
        }
    }
    found
}

/// The codes an operation documents for `status`.
fn documented_codes(document: &Value, method: &str, path: &str, status: u16) -> BTreeSet<String> {
    let schema = &document["paths"][path][method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} documents no {status} refusal"))
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_by_an_independent_validator() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "tollgate");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&document).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python3 with openapi-spec-validator (./scripts/test installs it)");
    assert!(
        output.status.success(),
        "the validator refused the document:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "valid");
}

#[tokio::test]
async fn every_documented_operation_is_served_by_the_router() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = document(&app).await;
    let described = operations(&document);
    assert!(described.len() >= 16, "{described:?}");

    for (method, path) in &described {
        let served = path
            .replace("{id}", "no-such-id")
            .replace("{channel}", "sms_code");
        let request = match method.as_str() {
            "get" => app.request_as(Method::GET, &served, ADMIN_TOKEN),
            "post" => app
                .request_as(Method::POST, &served, ADMIN_TOKEN)
                .json(&json!({})),
            other => panic!("{other} {path}: a method the API does not use"),
        };
        let (status, body) = answer(request).await;
        // The router's own fallbacks: no route for the path, or none for the method.
        let unrouted =
            (status == 404 && body["error"]["message"] == "no such endpoint") || status == 405;
        assert!(
            !unrouted,
            "{method} {path} is described but not served: {status} {body}"
        );
    }
}

#[tokio::test]
async fn the_api_of_the_spec_and_the_configured_drop_in_paths_are_described() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = document(&app).await;
    let described: BTreeSet<(String, String)> = operations(&document).into_iter().collect();

    // SPEC §5's table, §15's document, and the test configuration's one proxy_path.
    let expected = [
        ("post", "/v1/messages"),
        ("get", "/v1/messages/{id}"),
        ("get", "/v1/quota"),
        ("get", "/v1/quota/{channel}"),
        ("post", "/v1/packages"),
        ("get", "/v1/packages"),
        ("post", "/v1/reconciliations"),
        ("get", "/v1/alerts"),
        ("post", "/v1/alerts/{id}/ack"),
        ("get", "/v1/reports/monthly"),
        ("get", "/metrics"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/openapi.json"),
        ("get", "/chuangxin/yytz"),
        ("post", "/chuangxin/yytz"),
    ];
    let expected: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(described, expected);

    let drop_in = &document["paths"]["/chuangxin/yytz"]["get"];
    assert_eq!(drop_in["security"], json!([{ "appcode": [] }]));
    assert_eq!(drop_in["tags"], json!(["drop-in"]));
    let params: Vec<&str> = drop_in["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["content", "mobile"]);
    assert!(drop_in["responses"]["502"]["description"]
        .as_str()
        .unwrap()
        .contains("upstream_auth_failed"));
    assert_eq!(
        document["paths"]["/v1/messages"]["post"]["security"],
        json!([{ "bearer": [] }])
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["appcode"]["in"], "header");
    assert_eq!(schemes["appcode"]["name"], "Authorization");
}

#[tokio::test]
async fn routes_left_out_of_the_document_are_served_and_say_why() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = document(&app).await;
    for (prefix, reason) in tollgate::http::UNDOCUMENTED_ROUTES {
        assert!(reason.len() > 20, "{prefix} needs a reason");
        let response = app.get_without_credentials(prefix).await;
        assert_ne!(response.status(), 404, "{prefix} is not served");
        assert!(
            operations(&document)
                .iter()
                .all(|(_, path)| !path.starts_with(prefix)),
            "{prefix} is both left out and described"
        );
    }
}

#[tokio::test]
async fn a_send_lists_every_refusal_of_the_spec_under_its_status() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = document(&app).await;
    let codes = |status| documented_codes(&document, "post", "/v1/messages", status);
    let set = |codes: &[&str]| codes.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(
        codes(400),
        set(&[
            "invalid_request",
            "unknown_channel",
            "invalid_mobile",
            "unknown_template",
            "missing_template_param",
            "unknown_template_param",
            "content_empty",
            "content_too_long",
            "missing_signature",
            "missing_unsubscribe_suffix",
            "invalid_voice_code",
            "outside_sending_window",
        ])
    );
    assert_eq!(codes(401), set(&["unauthorized"]));
    assert_eq!(
        codes(402),
        set(&[
            "quota_exhausted",
            "quota_reserved",
            "vendor_quota_exhausted"
        ])
    );
    assert_eq!(
        codes(409),
        set(&["idempotency_conflict", "idempotency_in_progress"])
    );
    assert_eq!(codes(413), set(&["payload_too_large"]));
    assert_eq!(codes(415), set(&["unsupported_media_type"]));
    assert_eq!(codes(429), set(&["throttled", "rate_limited"]));
    assert_eq!(codes(502), set(&["upstream_error", "upstream_auth_failed"]));
    assert_eq!(codes(503), set(&["unavailable"]));
    assert!(codes(504).contains("upstream_timeout"));

    let answer = &document["components"]["schemas"]["SendAnswer"];
    let fields: BTreeSet<&str> = answer["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "id", "channel", "to", "class", "status", "charged", "units", "cost", "upstream",
            "quota", "route", "attempts", "recorded"
        ])
    );
}

/// Real refusals, each checked against what the document lists for its operation.
#[tokio::test]
async fn the_refusals_the_server_answers_are_the_ones_it_documents() {
    let app = spawn_app(Backend::Sqlite).await;
    let document = document(&app).await;
    let login_code = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1"}});
    let shop = |method: Method, path: &str| app.request_as(method, path, SHOP_TOKEN);
    let admin = |method: Method, path: &str| app.request_as(method, path, ADMIN_TOKEN);
    let cases: Vec<(&str, &str, reqwest::RequestBuilder)> = vec![
        // No token: built by hand, since every helper presents one.
        ("post", "/v1/messages", app.http.post(app.url("/v1/messages")).json(&login_code)),
        // A form where JSON is expected.
        (
            "post",
            "/v1/messages",
            shop(Method::POST, "/v1/messages").body("channel=sms_code"),
        ),
        (
            "post",
            "/v1/messages",
            shop(Method::POST, "/v1/messages")
                .json(&json!({"channel": "fax", "to": MOBILE, "content": "hi"})),
        ),
        (
            "post",
            "/v1/messages",
            shop(Method::POST, "/v1/messages")
                .json(&json!({"channel": "sms_code", "to": "12345", "template": "login_code"})),
        ),
        // No package registered: no local quota.
        (
            "post",
            "/v1/messages",
            shop(Method::POST, "/v1/messages").json(&login_code),
        ),
        (
            "get",
            "/v1/messages/{id}",
            shop(Method::GET, "/v1/messages/msg_nothing"),
        ),
        (
            "get",
            "/v1/quota/{channel}",
            shop(Method::GET, "/v1/quota/fax"),
        ),
        ("get", "/v1/packages", shop(Method::GET, "/v1/packages")),
        (
            "post",
            "/v1/packages",
            admin(Method::POST, "/v1/packages")
                .json(&json!({"channel": "sms_code", "units": 10, "price": "1.00", "vendor_order_id": "1"})),
        ),
        (
            "post",
            "/v1/reconciliations",
            admin(Method::POST, "/v1/reconciliations")
                .json(&json!({"channel": "fax", "remaining": 1})),
        ),
        (
            "post",
            "/v1/alerts/{id}/ack",
            admin(Method::POST, "/v1/alerts/nothing/ack"),
        ),
        (
            "get",
            "/v1/reports/monthly",
            admin(Method::GET, "/v1/reports/monthly?month=2026-13"),
        ),
    ];
    let mut seen = BTreeSet::new();
    for (method, path, request) in cases {
        let (status, body) = answer(request).await;
        let code = body["error"]["code"].as_str().unwrap().to_owned();
        assert!(
            documented_codes(&document, method, path, status).contains(&code),
            "{method} {path} answered {status} {code}, which its description does not list"
        );
        seen.insert((status, code));
    }
    // The cases above do reach that many different refusals.
    assert!(seen.len() >= 8, "{seen:?}");
}
