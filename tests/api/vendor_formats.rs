//! Vendor formats end to end: the real vendor client against the real sandbox vendor,
//! for a kapool channel and a template channel, and the configuration of both; then a
//! template channel through the running server (`POST /v1/messages`) on both backends,
//! to a scripted stand-in vendor and to the sandbox.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tollgate::config::{load_str, LoadError};
use tollgate::domain::{Outcome, VendorMethod};
use tollgate::secret::Secret;
use tollgate::upstream::format::{ParamsIn, ParamsStyle};
use tollgate::upstream::sandbox::{self, SandboxConfig, SandboxHandle};
use tollgate::upstream::{
    TemplateFormat, VendorCall, VendorClient, VendorFormat, VendorMessage, VendorReply,
};
use tollgate_notify::{EventKind, Severity, Status};

use crate::app::{
    spawn_app_with, AppOptions, TestApp, APPCODE as SERVER_APPCODE, MOBILE as SERVER_MOBILE,
    SHOP_TOKEN,
};
use crate::helpers::Backend;
use crate::notifiers::{verify_webhook, Receiver};
use crate::on_both_backends;
use crate::vendor::{Reply, StandInVendor};

const APPCODE: &str = "vendor-formats-appcode";
const MOBILE: &str = "13800138000";
const TEMPLATE_ID: &str = "908e94ccf08b4476ba6c876d13f084ad";
const SIGN_ID: &str = "2e65b1bb3d054466b82f0c9d125465e2";
const KAPOOL_PATH: &str = "/chuangxin/dxjk";
const TEMPLATE_PATH: &str = "/sms/smsSend";

async fn sandbox(config: SandboxConfig) -> SandboxHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    sandbox::spawn(listener, config).await
}

fn account(quota: u64) -> SandboxConfig {
    SandboxConfig::one_account(Secret::new(APPCODE), quota)
}

fn client() -> VendorClient {
    VendorClient::new(Duration::from_secs(5)).unwrap()
}

/// The gyytz-shaped channel of SPEC §13.
fn gyytz() -> TemplateFormat {
    TemplateFormat {
        mobile_param: "mobile".into(),
        template_id_param: "templateId".into(),
        params_param: Some("param".into()),
        params_style: ParamsStyle::Pairs,
        params_in: ParamsIn::Query,
        static_params: BTreeMap::from([("smsSignId".to_owned(), SIGN_ID.to_owned())]),
        success_field: "code".into(),
        success_values: vec!["0".into()],
        remaining_field: Some("balance".into()),
    }
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One send of `message` through `format` to the sandbox at `path`.
struct Send<'a> {
    format: &'a VendorFormat,
    path: &'a str,
    message: VendorMessage<'a>,
    mobile: &'a str,
    appcode: &'a str,
}

impl Send<'_> {
    async fn to(&self, sandbox: &SandboxHandle, client: &VendorClient) -> VendorReply {
        let url = sandbox.url(self.path);
        let appcode = Secret::new(self.appcode);
        client
            .call(VendorCall {
                format: self.format,
                url: &url,
                method: VendorMethod::Post,
                appcode: &appcode,
                mobile: self.mobile,
                message: self.message,
            })
            .await
    }
}

fn kapool_send<'a>(format: &'a VendorFormat, text: &'a str) -> Send<'a> {
    Send {
        format,
        path: KAPOOL_PATH,
        message: VendorMessage::Text(text),
        mobile: MOBILE,
        appcode: APPCODE,
    }
}

fn template_send<'a>(format: &'a VendorFormat, params: &'a BTreeMap<String, String>) -> Send<'a> {
    Send {
        format,
        path: TEMPLATE_PATH,
        message: VendorMessage::Template {
            template_id: TEMPLATE_ID,
            params,
        },
        mobile: MOBILE,
        appcode: APPCODE,
    }
}

