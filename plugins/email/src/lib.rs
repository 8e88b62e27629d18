//! The `email` notifier: a zh-CN message with text and HTML bodies, over SMTP (lettre,
//! rustls). Only this crate speaks SMTP.
//!
//! `smtp_url` is `smtp://host[:port]` (port 25 by default; STARTTLS as `starttls` says)
//! or `smtps://host[:port]` (TLS from the first byte, port 465 by default). Credentials
//! come from the environment variables named by `username_env` and `password_env`.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use tollgate_notify::{
    facts, plain_zh, secret_from_env, title_zh, BoxFuture, BuildNotifier, ConfigProblem,
    DeliveryError, Env, Event, EventKind, Notifier, NotifierConfig, Problems, Severity, Status,
};

/// `[[notifiers]] type = "email"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_url: String,
    /// For `smtp://`: `"opportunistic"` (use STARTTLS when offered; the default without
    /// credentials), `"required"` (the default with credentials) or `"off"`.
    pub starttls: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Tls,
    StartTlsRequired,
    StartTlsOpportunistic,
    None,
}

#[derive(Debug, Clone)]
pub struct CheckedEmail {
    host: String,
    port: u16,
    security: Security,
    from: Mailbox,
    to: Vec<Mailbox>,
    credentials: Option<(String, String)>,
    timeout: Duration,
}

impl CheckedEmail {
    pub fn security(&self) -> Security {
        self.security
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl NotifierConfig for EmailConfig {
    const TYPE: &'static str = "email";
    type Checked = CheckedEmail;

    fn validate(&self, problems: &mut Problems) -> Option<CheckedEmail> {
        let before = problems.len();
        let server = smtp_server(&self.smtp_url, problems);
        let credentials = match (&self.username_env, &self.password_env) {
            (None, None) => None,
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (Some(_), None) => {
                problems.add("password_env", "is required with username_env");
                None
            }
            (None, Some(_)) => {
                problems.add("username_env", "is required with password_env");
                None
            }
        };
        let authenticating = self.username_env.is_some() || self.password_env.is_some();
        // Without a usable smtp_url, STARTTLS is still checked as if it were smtp://.
        let implicit_tls = server.as_ref().is_some_and(|s| s.implicit_tls);
        let security = match (implicit_tls, self.starttls.as_deref()) {
            (true, None) => Some(Security::Tls),
            (true, Some(_)) => {
                problems.add(
                    "starttls",
                    "applies to smtp:// only; smtps:// is TLS from the start",
                );
                None
            }
            (false, None) if authenticating => Some(Security::StartTlsRequired),
            (false, None) | (false, Some("opportunistic")) => Some(Security::StartTlsOpportunistic),
            (false, Some("required")) => Some(Security::StartTlsRequired),
            (false, Some("off")) if authenticating => {
                problems.add(
                    "starttls",
                    "\"off\" would send the SMTP password in clear text; use \"required\" or smtps://",
                );
                None
            }
            (false, Some("off")) => Some(Security::None),
            (false, Some(other)) => {
                problems.add(
                    "starttls",
                    format!("{other:?} is not \"opportunistic\", \"required\" or \"off\""),
                );
                None
            }
        };
        let from = mailbox(problems, "from", &self.from);
        if self.to.is_empty() {
            problems.add("to", "needs at least one address");
        }
        let to: Vec<Option<Mailbox>> = self
            .to
            .iter()
            .enumerate()
            .map(|(i, address)| mailbox(problems, &format!("to[{i}]"), address))
            .collect();
        let timeout = problems.duration("timeout", self.timeout.as_deref(), DEFAULT_TIMEOUT);
        if problems.len() > before {
            return None;
        }
        // Every value below is present: a missing one recorded a problem.
        let server = server?;
        Some(CheckedEmail {
            host: server.host,
            port: server.port,
            security: security?,
            from: from?,
            to: to.into_iter().collect::<Option<_>>()?,
            credentials,
            timeout,
        })
    }
}

/// The limit on one whole delivery (and on each SMTP command within it).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

struct SmtpServer {
    host: String,
    port: u16,
    implicit_tls: bool,
}

/// `smtp://host[:port]` or `smtps://host[:port]`, the problem recorded as `smtp_url`.
fn smtp_server(url: &str, problems: &mut Problems) -> Option<SmtpServer> {
    let (implicit_tls, rest) = if let Some(rest) = url.strip_prefix("smtps://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("smtp://") {
        (false, rest)
    } else {
        problems.add(
            "smtp_url",
            "must be smtp://host[:port] or smtps://host[:port]",
        );
        return None;
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', '?']) {
        problems.add(
            "smtp_url",
            "must be only a host and port (credentials come from username_env and password_env)",
        );
        return None;
    }
    let Some((host, port)) = split_host_port(rest) else {
        problems.add("smtp_url", "the port must be a number from 1 to 65535");
        return None;
    };
    Some(SmtpServer {
        host: host.to_owned(),
        port: port.unwrap_or(if implicit_tls { 465 } else { 25 }),
        implicit_tls,
    })
}

fn mailbox(problems: &mut Problems, key: &str, address: &str) -> Option<Mailbox> {
    let parsed = address
        .parse()
        .map_err(|_| format!("{address:?} is not an email address"));
    problems.check(key, parsed)
}

/// `host`, `host:port` or `[v6]:port`.
fn split_host_port(raw: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| (host, Some(p))),
    }
}

