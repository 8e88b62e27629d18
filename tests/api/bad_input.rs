//! Bad input at every edge: property campaigns (proptest) against the request parsers
//! of the running server (send, package and reconciliation bodies; the drop-in proxy's
//! query and form decoding) and against the parsers inside (template rendering, SMS
//! rating, configuration loading); then the classic bad requests one by one (oversized
//! bodies, invalid UTF-8, wrong content types, missing or wrong tokens, a non-admin on
//! admin endpoints). Whatever comes in: never a 500 or a panic, always one of SPEC §5's
//! error codes, nothing changed in the ledger, and the vendor never called.
//!
//! Campaigns are bounded (`CASES` cases each, a few seconds) and do not persist failures
//! to files; proptest prints the shrunk input of a failure.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Map, Value};
use sqlx::Row;
use tollgate::domain::content::{rate_message, ContentRules, MessageBody};
use tollgate::domain::sms::rate_sms;
use tollgate::domain::template::TemplateBody;
use tollgate::domain::ChannelKind;

use crate::app::{answer, spawn_app, spawn_app_with, AppOptions, TestApp, ADMIN_TOKEN, SHOP_TOKEN};
use crate::helpers::Backend;
use crate::on_both_backends;

/// Cases per campaign against the server: each is one HTTP request on loopback.
const CASES: u32 = 300;
/// Cases per campaign against a parser in this process.
const PARSER_CASES: u32 = 2_000;

/// Every error code of SPEC §5, and the two the router adds (unknown path, method).
const SPEC_CODES: &[&str] = &[
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
    "unsupported_media_type",
    "unauthorized",
    "forbidden",
    "quota_exhausted",
    "quota_reserved",
    "vendor_quota_exhausted",
    "idempotency_conflict",
    "idempotency_in_progress",
    "payload_too_large",
    "throttled",
    "rate_limited",
    "upstream_error",
    "upstream_auth_failed",
    "unavailable",
    "upstream_timeout",
    "not_found",
    "method_not_allowed",
];

/// What a request could have changed: the ledger's rows and the vendor's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    sends: i64,
    entries: i64,
    packages: i64,
    reconciliations: i64,
    vendor_calls: usize,
}

async fn fingerprint(app: &TestApp) -> Fingerprint {
    let db = app.ledger.db();
    let count = |table: &'static str| async move {
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get::<i64, _>("n")
    };
    Fingerprint {
        sends: count("sends").await,
        entries: count("ledger_entries").await,
        packages: count("packages").await,
        reconciliations: count("reconciliations").await,
        vendor_calls: app.vendor.calls(),
    }
}

/// A body in SPEC §5's error format with one of its codes.
fn spec_error(status: u16, body: &Value) -> Result<(), TestCaseError> {
    let code = body["error"]["code"].as_str();
    prop_assert!(
        code.is_some_and(|code| SPEC_CODES.contains(&code)),
        "{status} without a SPEC error code: {body}"
    );
    prop_assert!(body["error"]["message"].is_string(), "{body}");
    prop_assert!(
        body["error"]["charged"].as_bool() != Some(true),
        "a refusal charged: {body}"
    );
    Ok(())
}