#[tokio::test]
async fn a_kapool_channel_sends_the_text_and_reads_return_status() {
    let sandbox = sandbox(account(5)).await;
    let format = VendorFormat::Kapool;
    let text = "【卡池】你的验证码是：1234，3分钟内有效！";

    let sent = kapool_send(&format, text).to(&sandbox, &client()).await;
    let unsigned = kapool_send(&format, "你的验证码是：1234")
        .to(&sandbox, &client())
        .await;

    let received = sandbox.received();
    assert_eq!(received[0].query_value("content"), Some(text));
    assert_eq!(received[0].query_value("mobile"), Some(MOBILE));
    assert_eq!(received[0].query_value("templateId"), None);
    let answer = &sent.answer;
    assert_eq!((answer.outcome, answer.charged), (Outcome::Sent, true));
    assert_eq!(answer.remain_point, Some(4));
    assert!(answer.task_id.is_some());
    let answer = &unsigned.answer;
    assert_eq!(
        (answer.outcome, answer.charged),
        (Outcome::VendorRejected, true)
    );
    assert_eq!(answer.message.as_deref(), Some("需要签名"));
    assert_eq!(sandbox.remaining(APPCODE), Some(3));
}

#[tokio::test]
async fn a_template_channel_sends_number_template_id_and_pairs_in_the_query() {
    let sandbox = sandbox(account(14)).await;
    let format = VendorFormat::Template(gyytz());
    let params = params(&[("minute", "5"), ("code", "12345")]);

    let reply = template_send(&format, &params)
        .to(&sandbox, &client())
        .await;

    let request = &sandbox.received()[0];
    assert_eq!(request.path, TEMPLATE_PATH);
    assert_eq!(request.query_value("mobile"), Some(MOBILE));
    assert_eq!(request.query_value("templateId"), Some(TEMPLATE_ID));
    assert_eq!(
        request.query_value("param"),
        Some("**code**:12345,**minute**:5")
    );
    assert_eq!(request.query_value("smsSignId"), Some(SIGN_ID));
    assert_eq!(request.query_value("content"), None, "no text is sent");
    assert!(request.form.is_empty());
    assert_eq!(
        request.authorization.as_ref().map(Secret::expose),
        Some(format!("APPCODE {APPCODE}").as_str())
    );
    let answer = &reply.answer;
    assert_eq!((answer.outcome, answer.charged), (Outcome::Sent, true));
    assert_eq!(answer.message.as_deref(), Some("成功"));
    assert_eq!(answer.remain_point, Some(13), "the vendor's balance");
    assert_eq!(answer.task_id.as_deref().map(str::len), Some(27));
    assert!(answer.request_id.is_some());
    assert_eq!(sandbox.remaining(APPCODE), Some(13));
}

#[tokio::test]
async fn json_params_in_a_form_body_reach_the_vendor_whole() {
    let sandbox = sandbox(account(5)).await;
    let format = VendorFormat::Template(TemplateFormat {
        params_style: ParamsStyle::Json,
        params_in: ParamsIn::Form,
        ..gyytz()
    });
    let params = params(&[("name", "张三"), ("time", "10:30, 周五"), ("code", "1234")]);

    let reply = template_send(&format, &params)
        .to(&sandbox, &client())
        .await;

    assert_eq!(reply.answer.outcome, Outcome::Sent);
    let request = &sandbox.received()[0];
    assert!(request.query.is_empty(), "{request:?}");
    assert_eq!(request.form_value("mobile"), Some(MOBILE));
    assert_eq!(request.form_value("templateId"), Some(TEMPLATE_ID));
    assert_eq!(request.form_value("smsSignId"), Some(SIGN_ID));
    let sent: BTreeMap<String, String> =
        serde_json::from_str(request.form_value("param").unwrap()).unwrap();
    assert_eq!(sent, params);
}

#[tokio::test]
async fn a_template_vendors_business_failure_is_rejected_and_charged() {
    let sandbox = sandbox(account(5)).await;
    let format = VendorFormat::Template(gyytz());
    let params = params(&[("code", "1234")]);
    let send = Send {
        mobile: "12345",
        ..template_send(&format, &params)
    };

    let reply = send.to(&sandbox, &client()).await;

    let answer = &reply.answer;
    assert_eq!(
        (answer.outcome, answer.charged),
        (Outcome::VendorRejected, true)
    );
    assert_eq!(answer.message.as_deref(), Some("手机号码格式错误"));
    assert_eq!(answer.task_id, None);
    assert_eq!(sandbox.remaining(APPCODE), Some(4), "the vendor bills it");
    assert_eq!(sandbox.stats().rejections, 1);
}

