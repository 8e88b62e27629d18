//! Every notifier plugin delivers a real event to a real receiver on loopback: an SMTP
//! server (aiosmtpd) for email, an HTTP receiver that verifies each robot's and the
//! webhook's signature, a shell script for exec. One compliance check for all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tollgate::alerts::build_notifiers;
use tollgate::config::load_str;
use tollgate::domain::ChannelKind;
use tollgate::report::{to_email, Month, MonthlyReport, ReportContext};
use tollgate_notify::{Event, EventKind, Notifier, Severity, Status};

use crate::helpers::{Backend, TestDb};
use crate::reports::november_ledger;

/// One request the HTTP receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    /// Status, body, and a `Location` header if any.
    answer: Arc<Mutex<(u16, String, Option<String>)>>,
}

/// An HTTP receiver on loopback that records every request and answers as told.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// A receiver on a given port (one that was down until now).
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        Self::serve(tokio::net::TcpListener::bind(addr).await.unwrap())
    }

    fn serve(listener: tokio::net::TcpListener) -> Receiver {
        let shared = Shared {
            received: Arc::default(),
            answer: Arc::new(Mutex::new((
                200,
                r#"{"errcode":0,"errmsg":"ok"}"#.into(),
                None,
            ))),
        };
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(record).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn answer_with(&self, status: u16, body: &str) {
        *self.shared.answer.lock().unwrap() = (status, body.into(), None);
    }

    /// Answers `302 Found` pointing at `location`.
    pub fn redirect_to(&self, location: &str) {
        *self.shared.answer.lock().unwrap() = (302, String::new(), Some(location.into()));
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `count` requests arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..300 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {count} request(s), got {:?}", self.received());
    }
}