/// Runs `cases` cases of `strategy` through `check` on a server of its own (SQLite: the
/// parsers are the same on both backends), in a runtime of the campaign's own.
fn campaign<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(&TestApp, S::Value) -> futures_like::BoxedCheck<'_>,
) where
    S::Value: Clone,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut app = runtime.block_on(spawn_app(Backend::Sqlite));
    runtime.block_on(async {
        app.add_package("voice_notice", 1_000_000, "1000.00").await;
        app.add_package("sms_code", 1_000_000, "1000.00").await;
        app.add_package("voice_code", 1_000_000, "1000.00").await;
    });
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |value| runtime.block_on(check(&app, value)));
    runtime.block_on(app.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// Boxed async checks, so that a campaign takes a closure returning one.
mod futures_like {
    use proptest::test_runner::TestCaseError;
    pub type BoxedCheck<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TestCaseError>> + 'a>>;
}

/// Text as clients get it wrong: anything, and near-misses of what is valid.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_]{0,12}",
        "【卡池】[^#]{0,30}",
        "[^#]{0,20}#[a-z]{1,5}#[^#]{0,5}",
        "1[3-9][0-9]{9}",
        "(\\+86|86|0086) ?1[0-9]{10}",
        "[0-9]{0,8}",
        "\\PC{0,600}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An object with some of `fields` (each present nine times in ten, a near-miss or
/// anything), and now and then a stray key.
fn object_of(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> impl Strategy<Value = Value> {
    let strategies: Vec<_> = fields
        .into_iter()
        .map(|(name, values)| proptest::option::weighted(0.9, values).prop_map(move |v| (name, v)))
        .collect();
    let stray = proptest::option::weighted(0.1, (text(), json_value()));
    (strategies, stray).prop_map(|(fields, stray)| {
        let mut object = Map::new();
        for (name, value) in fields {
            if let Some(value) = value {
                object.insert(name.to_owned(), value);
            }
        }
        if let Some((name, value)) = stray {
            object.insert(name, value);
        }
        Value::Object(object)
    })
}

/// Mostly a string of `strings`, sometimes any JSON at all.
fn mostly(strings: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![4 => strings.prop_map(Value::String), 1 => json_value()].boxed()
}

fn one_of_or_anything(choices: &[&'static str]) -> BoxedStrategy<Value> {
    let named = proptest::sample::select(choices.to_vec()).prop_map(|s| json!(s));
    prop_oneof![3 => named, 1 => json_value()].boxed()
}

/// A request body: JSON that may or may not be a valid send, or bytes.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Json(value) => serde_json::to_vec(value).unwrap(),
            Body::Bytes(bytes) => bytes.clone(),
        }
    }
}

fn body_of(object: impl Strategy<Value = Value>) -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => object.prop_map(Body::Json),
        1 => json_value().prop_map(Body::Json),
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ]
}

fn send_bodies() -> impl Strategy<Value = Body> {
    let params = prop_oneof![
        4 => proptest::collection::btree_map(
            prop_oneof![Just("code".to_owned()), "[a-z]{1,6}"],
            prop_oneof!["[0-9]{4,6}", text()],
            0..3
        )
        .prop_map(|m| json!(m)),
        1 => json_value(),
    ];
    let channel = || one_of_or_anything(&["sms_code", "voice_notice", "voice_code", "fax"]);
    let to = || mostly(prop_oneof!["1[3-9][0-9]{9}", text()]);
    let template = || one_of_or_anything(&["login_code", "nope"]);
    let content = || mostly(prop_oneof!["[0-9]{4,6}", text()]);
    body_of(prop_oneof![
        object_of(vec![
            ("channel", channel()),
            ("to", to()),
            ("template", template()),
            ("params", params.boxed()),
        ]),
        object_of(vec![
            ("channel", channel()),
            ("to", to()),
            ("content", content())
        ]),
        object_of(vec![
            ("channel", channel()),
            ("to", to()),
            ("template", template()),
            ("content", content()),
        ]),
    ])
}

#[test]
fn any_send_body_is_sent_once_or_refused_with_a_spec_error_changing_nothing() {
    campaign(CASES, send_bodies(), |app, body| {
        Box::pin(async move {
            let before = fingerprint(app).await;
            let (status, answer) = answer(
                app.http
                    .post(app.url("/v1/messages"))
                    .bearer_auth(SHOP_TOKEN)
                    .header("content-type", "application/json")
                    .body(body.bytes()),
            )
            .await;
            let after = fingerprint(app).await;
            prop_assert!(status < 500, "{status} for {body:?}: {answer}");
            if status == 200 {
                prop_assert_eq!(answer["status"].as_str(), Some("sent"));
                prop_assert_eq!(after.vendor_calls, before.vendor_calls + 1, "sent once");
                prop_assert_eq!(after.sends, before.sends + 1);
            } else {
                spec_error(status, &answer)?;
                prop_assert_eq!(after, before, "a refusal changed something: {}", answer);
            }
            Ok(())
        })
    });
}