#[tokio::test]
async fn an_injected_rejection_is_rejected_on_either_format() {
    let sandbox = sandbox(SandboxConfig {
        reject_rate: 1.0,
        ..account(5)
    })
    .await;
    let kapool = VendorFormat::Kapool;
    let template = VendorFormat::Template(gyytz());
    let params = params(&[("code", "1234")]);

    let by_kapool = kapool_send(&kapool, "【卡池】hi")
        .to(&sandbox, &client())
        .await;
    let by_template = template_send(&template, &params)
        .to(&sandbox, &client())
        .await;

    for reply in [by_kapool, by_template] {
        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::VendorRejected, true)
        );
        assert_eq!(reply.answer.message.as_deref(), Some("提交失败"));
    }
    assert_eq!(sandbox.remaining(APPCODE), Some(3));
}

/// Runs one send of each format against a sandbox built by `config`, returning each
/// outcome with whether it was charged.
async fn both_formats(config: SandboxConfig, appcode: &str) -> Vec<(Outcome, bool)> {
    let sandbox = sandbox(config).await;
    let client = VendorClient::new(Duration::from_millis(500)).unwrap();
    let kapool = VendorFormat::Kapool;
    let template = VendorFormat::Template(gyytz());
    let params = params(&[("code", "1234")]);
    let sends = [
        Send {
            appcode,
            ..kapool_send(&kapool, "【卡池】hi")
        },
        Send {
            appcode,
            ..template_send(&template, &params)
        },
    ];
    let mut outcomes = Vec::new();
    for send in &sends {
        let reply = send.to(&sandbox, &client).await;
        outcomes.push((reply.answer.outcome, reply.answer.charged));
    }
    outcomes
}

#[tokio::test]
async fn the_gateways_answers_are_the_same_for_both_formats() {
    let wrong_appcode = both_formats(account(5), "0000-not-the-appcode").await;
    let exhausted = both_formats(account(0), APPCODE).await;
    let failing = both_formats(
        SandboxConfig {
            failure_rate: 1.0,
            ..account(5)
        },
        APPCODE,
    )
    .await;
    let throttled = both_formats(
        SandboxConfig {
            throttle_per_second: Some(0),
            ..account(5)
        },
        APPCODE,
    )
    .await;
    let hanging = both_formats(
        SandboxConfig {
            timeout_rate: 1.0,
            ..account(5)
        },
        APPCODE,
    )
    .await;

    for (outcomes, expected) in [
        (wrong_appcode, (Outcome::AuthFailed, false)),
        (exhausted, (Outcome::VendorQuotaExhausted, false)),
        (failing, (Outcome::UpstreamError, false)),
        (throttled, (Outcome::Throttled, false)),
        (hanging, (Outcome::Uncertain, true)),
    ] {
        assert_eq!(outcomes, [expected, expected]);
    }
}

#[tokio::test]
async fn the_vendor_quota_is_one_pool_for_both_formats() {
    let sandbox = sandbox(account(2)).await;
    let kapool = VendorFormat::Kapool;
    let template = VendorFormat::Template(gyytz());
    let params = params(&[("code", "1234")]);
    let client = client();

    let first = kapool_send(&kapool, "【卡池】hi")
        .to(&sandbox, &client)
        .await;
    let second = template_send(&template, &params)
        .to(&sandbox, &client)
        .await;
    let third = template_send(&template, &params)
        .to(&sandbox, &client)
        .await;

    assert_eq!(first.answer.remain_point, Some(1));
    assert_eq!(second.answer.remain_point, Some(0));
    assert_eq!(
        (third.answer.outcome, third.answer.charged),
        (Outcome::VendorQuotaExhausted, false)
    );
}

const SPEC_SECTION_13: &str = r#"
[[channels]]
name = "backup_sms"
kind = "sms_code"
format = "template"
url = "https://example.market.alicloudapi.com/sms/smsSend"
method = "POST"
mobile_param = "mobile"
template_id_param = "templateId"
params_param = "param"
params_style = "pairs"
static_params = { smsSignId = "2e65b1bb3d054466b82f0c9d125465e2" }
success_field = "code"
success_values = ["0"]
remaining_field = "balance"

[[templates]]
name = "login_code"
channel = "backup_sms"
body = "【某某】验证码#code#，5分钟内有效"
vendor_template_id = "908e94ccf08b4476ba6c876d13f084ad"
"#;

