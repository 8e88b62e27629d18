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
use tollgate_notify::{Event, EventKind, Notifier, Severity, Status};

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
    answer: Arc<Mutex<(u16, String)>>,
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
            answer: Arc::new(Mutex::new((200, r#"{"errcode":0,"errmsg":"ok"}"#.into()))),
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
        *self.shared.answer.lock().unwrap() = (status, body.into());
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
    let (status, body) = shared.answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), body).into_response()
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

/// An event with every figure filled in.
fn sample_event() -> Event {
    // Events carry whole seconds (RFC 3339 without fractions).
    let now = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    Event {
        version: "1".into(),
        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        event: EventKind::QuotaLow,
        status: Status::Firing,
        rule: Some("quota-low".into()),
        severity: Severity::Warning,
        channel: Some("sms_code".into()),
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
        report_html: None,
    }
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
            assert!(body["markdown"]["title"]
                .as_str()
                .unwrap()
                .contains("sms_code"));
            assert!(body["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains(&event.summary));
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
    let event = sample_event();
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
            assert!(body["content"]["text"]
                .as_str()
                .unwrap()
                .contains(&event.summary));
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
    let event = sample_event();
    complies(
        notifier,
        async {
            let received = &receiver.wait_for(1).await[0];
            assert_eq!(received.query["key"], "k3y");
            let body = received.json();
            assert_eq!(body["msgtype"], "markdown");
            let content = body["markdown"]["content"].as_str().unwrap();
            assert!(content.contains(&event.summary) && content.contains("建议续购"));
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
    let received = smtp.messages(1).await;
    let mail = &received[0];
    assert_eq!(mail["from"], "tollgate@example.com");
    assert_eq!(mail["to"], json!(["ops@example.com", "buyer@example.com"]));
    assert_eq!(mail["subject"], "【tollgate】[告警] sms_code 套餐余量不足");
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains(&event.summary) && text.contains("建议续购：1500 条"),
        "{text}"
    );
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains("<a href=\"https://market.aliyun.com/\">"),
        "{html}"
    );
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