async fn record(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    shared.received.lock().unwrap().push(Received {
        path: parts.uri.path().to_owned(),
        query,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    let (status, body, location) = shared.answer.lock().unwrap().clone();
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    if let Some(location) = location {
        response
            .headers_mut()
            .insert("location", location.parse().unwrap());
    }
    response
}

/// The secret a Standard Webhooks receiver is configured with.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DINGTALK_SECRET: &str = "SECc0ffee5ecret";
const FEISHU_SECRET: &str = "feishu-s3cret";

fn hmac(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Checks a Standard Webhooks delivery as a receiver library would.
pub fn verify_webhook(received: &Received) -> Event {
    let id = &received.headers["webhook-id"];
    let timestamp = &received.headers["webhook-timestamp"];
    let key = BASE64
        .decode(WEBHOOK_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let expected = format!(
        "v1,{}",
        hmac(
            &key,
            format!("{id}.{timestamp}.{}", received.body).as_bytes()
        )
    );
    assert_eq!(
        received.headers["webhook-signature"], expected,
        "webhook signature"
    );
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!(
        age.abs() < 300,
        "webhook-timestamp is the current time in seconds"
    );
    let event: Event = serde_json::from_str(&received.body).unwrap();
    assert_eq!(&event.id, id, "webhook-id is the event id");
    event
}

/// When the sample events happened: 08:30 UTC, 16:30 in Asia/Shanghai.
const OCCURRED_AT: &str = "2026-12-01T08:30:00Z";

/// An event with every figure filled in, on an SMS channel, in Asia/Shanghai.
fn sample_event() -> Event {
    let now = chrono::DateTime::parse_from_rfc3339(OCCURRED_AT)
        .unwrap()
        .with_timezone(&chrono::Utc);
    Event {
        version: "1".into(),
        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        event: EventKind::QuotaLow,
        status: Status::Firing,
        rule: Some("quota-low".into()),
        severity: Severity::Warning,
        channel: Some("sms_code".into()),
        channel_kind: Some("sms_code".into()),
        remaining_units: Some(150),
        purchased_units: Some(1000),
        remaining_ratio: Some(0.15),
        burn_rate_per_day: Some(50.0),
        days_left: Some(3.0),
        forecast_exhausted_at: Some(now + chrono::Duration::days(3)),
        repurchase_url: Some("https://market.aliyun.com/".into()),
        suggested_units: Some(1500),
        summary: "渠道 sms_code 套餐余量不足：剩余 150 / 1000 条（15.0%）。".into(),
        occurred_at: now,
        timezone: "Asia/Shanghai".into(),
        last_hour_sends: None,
        hourly_average_sends: None,
        report_html: None,
        report_text: None,
    }
}

/// The same reminder for a voice channel, whose units are calls (次), and critical.
fn voice_event() -> Event {
    Event {
        severity: Severity::Critical,
        channel: Some("voice_notice".into()),
        channel_kind: Some("voice_notice".into()),
        summary: "渠道 voice_notice 套餐余量不足：剩余 150 / 1000 次（15.0%）。".into(),
        ..sample_event()
    }
}

/// What every text for people says about [`sample_event`] (or [`voice_event`] with
/// `unit` 次): zh-CN labels, local times, the channel's unit.
fn assert_reads_locally(text: &str, unit: &str) {
    for expected in [
        format!("剩余**：150 / 1000 {unit}（15.0%）"),
        format!("建议续购**：1500 {unit}"),
        format!("近 7 天日均用量**：50 {unit}/天"),
        "预计用完时间**：2026-12-04 16:30 (UTC+8)".to_owned(),
        "时间**：2026-12-01 16:30 (UTC+8)".to_owned(),
    ] {
        // Markdown bolds the labels; plain text does not.
        let plain = expected.replace("**", "");
        assert!(
            text.contains(&expected) || text.contains(&plain),
            "{plain} missing from {text}"
        );
    }
    assert!(!text.contains("08:30"), "no UTC time: {text}");
}

/// Builds the one notifier configured by `toml` through the real configuration path.
fn notifier(toml: &str, env: &[(&str, &str)]) -> Arc<dyn Notifier> {
    let settings =
        load_str("notifier test", toml, &|_| None).expect("the notifier config is valid");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let built = build_notifiers(&settings.alerts.notifiers, &|k| env.get(k).cloned()).unwrap();
    built.values().next().unwrap().clone()
}

/// The compliance check every notifier passes: the event is delivered once, the
/// receiver's own check of what arrived holds, and a refusing receiver is a failure.
async fn complies(
    notifier: Arc<dyn Notifier>,
    receive: impl std::future::Future<Output = ()>,
    refuse: impl FnOnce(),
    event: &Event,
) {
    notifier.deliver(event).await.expect("delivered");
    receive.await;
    refuse();
    assert!(
        notifier.deliver(event).await.is_err(),
        "a receiver that refuses makes the delivery fail"
    );
}

#[tokio::test]
async fn the_webhook_is_signed_per_standard_webhooks() {
    let receiver = Receiver::start().await;
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "repurchase-hook"
            type = "webhook"
            url = "{}"
            secret_env = "HOOK_SECRET"
            headers = {{ "X-Team" = "ops" }}
            "#,
            receiver.url("/hooks/repurchase")
        ),
        &[("HOOK_SECRET", WEBHOOK_SECRET)],
    );
    let event = sample_event();
    complies(
        notifier,
        async {
            let received = receiver.wait_for(1).await;
            let got = verify_webhook(&received[0]);
            assert_eq!(got, event, "the body is the event JSON");
            assert_eq!(received[0].path, "/hooks/repurchase");
            assert_eq!(received[0].headers["x-team"], "ops");
            assert!(received[0].headers["content-type"].starts_with("application/json"));
        },
        || receiver.answer_with(500, ""),
        &event,
    )
    .await;
}

#[tokio::test]
async fn the_dingtalk_robot_gets_a_signed_markdown_message() {
    let receiver = Receiver::start().await;
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "ding"
            type = "dingtalk"
            url = "{}"
            secret_env = "DING_SECRET"
            "#,
            receiver.url("/robot/send?access_token=t0ken")
        ),
        &[("DING_SECRET", DINGTALK_SECRET)],
    );
    let event = sample_event();
    complies(
        notifier,
        async {
            let received = &receiver.wait_for(1).await[0];
            assert_eq!(received.query["access_token"], "t0ken");
            let timestamp = &received.query["timestamp"];
            let millis: i64 = timestamp.parse().unwrap();
            assert!(
                (chrono::Utc::now().timestamp_millis() - millis).abs() < 300_000,
                "milliseconds"
            );
            let expected = hmac(
                DINGTALK_SECRET.as_bytes(),
                format!("{timestamp}\n{DINGTALK_SECRET}").as_bytes(),
            );
            assert_eq!(received.query["sign"], expected, "DingTalk signature");
            let body = received.json();
            assert_eq!(body["msgtype"], "markdown");
            assert_eq!(
                body["markdown"]["title"],
                "【警告】tollgate：sms_code 套餐余量不足"
            );
            let text = body["markdown"]["text"].as_str().unwrap();
            assert!(text.contains(&event.summary), "{text}");
            assert_reads_locally(text, "条");
        },
        || receiver.answer_with(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#),
        &event,
    )
    .await;
}

#[tokio::test]
async fn the_feishu_bot_gets_its_own_signature_in_the_body() {
    let receiver = Receiver::start().await;
    receiver.answer_with(200, r#"{"code":0,"msg":"success","data":{}}"#);
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "lark"
            type = "feishu"
            url = "{}"
            secret_env = "FEISHU_SECRET"
            "#,
            receiver.url("/open-apis/bot/v2/hook/abc")
        ),
        &[("FEISHU_SECRET", FEISHU_SECRET)],
    );
    let event = voice_event();
    complies(
        notifier,
        async {
            let body = receiver.wait_for(1).await[0].json();
            let timestamp = body["timestamp"].as_str().unwrap();
            let seconds: i64 = timestamp.parse().unwrap();
            assert!(
                (chrono::Utc::now().timestamp() - seconds).abs() < 300,
                "seconds"
            );
            // The key is "timestamp\nsecret" and the message is empty.
            let expected = hmac(format!("{timestamp}\n{FEISHU_SECRET}").as_bytes(), b"");
            assert_eq!(body["sign"], expected, "Feishu signature");
            assert_eq!(body["msg_type"], "text");
            let text = body["content"]["text"].as_str().unwrap();
            assert!(text.contains(&event.summary), "{text}");
            assert_reads_locally(text, "次");
        },
        || receiver.answer_with(200, r#"{"code":19021,"msg":"sign match fail"}"#),
        &event,
    )
    .await;
}

#[tokio::test]
async fn the_wecom_robot_gets_a_markdown_message() {
    let receiver = Receiver::start().await;
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "wecom"
            type = "wecom"
            url = "{}"
            "#,
            receiver.url("/cgi-bin/webhook/send?key=k3y")
        ),
        &[],
    );
    let event = voice_event();
    complies(
        notifier,
        async {
            let received = &receiver.wait_for(1).await[0];
            assert_eq!(received.query["key"], "k3y");
            let body = received.json();
            assert_eq!(body["msgtype"], "markdown");
            let content = body["markdown"]["content"].as_str().unwrap();
            assert!(
                content.starts_with("### 【严重】tollgate：voice_notice 套餐余量不足"),
                "{content}"
            );
            assert!(content.contains(&event.summary), "{content}");
            assert_reads_locally(content, "次");
            assert!(content.len() <= 4096);
        },
        || receiver.answer_with(200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#),
        &event,
    )
    .await;
}