impl BuildNotifier for CheckedEmail {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigProblem> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(self.timeout));
        let tls = || {
            TlsParameters::new(self.host.clone())
                .map_err(|e| ConfigProblem::new("smtp_url", format!("cannot set up TLS: {e}")))
        };
        builder = builder.tls(match self.security {
            Security::Tls => Tls::Wrapper(tls()?),
            Security::StartTlsRequired => Tls::Required(tls()?),
            Security::StartTlsOpportunistic => Tls::Opportunistic(tls()?),
            Security::None => Tls::None,
        });
        if let Some((user_env, password_env)) = &self.credentials {
            let user = secret_from_env(env, "username_env", user_env)?;
            let password = secret_from_env(env, "password_env", password_env)?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Arc::new(EmailNotifier {
            config: self.clone(),
            transport: builder.build(),
        }))
    }
}

pub struct EmailNotifier {
    config: CheckedEmail,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailNotifier {
    fn message(&self, event: &Event) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.config.from.clone())
            .subject(title_zh(event))
            .message_id(Some(format!("<{}@tollgate>", event.id)));
        for to in &self.config.to {
            builder = builder.to(to.clone());
        }
        // A monthly report brings its own text and HTML: the report is the email.
        let text = event.report_text.clone().unwrap_or_else(|| plain_zh(event));
        let html = event.report_html.clone().unwrap_or_else(|| html_zh(event));
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::new(format!("cannot compose the message: {e}")))
    }
}

impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        EmailConfig::TYPE
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let message = self.message(event)?;
            let server = format!("SMTP {}:{}", self.config.host, self.config.port);
            // Lettre's timeout bounds each SMTP command; this bounds the whole delivery,
            // which must end within the outbox's lease.
            match tokio::time::timeout(self.config.timeout, self.transport.send(message)).await {
                Ok(sent) => sent
                    .map(|_| ())
                    .map_err(|e| DeliveryError::new(format!("{server}: {e}"))),
                Err(_) => Err(DeliveryError::new(format!(
                    "{server}: no answer within {:?}",
                    self.config.timeout
                ))),
            }
        })
    }
}

/// The HTML body of a reminder: a banner in the severity's colour with the title, the
/// summary, then the facts (zh-CN labels with the English beside them), the same facts
/// as the text part.
pub fn html_zh(event: &Event) -> String {
    let (background, border) = banner_colours(event);
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">",
    );
    html.push_str(&format!(
        "<div style=\"background:{background};border-left:6px solid {border};padding:12px 16px;margin-bottom:16px\"><h2 style=\"margin:0\">{}</h2></div>",
        escape(&title_zh(event))
    ));
    html.push_str(&format!(
        "<p><strong>{}</strong></p><table cellpadding=\"4\">",
        escape(&event.summary)
    ));
    for fact in facts(event) {
        let value = if fact.value.starts_with("https://") || fact.value.starts_with("http://") {
            format!("<a href=\"{0}\">{0}</a>", escape(&fact.value))
        } else {
            escape(&fact.value)
        };
        html.push_str(&format!(
            "<tr><th align=\"left\">{} <small style=\"color:#666;font-weight:normal\">{}</small></th><td>{value}</td></tr>",
            escape(fact.label),
            escape(fact.label_en)
        ));
    }
    html.push_str(&format!(
        "</table><p style=\"color:#666;font-size:small\">事件 ID（event id）：{}</p></body></html>",
        escape(&event.id)
    ));
    html
}

