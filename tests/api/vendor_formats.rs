//! Vendor formats end to end: the real vendor client against the real sandbox vendor,
//! for a kapool channel and a template channel, and the configuration of both.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::TcpListener;
use tollgate::config::{load_str, LoadError};
use tollgate::domain::{Outcome, VendorMethod};
use tollgate::secret::Secret;
use tollgate::upstream::format::{ParamsIn, ParamsStyle};
use tollgate::upstream::sandbox::{self, SandboxConfig, SandboxHandle};
use tollgate::upstream::{
    TemplateFormat, VendorCall, VendorClient, VendorFormat, VendorMessage, VendorReply,
};

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