#[tokio::test]
async fn the_exec_program_reads_the_event_on_stdin_and_its_exit_status_decides() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let refuse = dir.path().join("refuse");
    let script = dir.path().join("notify.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ -e {refuse} ] && {{ echo 'automation is down' >&2; exit 3; }}\ncat > {out}\n",
            refuse = refuse.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "automation"
            type = "exec"
            command = "{}"
            timeout = "10s"
            "#,
            script.display()
        ),
        &[],
    );
    let event = sample_event();
    complies(
        notifier.clone(),
        async {
            let stdin: Event =
                serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
            assert_eq!(stdin, event);
        },
        || std::fs::write(&refuse, "").unwrap(),
        &event,
    )
    .await;
    let err = notifier.deliver(&event).await.unwrap_err();
    assert!(err.0.contains("automation is down"), "{err}");
}

/// A real SMTP server (aiosmtpd) that writes every message it receives, decoded, as a
/// JSON line.
struct SmtpServer {
    port: u16,
    out: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

const SMTP_SERVER: &str = r#"
import json, sys, time
from email import message_from_bytes, policy
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": str(message["subject"]),
                "text": text.get_content() if text else None,
                "html": html.get_content() if html else None,
            }, ensure_ascii=False) + "\n")
        return "250 OK"

controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

impl SmtpServer {
    async fn start() -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("messages.jsonl");
        let child = std::process::Command::new("python3")
            .arg("-c")
            .arg(SMTP_SERVER)
            .arg(port.to_string())
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        let server = SmtpServer {
            port,
            out,
            child,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP server did not start (is aiosmtpd installed?)");
    }