#[test]
fn the_spec_example_of_a_template_channel_loads() {
    let settings = load_str("spec §13", SPEC_SECTION_13, &|_| None).unwrap();

    let channel = settings.channel("backup_sms").unwrap();
    assert_eq!(channel.format, VendorFormat::Template(gyytz()));
    assert_eq!(
        settings.templates[0].vendor_template_id.as_deref(),
        Some(TEMPLATE_ID)
    );
    assert_eq!(
        settings.templates[0].body.as_str(),
        "【某某】验证码#code#，5分钟内有效"
    );
}

#[test]
fn a_channel_without_format_is_kapool() {
    let text = r#"
        [[channels]]
        name = "sms_code"
        kind = "sms_code"
        url = "https://dxyzm.market.alicloudapi.com/chuangxin/dxjk"
        signature = "【卡池】"
        [[templates]]
        name = "login"
        channel = "sms_code"
        body = "你的验证码是：#code#"
    "#;

    let settings = load_str("kapool", text, &|_| None).unwrap();

    assert_eq!(settings.channels[0].format, VendorFormat::Kapool);
    assert_eq!(settings.templates[0].vendor_template_id, None);
}

#[test]
fn the_config_check_names_every_vendor_format_problem_with_its_key() {
    let text = r#"
        [[channels]]
        name = "no_success_field"
        kind = "sms_code"
        format = "template"
        url = "https://a.example/sms/smsSend"
        method = "POST"
        mobile_param = "mobile"
        template_id_param = "templateId"
        params_param = "param"
        success_values = ["0"]

        [[channels]]
        name = "no_field_names"
        kind = "sms_code"
        format = "template"
        url = "https://b.example/sms/smsSend"
        success_field = "code"
        success_values = ["0"]
        params_style = "xml"

        [[channels]]
        name = "unknown_format"
        kind = "sms_code"
        format = "dysms"
        url = "https://c.example/send"

        [[channels]]
        name = "kapool_with_template_keys"
        kind = "sms_code"
        url = "https://d.example/chuangxin/dxjk"
        success_field = "code"
        template_id_param = "templateId"

        [[channels]]
        name = "form_on_get"
        kind = "sms_code"
        format = "template"
        url = "https://e.example/sms/smsSend"
        method = "GET"
        mobile_param = "mobile"
        template_id_param = "templateId"
        params_in = "form"
        success_field = "code"
        success_values = ["0"]

        [[templates]]
        name = "login"
        channel = "no_success_field"
        body = "【某某】验证码#code#"

        [[templates]]
        name = "login"
        channel = "kapool_with_template_keys"
        body = "【卡池】验证码#code#"
        vendor_template_id = "T-1"

        [[templates]]
        name = "login"
        channel = "form_on_get"
        body = "【某某】验证码#code#"
        vendor_template_id = "T-2"
    "#;

    let problems = match load_str("t", text, &|_| None) {
        Err(LoadError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    };

    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "channels[0].success_field",
            "channels[1].mobile_param",
            "channels[1].template_id_param",
            "channels[1].params_style",
            "channels[2].format",
            "channels[3].template_id_param",
            "channels[3].success_field",
            "channels[4].params_in",
            "templates[0].vendor_template_id",
            "templates[1].vendor_template_id",
            "templates[2].body",
        ]
    );
    let about = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.problem.clone())
            .unwrap()
    };
    assert!(about("channels[1].params_style").contains("xml"));
    assert!(about("channels[2].format").contains("dysms"));
    assert!(about("templates[0].vendor_template_id").contains("required"));
    assert!(about("templates[2].body").contains("params_param"));
}

// A template channel through the running server: what the vendor is sent, how its
// answer is read, and what the ledger charges.

on_both_backends!(
    a_template_channel_is_sent_the_number_template_id_and_pairs_in_the_query,
    a_template_channels_answer_is_read_by_its_own_success_rule,
    a_template_channel_charges_the_segments_of_the_template_body,
    json_params_in_a_form_body_reach_the_sandbox_through_the_server,
    a_vendor_count_that_drifts_from_the_ledger_fires_one_signed_drift_webhook_and_resolves_back_in_line,
);

/// The template channel of these tests, beside the standard test configuration's.
const TEMPLATE_CHANNEL: &str = "tpl_sms";