fn package_bodies() -> impl Strategy<Value = Body> {
    let units = prop_oneof![
        (1..10_000i64).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
        json_value(),
    ];
    let price = prop_oneof![
        "[0-9]{1,4}(\\.[0-9]{1,3})?".prop_map(Value::String),
        text().prop_map(Value::String),
        json_value(),
    ];
    let instant = prop_oneof![
        "20[0-9]{2}-[01][0-9]-[0-3][0-9](T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z)?"
            .prop_map(Value::String),
        text().prop_map(Value::String),
        json_value(),
    ];
    body_of(object_of(vec![
        (
            "channel",
            one_of_or_anything(&["sms_code", "voice_notice", "fax"]),
        ),
        ("units", units.boxed()),
        ("price", price.boxed()),
        ("purchased_at", instant.clone().boxed()),
        ("expires_at", instant.boxed()),
        (
            "order_id",
            prop_oneof![text().prop_map(Value::String), json_value()].boxed(),
        ),
        (
            "note",
            prop_oneof![text().prop_map(Value::String), json_value()].boxed(),
        ),
    ]))
}

#[test]
fn any_package_body_registers_one_package_or_is_refused_changing_nothing() {
    campaign(CASES, package_bodies(), |app, body| {
        Box::pin(async move {
            let before = fingerprint(app).await;
            let (status, answer) = answer(
                app.http
                    .post(app.url("/v1/packages"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("content-type", "application/json")
                    .body(body.bytes()),
            )
            .await;
            let after = fingerprint(app).await;
            prop_assert_eq!(after.vendor_calls, before.vendor_calls);
            match status {
                201 => prop_assert_eq!(after.packages, before.packages + 1),
                // The same order id again: the first record, nothing new.
                200 => prop_assert_eq!(after, before),
                _ => {
                    prop_assert!(
                        status == 400 || status == 413 || status == 415,
                        "{status}: {answer}"
                    );
                    spec_error(status, &answer)?;
                    prop_assert_eq!(after, before);
                }
            }
            Ok(())
        })
    });
}

fn reconciliation_bodies() -> impl Strategy<Value = Body> {
    let remaining = prop_oneof![
        (0..1_000_000i64).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        json_value(),
    ];
    body_of(object_of(vec![
        (
            "channel",
            one_of_or_anything(&["sms_code", "voice_notice", "fax"]),
        ),
        ("remaining", remaining.boxed()),
        (
            "note",
            prop_oneof![text().prop_map(Value::String), json_value()].boxed(),
        ),
    ]))
}

#[test]
fn any_reconciliation_body_records_one_or_is_refused_changing_nothing() {
    campaign(CASES, reconciliation_bodies(), |app, body| {
        Box::pin(async move {
            let before = fingerprint(app).await;
            let (status, answer) = answer(
                app.http
                    .post(app.url("/v1/reconciliations"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("content-type", "application/json")
                    .body(body.bytes()),
            )
            .await;
            let after = fingerprint(app).await;
            prop_assert_eq!(after.vendor_calls, before.vendor_calls);
            if status == 201 {
                prop_assert_eq!(after.reconciliations, before.reconciliations + 1);
            } else {
                prop_assert!(
                    status == 400 || status == 413 || status == 415,
                    "{status}: {answer}"
                );
                spec_error(status, &answer)?;
                prop_assert_eq!(after, before);
            }
            Ok(())
        })
    });
}

/// Query strings and form bodies as broken clients write them: stray `%`, escapes of
/// bytes that are not UTF-8, repeated and empty keys, `+`, `;`, raw Unicode; half of
/// them around a valid `mobile` and `content`.
fn url_encoded() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[ -~]{1,6}",
        "%[0-9A-Fa-f]{2}",
        "%[89A-Fa-f][0-9A-Fa-f]",
        "%[G-Zg-z]?",
        Just("&".to_owned()),
        Just("=".to_owned()),
        Just("content=".to_owned()),
        Just("mobile=".to_owned()),
        "&mobile=1[3-9][0-9]{9}",
        "&content=[^&#%]{1,20}",
        "\\PC{1,4}",
    ];
    let noise = proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat());
    let valid =
        ("1[3-9][0-9]{9}", "[^&#%]{1,30}", noise.clone()).prop_map(|(mobile, content, noise)| {
            let content: String =
                url::form_urlencoded::byte_serialize(content.as_bytes()).collect();
            format!("mobile={mobile}&content={content}&{noise}")
        });
    prop_oneof![noise, valid]
}

#[test]
fn the_proxy_decodes_any_query_or_form_into_a_send_or_a_refusal_that_changes_nothing() {
    let requests = (url_encoded(), url_encoded(), any::<bool>());
    campaign(CASES, requests, |app, (query, form, post)| {
        Box::pin(async move {
            let before = fingerprint(app).await;
            let url = format!("{}?{query}", app.url("/chuangxin/yytz"));
            let request = if post {
                app.http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form.clone())
            } else {
                app.http.get(url)
            };
            let response = request
                .header("authorization", format!("APPCODE {SHOP_TOKEN}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let message = response
                .headers()
                .get("x-ca-error-message")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let after = fingerprint(app).await;
            prop_assert!(status < 500, "{status} for ?{query} / {form}: {message:?}");
            if after.vendor_calls == before.vendor_calls {
                prop_assert!(status != 200, "200 without a vendor call");
                prop_assert!(message.is_some(), "a refusal says why, as the gateway does");
                prop_assert_eq!(after, before, "a refusal changed something");
            } else {
                prop_assert_eq!(status, 200);
                prop_assert_eq!(after.vendor_calls, before.vendor_calls + 1);
                prop_assert_eq!(after.sends, before.sends + 1);
            }
            Ok(())
        })
    });
}

proptest! {
    #![proptest_config(Config { cases: PARSER_CASES, failure_persistence: None, ..Config::default() })]

    /// Any template text either parses or is refused; a parsed one renders with any
    /// parameters or names what is wrong, and a rendering keeps no variable.
    #[test]
    fn any_template_and_parameters_render_or_are_refused(
        source in text(),
        params in proptest::collection::btree_map(prop_oneof!["[a-z]{1,4}", text()], text(), 0..4),
    ) {
        let Ok(template) = TemplateBody::parse(&source) else { return Ok(()) };
        if let Ok(rendered) = template.render(&params) {
            let names: Vec<&str> = template.variables().collect();
            for name in names {
                let variable = format!("#{name}#");
                let left = rendered.matches(variable.as_str()).count();
                let given = params.values().map(|v| v.matches(variable.as_str()).count()).sum::<usize>();
                prop_assert!(left <= given, "{variable} left in {rendered:?}");
            }
        }
    }

    /// Any text is rated by SPEC §3's formula or refused as too long or unsigned.
    #[test]
    fn any_text_is_rated_by_the_formula_or_refused(text in text()) {
        let len = text.encode_utf16().count();
        if let Ok(units) = rate_sms(&text) {
            let expected = if len <= 70 { 1 } else { len.div_ceil(67) };
            prop_assert!(len <= 500);
            prop_assert_eq!(units.get() as usize, expected);
        }
        // And every kind's content rules either rate it or name the problem.
        for kind in [
            ChannelKind::SmsCode,
            ChannelKind::SmsNotice,
            ChannelKind::SmsMarketing,
            ChannelKind::VoiceCode,
            ChannelKind::VoiceNotice,
        ] {
            let rules = ContentRules::with_defaults(kind, chrono_tz::Asia::Shanghai);
            if let Err(err) = rate_message(&rules, MessageBody::Text(&text), chrono::Utc::now()) {
                prop_assert!(!err.code().is_empty());
            }
        }
    }

    /// Any text at all as a configuration file: it loads, or the loader says why; it
    /// never panics.
    #[test]
    fn any_text_as_configuration_loads_or_names_its_problems(text in text()) {
        check_config(&text)?;
    }

    /// Configuration-shaped TOML with wrong, missing and stray keys and values of every
    /// type: it loads, or every problem is named with its key.
    #[test]
    fn any_configuration_shaped_toml_loads_or_names_its_problems(table in config_tables()) {
        let text = toml::to_string(&table).unwrap();
        check_config(&text)?;
    }
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    let env = |_: &str| Some("a-secret-from-the-environment".to_owned());
    match tollgate::config::load_str("campaign", text, &env) {
        Ok(_) => {}
        Err(tollgate::config::LoadError::Invalid { problems, .. }) => {
            prop_assert!(!problems.is_empty());
            for problem in &problems {
                prop_assert!(
                    !problem.key.is_empty() && !problem.problem.is_empty(),
                    "{problem:?}"
                );
            }
        }
        Err(tollgate::config::LoadError::Parse { message, .. }) => {
            prop_assert!(!message.is_empty());
        }
        Err(other) => prop_assert!(false, "{other}"),
    }
    Ok(())
}

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        text().prop_map(toml::Value::String),
        prop_oneof![
            "-?[0-9]{1,4}(ms|s|m|h|d)",
            "[0-9]{1,2}%",
            "\\*/[0-9] \\* \\* \\* \\*",
            "[a-z_]{1,10}"
        ]
        .prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        proptest::collection::vec(inner, 0..3).prop_map(toml::Value::Array)
    })
}