    async fn messages(&self, count: usize) -> Vec<Value> {
        for _ in 0..200 {
            let lines = read_lines(&self.out);
            if lines.len() >= count {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {count} message(s), got {:?}",
            read_lines(&self.out)
        );
    }
}

/// The contents of every `<td>` of an HTML page.
fn html_cells(html: &str) -> Vec<String> {
    html.split("<td>")
        .skip(1)
        .map(|cell| cell.split("</td>").next().unwrap().to_owned())
        .filter(|cell| !cell.is_empty())
        .collect()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_email_reaches_a_real_smtp_server_with_text_and_html() {
    let mut smtp = SmtpServer::start().await;
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "ops-mail"
            type = "email"
            smtp_url = "smtp://127.0.0.1:{}"
            from = "tollgate@example.com"
            to = ["ops@example.com", "buyer@example.com"]
            timeout = "10s"
            "#,
            smtp.port
        ),
        &[],
    );
    let event = sample_event();
    let port = smtp.port;
    notifier.deliver(&event).await.expect("delivered");
    notifier.deliver(&voice_event()).await.expect("delivered");
    let received = smtp.messages(2).await;
    let mail = &received[0];
    assert_eq!(mail["from"], "tollgate@example.com");
    assert_eq!(mail["to"], json!(["ops@example.com", "buyer@example.com"]));
    assert_eq!(mail["subject"], "【警告】tollgate：sms_code 套餐余量不足");
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains(&event.summary), "{text}");
    assert_reads_locally(text, "条");
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains("<a href=\"https://market.aliyun.com/\">"),
        "{html}"
    );
    // The severity shows at a glance: an amber banner for a warning, with the title.
    assert!(
        html.contains("border-left:6px solid #ef6c00")
            && html.contains("【警告】tollgate：sms_code 套餐余量不足"),
        "{html}"
    );
    // The text part carries every figure of the HTML part: each value of the HTML's
    // table is in the text.
    for value in html_cells(html) {
        assert!(
            text.contains(&value.replace("&amp;", "&")) || value.starts_with("<a href"),
            "{value} is in the HTML but not in the text:\n{text}"
        );
    }
    assert!(
        html.contains("剩余 <small") && html.contains("Remaining"),
        "{html}"
    );

    let voice = &received[1];
    assert_eq!(
        voice["subject"],
        "【严重】tollgate：voice_notice 套餐余量不足"
    );
    assert_reads_locally(voice["text"].as_str().unwrap(), "次");
    assert!(voice["html"]
        .as_str()
        .unwrap()
        .contains("border-left:6px solid #c62828"));

    // A server that is gone makes the delivery fail.
    let _ = smtp.child.kill();
    let _ = smtp.child.wait();
    let down = tokio::time::timeout(Duration::from_secs(60), notifier.deliver(&event)).await;
    assert!(
        matches!(down, Ok(Err(_))),
        "delivery to a stopped server on {port} fails"
    );
}