/// Two templates with the same variables, rated as the signature plus the rendered
/// body (SPEC §3): with [`server_params`] the short one renders to 70 characters (one
/// segment) and the long one, one comma more, to 71 (two segments of 67).
const SHORT_BODY: &str = "【某某】#name#您好，您的验证码为#code#，五分钟内有效。为保障账户安全，请勿将验证码告知他人，包括自称客服的人员。如非本人操作请您忽略本短信。";
const LONG_BODY: &str = "【某某】#name#您好，您的验证码为#code#，五分钟内有效。为保障账户安全，请勿将验证码告知他人，包括自称客服的人员。如非本人操作，请您忽略本短信。";
const SHORT_TEMPLATE_ID: &str = "TPL-SHORT-70";
const LONG_TEMPLATE_ID: &str = "TPL-LONG-71";

/// The parameters every send here gives; as `**k**:v` pairs, in name order.
fn server_params() -> Value {
    json!({ "name": "张三", "code": "1234" })
}
const SERVER_PAIRS: &str = "**code**:1234,**name**:张三";

/// SPEC §3's SMS length of `body` rendered with [`server_params`]: UTF-16 code units.
fn rendered_len(body: &str) -> usize {
    body.replace("#name#", "张三")
        .replace("#code#", "1234")
        .encode_utf16()
        .count()
}

/// A template channel whose field names and success rule are nobody's defaults, so
/// that a request or a verdict built from anything but the configuration shows:
/// the number in `phone_number`, the id in `template_code`, pairs in `template_param`,
/// all in the query of a POST; success when `status` is `OK` or `DELIVRD`.
fn stand_in_channel_toml(url: &str) -> String {
    format!(
        r#"
        [[channels]]
        name = "{TEMPLATE_CHANNEL}"
        kind = "sms_code"
        format = "template"
        url = "{url}"
        method = "POST"
        mobile_param = "phone_number"
        template_id_param = "template_code"
        params_param = "template_param"
        params_style = "pairs"
        params_in = "query"
        static_params = {{ sign_id = "SIGN-7", app = "tollgate" }}
        success_field = "status"
        success_values = ["OK", "DELIVRD"]
        remaining_field = "left"
        {templates}
        "#,
        templates = templates_toml(),
    )
}

/// The gyytz-shaped channel of SPEC §13, but with JSON parameters in a form body.
fn sandbox_channel_toml(url: &str) -> String {
    format!(
        r#"
        [[channels]]
        name = "{TEMPLATE_CHANNEL}"
        kind = "sms_code"
        format = "template"
        url = "{url}"
        method = "POST"
        mobile_param = "mobile"
        template_id_param = "templateId"
        params_param = "param"
        params_style = "json"
        params_in = "form"
        static_params = {{ smsSignId = "{SIGN_ID}" }}
        success_field = "code"
        success_values = ["0"]
        remaining_field = "balance"
        {templates}
        "#,
        templates = templates_toml(),
    )
}

fn templates_toml() -> String {
    format!(
        r#"
        [[templates]]
        name = "short_notice"
        channel = "{TEMPLATE_CHANNEL}"
        body = "{SHORT_BODY}"
        vendor_template_id = "{SHORT_TEMPLATE_ID}"

        [[templates]]
        name = "long_notice"
        channel = "{TEMPLATE_CHANNEL}"
        body = "{LONG_BODY}"
        vendor_template_id = "{LONG_TEMPLATE_ID}"
        "#
    )
}

/// The app with the template channel in `channel_toml` and a package of 20 units on it.
async fn spawn_template_app(backend: Backend, channel_toml: String) -> TestApp {
    let app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: channel_toml,
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package(TEMPLATE_CHANNEL, 20, "1.00").await;
    app
}