const SECTIONS: &[&str] = &[
    "server",
    "database",
    "ledger",
    "privacy",
    "upstream",
    "alerts",
    "schedule",
    "metrics",
    "marketplace",
];
const TABLE_ARRAYS: &[&str] = &[
    "channels",
    "templates",
    "clients",
    "alert_rules",
    "notifiers",
];
const KEYS: &[&str] = &[
    "listen",
    "timezone",
    "shutdown_grace",
    "header_read_timeout",
    "request_timeout",
    "max_connections",
    "max_in_flight_sends",
    "url",
    "lock_timeout",
    "statement_timeout",
    "idle_in_transaction_timeout",
    "sqlite_synchronous",
    "mode",
    "reservation_timeout",
    "sweep_every",
    "store_full_numbers",
    "appcode_env",
    "timeout",
    "name",
    "kind",
    "method",
    "proxy_path",
    "repurchase_url",
    "signature",
    "unsubscribe_suffix",
    "sending_window",
    "package_sizes",
    "product_code",
    "format",
    "channel",
    "body",
    "vendor_template_id",
    "token_env",
    "admin",
    "channels",
    "remaining_ratio_below",
    "remaining_units_below",
    "days_left_below",
    "expires_within",
    "severity",
    "notify",
    "repeat_every",
    "type",
    "smtp_url",
    "from",
    "to",
    "secret_env",
    "command",
    "args",
    "env",
    "quota_check",
    "monthly_report",
    "report_notify",
    "token_env",
    "suggest_days",
    "builtin_notify",
    "access_key_id_env",
    "access_key_secret_env",
    "endpoint",
    "apply",
    "drift_alert_units",
];