#[tokio::test]
async fn bad_notifier_configurations_are_named_at_start() {
    let err = load_str(
        "t",
        r#"
        [[notifiers]]
        name = "hook"
        type = "webhook"
        url = "not a url"
        "#,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("notifiers[0].url"), "{err}");
    // A missing secret stops the build, naming the notifier and the variable.
    let settings = load_str(
        "t",
        r#"
        [[notifiers]]
        name = "hook"
        type = "webhook"
        url = "http://127.0.0.1:9/x"
        secret_env = "NOT_SET_ANYWHERE"
        "#,
        &|_| None,
    )
    .unwrap();
    let err = build_notifiers(&settings.alerts.notifiers, &|_| None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("hook") && err.contains("NOT_SET_ANYWHERE"),
        "{err}"
    );
}

#[tokio::test]
async fn the_monthly_report_email_has_its_figures_in_both_parts_in_chinese_and_local_dates() {
    // A November with SMS and voice traffic, a purchase, and a reconciliation.
    let test = TestDb::new(Backend::Sqlite).await;
    let ledger = november_ledger(&test).await;
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T01:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let month = Month::parse("2026-11").unwrap();
    let report = MonthlyReport::build(&ledger, month, now).await.unwrap();
    let context = ReportContext::new([
        ("sms_code", ChannelKind::SmsCode),
        ("voice_notice", ChannelKind::VoiceNotice),
    ]);
    let event = Event::monthly_report(
        "report-2026-11".into(),
        to_email(&report, &context),
        now,
        "Asia/Shanghai",
    );
    let smtp = SmtpServer::start().await;
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "finance"
            type = "email"
            smtp_url = "smtp://127.0.0.1:{}"
            from = "tollgate@example.com"
            to = ["finance@example.com"]
            "#,
            smtp.port
        ),
        &[],
    );

    notifier.deliver(&event).await.expect("delivered");

    let mail = &smtp.messages(1).await[0];
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("【月报】tollgate 2026-11 月度费用报告：合计 ¥"),
        "{subject}"
    );
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    // (in the text, in the HTML): labels are laid out differently, values the same.
    for (in_text, in_html) in [
        (
            "统计周期 Period：2026-11-01 至 2026-11-30",
            "2026-11-01 至 2026-11-30",
        ),
        (
            "按渠道与客户 Usage by channel and client",
            "按渠道与客户 <small",
        ),
        ("合计费用 Total cost：¥", "合计费用 <small"),
        // The 1000-unit package bought at 01:00 UTC on 2 November, in Shanghai time.
        ("2026-11-02 09:00 (UTC+8)", "2026-11-02 09:00 (UTC+8)"),
        // Five voice calls, counted as calls; SMS as messages.
        ("5 次", "<td>5 次</td>"),
        ("1000 条", "<td>1000 条</td>"),
    ] {
        assert!(text.contains(in_text), "{in_text} missing from {text}");
        assert!(html.contains(in_html), "{in_html} missing from {html}");
    }
    assert!(
        !html.contains("Total cost: ") && !html.contains("None."),
        "{html}"
    );
    // Every figure of the HTML tables is in the text part too.
    let cells = html_cells(html);
    assert!(cells.len() > 20, "{cells:?}");
    for value in cells {
        assert!(
            text.contains(&value),
            "{value} is in the HTML but not in the text:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_webhook_and_the_robots_do_not_follow_redirects() {
    let elsewhere = Receiver::start().await;
    let redirecting = Receiver::start().await;
    redirecting.redirect_to(&elsewhere.url("/collect"));
    let webhook = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "hook"
            type = "webhook"
            url = "{}"
            secret_env = "HOOK_SECRET"
            "#,
            redirecting.url("/hook")
        ),
        &[("HOOK_SECRET", WEBHOOK_SECRET)],
    );
    let robot = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "ding"
            type = "dingtalk"
            url = "{}"
            "#,
            redirecting.url("/robot/send?access_token=t0ken")
        ),
        &[],
    );
    for notifier in [webhook, robot] {
        let err = notifier.deliver(&sample_event()).await.unwrap_err();
        assert!(err.0.contains("302"), "{err}");
    }
    assert_eq!(redirecting.received().len(), 2);
    assert!(
        elsewhere.received().is_empty(),
        "nothing reaches the redirect's target"
    );
}

#[tokio::test]
async fn the_exec_program_gets_only_the_variables_its_configuration_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let notifier = notifier(
        &format!(
            r#"
            [[notifiers]]
            name = "automation"
            type = "exec"
            command = "sh"
            # dash exports PWD itself: everything else must come from the notifier.
            args = ["-c", "cat >/dev/null; env | grep -v '^PWD=' | sort > {}"]
            env = {{ TICKET_QUEUE = "ops" }}
            "#,
            out.display()
        ),
        // tollgate's own environment: secrets the program must not see, and PATH.
        &[
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("TEST_APPCODE", "appcode-s3cret"),
            ("TEST_SHOP_TOKEN", "token-s3cret"),
            ("DATABASE_URL", "postgres://tollgate:pw@db/tollgate"),
        ],
    );
    notifier.deliver(&sample_event()).await.expect("delivered");
    let seen = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        seen,
        "PATH=/usr/local/bin:/usr/bin:/bin\nTICKET_QUEUE=ops\n"
    );
}

#[tokio::test]
async fn a_notifier_timeout_at_or_above_the_outbox_lease_is_refused() {
    for (timeout, refused) in [("4m59s", false), ("5m", true), ("1h", true)] {
        let result = load_str(
            "t",
            &format!(
                r#"
                [[notifiers]]
                name = "hook"
                type = "webhook"
                url = "https://hooks.example.com/t"
                timeout = "{timeout}"
                "#
            ),
            &|_| None,
        );
        match result {
            Err(err) => {
                assert!(refused, "{timeout}: {err}");
                let err = err.to_string();
                assert!(
                    err.contains("notifiers[0].timeout: must be below 5m"),
                    "{err}"
                );
            }
            Ok(_) => assert!(!refused, "{timeout} was accepted"),
        }
    }
}