/// Sends `template` to the template channel; the status and the JSON body.
async fn send_template(app: &TestApp, to: &str, template: &str) -> (u16, Value) {
    let response = app
        .send_json(&json!({
            "channel": TEMPLATE_CHANNEL,
            "to": to,
            "template": template,
            "params": server_params(),
        }))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn used(app: &TestApp) -> i64 {
    app.quota(TEMPLATE_CHANNEL).await["used"].as_i64().unwrap()
}

/// The stand-in's answer with `body`, billed by the marketplace.
fn vendor_body(body: &str) -> Reply {
    Reply::success().with_body(body)
}

async fn a_template_channel_is_sent_the_number_template_id_and_pairs_in_the_query(
    backend: Backend,
) {
    let vendor = StandInVendor::start().await;
    let mut app =
        spawn_template_app(backend, stand_in_channel_toml(&vendor.url("/sms/send"))).await;
    vendor.answer_with(vendor_body(
        r#"{"status":"OK","msg":"已提交","smsid":"T-88001","left":"417"}"#,
    ));

    // The number as a client may write it: the vendor gets the 11 national digits.
    let (status, body) = send_template(&app, &format!("+86{SERVER_MOBILE}"), "long_notice").await;

    assert_eq!(status, 200, "{body}");
    let received = vendor.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/sms/send")
    );
    let query = |name: &str| request.query.get(name).map(String::as_str);
    assert_eq!(query("phone_number"), Some(SERVER_MOBILE));
    assert_eq!(query("template_code"), Some(LONG_TEMPLATE_ID));
    assert_eq!(query("template_param"), Some(SERVER_PAIRS));
    assert_eq!(query("sign_id"), Some("SIGN-7"));
    assert_eq!(query("app"), Some("tollgate"));
    assert_eq!(request.query.len(), 5, "nothing else is sent: {request:?}");
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("APPCODE {SERVER_APPCODE}").as_str())
    );
    assert_eq!(body["channel"], TEMPLATE_CHANNEL);
    assert_eq!(
        (&body["status"], &body["charged"]),
        (&json!("sent"), &json!(true))
    );
    assert_eq!(body["units"], 2);
    assert_eq!(body["upstream"]["task_id"], "T-88001");
    assert_eq!(body["upstream"]["message"], "已提交");
    let id = body["id"].as_str().unwrap();
    let stored = app
        .get_json(&format!("/v1/messages/{id}"), SHOP_TOKEN)
        .await;
    assert_eq!(stored["upstream"]["remain_point"], 417, "{stored}");
    let quota = app.quota(TEMPLATE_CHANNEL).await;
    assert_eq!(
        (&quota["used"], &quota["remaining"]),
        (&json!(2), &json!(18))
    );
    assert_eq!(
        quota["vendor_remaining"], 417,
        "the vendor's own count: {quota}"
    );
    app.stop().await;
}