fn key_values() -> impl Strategy<Value = toml::map::Map<String, toml::Value>> {
    let key = prop_oneof![9 => proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned), 1 => "[a-z_]{1,8}"];
    proptest::collection::btree_map(key, toml_value(), 0..6).prop_map(|m| m.into_iter().collect())
}

fn config_tables() -> impl Strategy<Value = toml::Value> {
    let sections = proptest::collection::btree_map(
        proptest::sample::select(SECTIONS.to_vec()).prop_map(str::to_owned),
        key_values().prop_map(toml::Value::Table),
        0..4,
    );
    let arrays = proptest::collection::btree_map(
        proptest::sample::select(TABLE_ARRAYS.to_vec()).prop_map(str::to_owned),
        proptest::collection::vec(key_values().prop_map(toml::Value::Table), 0..3)
            .prop_map(toml::Value::Array),
        0..4,
    );
    (sections, arrays).prop_map(|(sections, arrays)| {
        let mut table: toml::map::Map<String, toml::Value> = sections.into_iter().collect();
        table.extend(arrays);
        toml::Value::Table(table)
    })
}

on_both_backends!(bad_requests_get_their_spec_error_change_nothing_and_never_reach_the_vendor,);

async fn bad_requests_get_their_spec_error_change_nothing_and_never_reach_the_vendor(
    backend: Backend,
) {
    let mut app = spawn_app_with(backend, AppOptions::default()).await;
    app.add_package("sms_code", 100, "10.00").await;
    let before = fingerprint(&app).await;
    let valid = json!({ "channel": "sms_code", "to": "13912345678", "template": "login_code", "params": { "code": "482913" } });
    let valid_bytes = serde_json::to_vec(&valid).unwrap();
    let oversized = {
        let mut body = valid.clone();
        body["params"]["code"] = json!("1".repeat(2 * 1024 * 1024));
        serde_json::to_vec(&body).unwrap()
    };
    let mut invalid_utf8 = br#"{"channel":"sms_code","to":"13912345678","content":"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0x80]);
    invalid_utf8.extend_from_slice(br#""}"#);
    let messages = app.url("/v1/messages");
    let post = |token: Option<&str>, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = app.http.post(&messages).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request
    };
    let json_type = Some("application/json");
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "an oversized body",
            post(Some(SHOP_TOKEN), json_type, oversized.clone()),
            413,
            "payload_too_large",
        ),
        (
            "invalid UTF-8",
            post(Some(SHOP_TOKEN), json_type, invalid_utf8),
            400,
            "invalid_request",
        ),
        (
            "not JSON",
            post(Some(SHOP_TOKEN), json_type, b"channel=sms_code".to_vec()),
            400,
            "invalid_request",
        ),
        (
            "no content type",
            post(Some(SHOP_TOKEN), None, valid_bytes.clone()),
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            post(Some(SHOP_TOKEN), Some("text/plain"), valid_bytes.clone()),
            415,
            "unsupported_media_type",
        ),
        (
            "a form",
            post(
                Some(SHOP_TOKEN),
                Some("application/x-www-form-urlencoded"),
                valid_bytes.clone(),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            "JSON in Latin-1",
            post(
                Some(SHOP_TOKEN),
                Some("application/json; charset=latin1"),
                valid_bytes.clone(),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            "no token",
            post(None, json_type, valid_bytes.clone()),
            401,
            "unauthorized",
        ),
        (
            "a wrong token",
            post(Some("not-a-token"), json_type, valid_bytes.clone()),
            401,
            "unauthorized",
        ),
        (
            "another scheme",
            app.http
                .post(&messages)
                .header("authorization", format!("Basic {SHOP_TOKEN}"))
                .json(&valid),
            401,
            "unauthorized",
        ),
        (
            "a token with a character too many",
            post(
                Some(&format!("{SHOP_TOKEN}x")),
                json_type,
                valid_bytes.clone(),
            ),
            401,
            "unauthorized",
        ),
        (
            "the admin's token misspelt",
            post(Some(&ADMIN_TOKEN[1..]), json_type, valid_bytes.clone()),
            401,
            "unauthorized",
        ),
        (
            "an oversized package",
            app.http
                .post(app.url("/v1/packages"))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body(oversized.clone()),
            413,
            "payload_too_large",
        ),
        (
            "a non-admin registering a package",
            app.request_as(Method::POST, "/v1/packages", SHOP_TOKEN)
                .json(&json!({"channel": "sms_code", "units": 10, "price": "1"})),
            403,
            "forbidden",
        ),
        (
            "a non-admin listing packages",
            app.request_as(Method::GET, "/v1/packages", SHOP_TOKEN),
            403,
            "forbidden",
        ),
        (
            "a non-admin reconciling",
            app.request_as(Method::POST, "/v1/reconciliations", SHOP_TOKEN)
                .json(&json!({"channel": "sms_code", "remaining": 0})),
            403,
            "forbidden",
        ),
        (
            "a non-admin acknowledging",
            app.request_as(Method::POST, "/v1/alerts/alr_x/ack", SHOP_TOKEN),
            403,
            "forbidden",
        ),
        (
            "no token on the packages",
            app.http.get(app.url("/v1/packages")),
            401,
            "unauthorized",
        ),
        (
            "no token on the quota",
            app.http.get(app.url("/v1/quota")),
            401,
            "unauthorized",
        ),
        (
            "a package as text",
            app.http
                .post(app.url("/v1/packages"))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "text/plain")
                .body(r#"{"channel":"sms_code","units":10,"price":"1"}"#),
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, body) = answer(request).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
        assert_ne!(body["error"]["charged"], true, "{what}");
        assert_eq!(fingerprint(&app).await, before, "{what} changed something");
    }
    // The drop-in proxy answers as the vendor's gateway does: a wrong token is an
    // invalid AppCode, and an oversized body is refused, with nothing sent.
    let proxy = app.url("/chuangxin/yytz?mobile=13912345678&content=hello");
    for (what, request, status) in [
        ("no AppCode", app.http.get(&proxy), 400),
        (
            "a wrong AppCode",
            app.http
                .get(&proxy)
                .header("authorization", "APPCODE not-a-token"),
            400,
        ),
        (
            "the AppCode scheme missing",
            app.http.get(&proxy).header("authorization", SHOP_TOKEN),
            400,
        ),
        (
            "an oversized form",
            app.http
                .post(&proxy)
                .header("authorization", format!("APPCODE {SHOP_TOKEN}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(oversized.clone()),
            413,
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(fingerprint(&app).await, before, "{what} changed something");
    }
    assert_eq!(app.vendor.calls(), 0, "nothing reached the vendor");
    app.stop().await;
}