/// The banner's background and edge: red for critical, amber for warning, blue for
/// information, green once resolved.
fn banner_colours(event: &Event) -> (&'static str, &'static str) {
    const BLUE: (&str, &str) = ("#e3f2fd", "#1565c0");
    match (event.event, event.status, event.severity) {
        (EventKind::ReportMonthly | EventKind::Test, _, _) => BLUE,
        (_, Status::Resolved, _) => ("#e8f5e9", "#2e7d32"),
        (_, Status::Firing, Severity::Critical) => ("#fdecea", "#c62828"),
        (_, Status::Firing, Severity::Warning) => ("#fff4e5", "#ef6c00"),
        (_, Status::Firing, Severity::Info) => BLUE,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> EmailConfig {
        EmailConfig {
            smtp_url: url.into(),
            starttls: None,
            from: "tollgate@example.com".into(),
            to: vec!["ops@example.com".into()],
            username_env: None,
            password_env: None,
            timeout: None,
        }
    }

    /// The checked configuration, or the keys of every problem found.
    fn validate(config: &EmailConfig) -> Result<CheckedEmail, Vec<String>> {
        config
            .validate_alone()
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn urls_choose_port_and_security() {
        let plain = validate(&config("smtp://127.0.0.1")).unwrap();
        assert_eq!(
            (plain.port(), plain.security()),
            (25, Security::StartTlsOpportunistic)
        );
        let tls = validate(&config("smtps://mail.example.com")).unwrap();
        assert_eq!((tls.port(), tls.security()), (465, Security::Tls));
        let mut authenticated = config("smtp://mail.example.com:587");
        authenticated.username_env = Some("SMTP_USER".into());
        authenticated.password_env = Some("SMTP_PASSWORD".into());
        let checked = validate(&authenticated).unwrap();
        assert_eq!(
            (checked.port(), checked.security()),
            (587, Security::StartTlsRequired)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let keys = |config: &EmailConfig| validate(config).unwrap_err();
        assert_eq!(keys(&config("http://mail")), ["smtp_url"]);
        assert_eq!(keys(&config("smtp://user:pw@mail")), ["smtp_url"]);
        assert_eq!(keys(&config("smtp://mail:99999")), ["smtp_url"]);
        let mut bad = config("smtp://mail");
        bad.from = "not an address".into();
        assert_eq!(keys(&bad), ["from"]);
        let mut bad = config("smtp://mail");
        bad.to = vec!["ops@example.com".into(), "nobody".into()];
        assert_eq!(keys(&bad), ["to[1]"]);
        let mut bad = config("smtp://mail");
        bad.to.clear();
        assert_eq!(keys(&bad), ["to"]);
        let mut bad = config("smtp://mail");
        bad.starttls = Some("maybe".into());
        assert_eq!(keys(&bad), ["starttls"]);
        let mut bad = config("smtp://mail");
        bad.username_env = Some("U".into());
        assert_eq!(keys(&bad), ["password_env"]);
        let mut clear = config("smtp://mail");
        clear.username_env = Some("U".into());
        clear.password_env = Some("P".into());
        clear.starttls = Some("off".into());
        assert_eq!(keys(&clear), ["starttls"]);
    }

    #[test]
    fn independent_problems_are_all_reported() {
        let mut bad = config("smtps://mail:0");
        bad.from = "nobody".into();
        bad.to = vec!["a@example.com".into(), "b".into(), "c".into()];
        bad.username_env = Some("U".into());
        bad.timeout = Some("soon".into());
        assert_eq!(
            validate(&bad).unwrap_err(),
            [
                "smtp_url",
                "password_env",
                "from",
                "to[1]",
                "to[2]",
                "timeout"
            ]
        );
    }

    #[test]
    fn missing_credentials_are_named_at_build() {
        let mut with_credentials = config("smtps://mail.example.com");
        with_credentials.username_env = Some("SMTP_USER".into());
        with_credentials.password_env = Some("SMTP_PASSWORD".into());
        let err = validate(&with_credentials)
            .unwrap()
            .build(&|_| None)
            .err()
            .unwrap();
        assert_eq!(err.key, "username_env");
    }

    #[test]
    fn the_html_body_escapes_and_links() {
        let mut event = Event::test("evt_1".into(), chrono::Utc::now(), "Asia/Shanghai");
        event.summary = "<b>剩余不足</b>".into();
        event.repurchase_url = Some("https://market.aliyun.com/".into());
        let html = html_zh(&event);
        assert!(html.contains("&lt;b&gt;剩余不足"));
        assert!(html.contains("<a href=\"https://market.aliyun.com/\">"));
    }

    #[test]
    fn the_banner_is_coloured_by_severity() {
        let mut event = Event::test("evt_1".into(), chrono::Utc::now(), "Asia/Shanghai");
        event.event = EventKind::QuotaExhausted;
        event.severity = Severity::Critical;
        let html = html_zh(&event);
        assert!(
            html.contains("#c62828") && html.contains("【严重】"),
            "{html}"
        );
        event.severity = Severity::Warning;
        assert!(html_zh(&event).contains("#ef6c00"));
    }
}