async fn a_template_channels_answer_is_read_by_its_own_success_rule(backend: Backend) {
    let vendor = StandInVendor::start().await;
    let mut app =
        spawn_template_app(backend, stand_in_channel_toml(&vendor.url("/sms/send"))).await;
    // (answer, outcome, charged): each a 200 the marketplace billed unless it says not.
    let kapool_success = r#"{"ReturnStatus":"Success","Message":"ok","RemainPoint":9,"TaskID":1}"#;
    let rows = [
        (
            vendor_body(r#"{"status":"DELIVRD","msg":"ok"}"#),
            "sent",
            true,
        ),
        (
            vendor_body(r#"{"status":"TPL_NOT_APPROVED","msg":"模板未审核"}"#),
            "vendor_rejected",
            true,
        ),
        // Kapool's success is not this channel's rule.
        (vendor_body(kapool_success), "vendor_rejected", true),
        // Success values are exact.
        (vendor_body(r#"{"status":"ok"}"#), "vendor_rejected", true),
        (vendor_body("<html>OK</html>"), "vendor_rejected", true),
        // The marketplace's own word on billing holds for every format.
        (
            vendor_body(r#"{"status":"TPL_NOT_APPROVED","msg":"模板未审核"}"#)
                .with_header("X-Ca-Market-Billing-Result", "0"),
            "vendor_rejected",
            false,
        ),
    ];

    for (reply, outcome, charged) in rows {
        let before = used(&app).await;
        vendor.answer_with(reply.clone());

        let (status, body) = send_template(&app, SERVER_MOBILE, "long_notice").await;

        let row = &reply.body;
        assert_eq!(status, 200, "{row}: {body}");
        assert_eq!(body["status"], outcome, "{row}: {body}");
        assert_eq!(body["charged"], charged, "{row}: {body}");
        let id = body["id"].as_str().unwrap();
        let stored = app.ledger.get_send(id).await.unwrap().unwrap();
        assert_eq!(stored.status.as_str(), outcome, "{row}");
        assert_eq!(stored.charged(), charged, "{row}");
        let expected = if charged { 2 } else { 0 };
        assert_eq!(used(&app).await - before, expected, "{row}");
        if row.contains("模板未审核") {
            assert_eq!(
                body["upstream"]["message"], "模板未审核",
                "the vendor's reason"
            );
        }
    }
    app.stop().await;
}

async fn a_template_channel_charges_the_segments_of_the_template_body(backend: Backend) {
    assert_eq!(rendered_len(SHORT_BODY), 70);
    assert_eq!(rendered_len(LONG_BODY), 71);
    let vendor = StandInVendor::start().await;
    let mut app =
        spawn_template_app(backend, stand_in_channel_toml(&vendor.url("/sms/send"))).await;
    vendor.answer_with(vendor_body(r#"{"status":"OK","left":"100"}"#));

    let (_, short) = send_template(&app, SERVER_MOBILE, "short_notice").await;
    let used_after_short = used(&app).await;
    let (_, long) = send_template(&app, SERVER_MOBILE, "long_notice").await;
    let used_after_long = used(&app).await;

    // The vendor is given the same few parameters both times; tollgate rates the body.
    let sent: Vec<(Option<String>, Option<String>)> = vendor
        .received()
        .iter()
        .map(|r| {
            (
                r.query.get("template_code").cloned(),
                r.query.get("template_param").cloned(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (
                Some(SHORT_TEMPLATE_ID.to_owned()),
                Some(SERVER_PAIRS.to_owned())
            ),
            (
                Some(LONG_TEMPLATE_ID.to_owned()),
                Some(SERVER_PAIRS.to_owned())
            ),
        ]
    );
    assert_eq!(
        (&short["status"], &short["units"]),
        (&json!("sent"), &json!(1))
    );
    assert_eq!(
        (&long["status"], &long["units"]),
        (&json!("sent"), &json!(2))
    );
    assert_eq!((used_after_short, used_after_long), (1, 3));
    assert_eq!(app.quota(TEMPLATE_CHANNEL).await["remaining"], 17);
    app.stop().await;
}

async fn json_params_in_a_form_body_reach_the_sandbox_through_the_server(backend: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = sandbox::spawn(
        listener,
        SandboxConfig::one_account(Secret::new(SERVER_APPCODE), 50),
    )
    .await;
    let mut app =
        spawn_template_app(backend, sandbox_channel_toml(&sandbox.url(TEMPLATE_PATH))).await;

    let (status, body) = send_template(&app, SERVER_MOBILE, "long_notice").await;

    assert_eq!(status, 200, "{body}");
    let received = sandbox.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert!(request.query.is_empty(), "{request:?}");
    assert_eq!(request.form_value("mobile"), Some(SERVER_MOBILE));
    assert_eq!(request.form_value("templateId"), Some(LONG_TEMPLATE_ID));
    assert_eq!(request.form_value("smsSignId"), Some(SIGN_ID));
    assert_eq!(request.form_value("content"), None, "no text is sent");
    let params: Value = serde_json::from_str(request.form_value("param").unwrap()).unwrap();
    assert_eq!(params, server_params());
    assert_eq!(
        (&body["status"], &body["charged"]),
        (&json!("sent"), &json!(true))
    );
    assert_eq!(body["units"], 2);
    assert_eq!(body["upstream"]["message"], "成功");
    assert_eq!(
        sandbox.remaining(SERVER_APPCODE),
        Some(49),
        "one call billed"
    );
    let quota = app.quota(TEMPLATE_CHANNEL).await;
    assert_eq!(quota["used"], 2);
    assert_eq!(
        quota["vendor_remaining"], 49,
        "read from `balance`: {quota}"
    );
    app.stop().await;
}

/// The value of the series `name{channel="tpl_sms"}` in a scrape, if there is one.
fn tpl_series(metrics: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{channel=\"{TEMPLATE_CHANNEL}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.parse().unwrap())
}

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn a_vendor_count_that_drifts_from_the_ledger_fires_one_signed_drift_webhook_and_resolves_back_in_line(
    backend: Backend,
) {
    // Arrange: the template channel (remaining_field = "left") with 20 units, no
    // [marketplace]: `ledger.drift` is built in for the vendor's count alone, at
    // drift_alert_units' default of 10. A webhook gets the built-in alerts.
    let vendor = StandInVendor::start().await;
    let receiver = Receiver::start().await;
    let mut app = spawn_template_app(
        backend,
        format!(
            r#"{channel}
            [[notifiers]]
            name = "ops-hook"
            type = "webhook"
            url = "{hook}"
            secret_env = "TEST_WEBHOOK_SECRET"
            "#,
            channel = stand_in_channel_toml(&vendor.url("/sms/send")),
            hook = receiver.url("/hook"),
        ),
    )
    .await;
    let answer = |left: i64| {
        vendor_body(&format!(
            r#"{{"status":"OK","msg":"已提交","smsid":"T-1","left":"{left}"}}"#
        ))
    };

    // A count in line with the ledger: 19 left on both sides after one unit.
    vendor.answer_with(answer(19));
    let (status, body) = send_template(&app, SERVER_MOBILE, "short_notice").await;
    assert_eq!(status, 200, "{body}");
    let metrics = scrape(&app).await;
    assert_eq!(
        tpl_series(&metrics, "tollgate_vendor_remaining_units"),
        Some(19.0)
    );
    assert_eq!(
        tpl_series(&metrics, "tollgate_vendor_drift_units"),
        Some(0.0)
    );
    // The standard channels' answers carry no count: no series, not a 0.
    assert!(!metrics.contains("tollgate_vendor_remaining_units{channel=\"sms_code\"}"));

    // Act: the vendor says 5 are left where the ledger has 18 (13 used around tollgate).
    vendor.answer_with(answer(5));
    let (status, body) = send_template(&app, SERVER_MOBILE, "short_notice").await;
    assert_eq!(status, 200, "{body}");

    // Assert: one signed `ledger.drift` webhook names the vendor's count and both figures.
    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let event = verify_webhook(&received[0]);
    assert_eq!(
        (event.event, event.status, event.severity),
        (EventKind::LedgerDrift, Status::Firing, Severity::Warning)
    );
    assert_eq!(event.rule.as_deref(), Some("ledger.drift"));
    assert_eq!(event.channel.as_deref(), Some(TEMPLATE_CHANNEL));
    for expected in [
        "账本与供应商应答中的余量相差 13 条",
        "应答剩余 5 条，账本剩余 18 条；告警阈值 10 条",
        "调试控制台",
        "the vendor's own count (remaining_field",
        "is 5, the ledger's 18: 13 units apart (threshold 10)",
    ] {
        assert!(
            event.summary.contains(expected),
            "{expected}: {}",
            event.summary
        );
    }
    assert!(!event.summary.contains("云市场剩余"), "{}", event.summary);
    // And the metrics show both figures, the sign of tollgate_ledger_drift_units.
    let metrics = scrape(&app).await;
    assert_eq!(
        tpl_series(&metrics, "tollgate_vendor_remaining_units"),
        Some(5.0)
    );
    assert_eq!(
        tpl_series(&metrics, "tollgate_vendor_drift_units"),
        Some(-13.0)
    );
    let quota = app.quota(TEMPLATE_CHANNEL).await;
    assert_eq!(
        (&quota["vendor_remaining"], &quota["vendor_drift"]),
        (&json!(5), &json!(-13))
    );

    // Act: the vendor's count is back in line (17 on both sides).
    vendor.answer_with(answer(17));
    let (status, body) = send_template(&app, SERVER_MOBILE, "short_notice").await;
    assert_eq!(status, 200, "{body}");

    // Assert: one `resolved`, and nothing more on a further evaluation.
    let received = receiver.wait_for(2).await;
    let resolved = verify_webhook(&received[1]);
    assert_eq!(
        (resolved.event, resolved.status),
        (EventKind::LedgerDrift, Status::Resolved)
    );
    assert!(
        resolved.summary.contains("应答剩余 17 条，账本剩余 17 条"),
        "{}",
        resolved.summary
    );
    assert_eq!(
        tpl_series(&scrape(&app).await, "tollgate_vendor_drift_units"),
        Some(0.0)
    );
    app.alerts.evaluate_all().await.unwrap();
    assert_eq!(receiver.received().len(), 2, "one firing, one resolved");
    app.stop().await;
}
