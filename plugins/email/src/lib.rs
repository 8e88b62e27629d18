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
    parse_timeout, plain_zh, secret_from_env, title_zh, BoxFuture, BuildNotifier, ConfigError,
    DeliveryError, Env, Event, Notifier, NotifierConfig,
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

    fn validate(&self) -> Result<CheckedEmail, ConfigError> {
        let (implicit_tls, rest) = if let Some(rest) = self.smtp_url.strip_prefix("smtps://") {
            (true, rest)
        } else if let Some(rest) = self.smtp_url.strip_prefix("smtp://") {
            (false, rest)
        } else {
            return Err(ConfigError::new(
                "smtp_url",
                "must be smtp://host[:port] or smtps://host[:port]",
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '@', '?']) {
            return Err(ConfigError::new(
                "smtp_url",
                "must be only a host and port (credentials come from username_env and password_env)",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| {
            ConfigError::new("smtp_url", "the port must be a number from 1 to 65535")
        })?;
        let port = port.unwrap_or(if implicit_tls { 465 } else { 25 });

        let credentials = match (&self.username_env, &self.password_env) {
            (None, None) => None,
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "password_env",
                    "is required with username_env",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "username_env",
                    "is required with password_env",
                ))
            }
        };
        let security = match (implicit_tls, self.starttls.as_deref()) {
            (true, None) => Security::Tls,
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    "starttls",
                    "applies to smtp:// only; smtps:// is TLS from the start",
                ))
            }
            (false, None) if credentials.is_some() => Security::StartTlsRequired,
            (false, None) | (false, Some("opportunistic")) => Security::StartTlsOpportunistic,
            (false, Some("required")) => Security::StartTlsRequired,
            (false, Some("off")) => Security::None,
            (false, Some(other)) => {
                return Err(ConfigError::new(
                    "starttls",
                    format!("{other:?} is not \"opportunistic\", \"required\" or \"off\""),
                ))
            }
        };
        if security == Security::None && credentials.is_some() {
            return Err(ConfigError::new(
                "starttls",
                "\"off\" would send the SMTP password in clear text; use \"required\" or smtps://",
            ));
        }
        let from: Mailbox = self.from.parse().map_err(|_| {
            ConfigError::new("from", format!("{:?} is not an email address", self.from))
        })?;
        if self.to.is_empty() {
            return Err(ConfigError::new("to", "needs at least one address"));
        }
        let mut to = Vec::new();
        for (i, address) in self.to.iter().enumerate() {
            to.push(address.parse().map_err(|_| {
                ConfigError::new(
                    format!("to[{i}]"),
                    format!("{address:?} is not an email address"),
                )
            })?);
        }
        Ok(CheckedEmail {
            host: host.to_owned(),
            port,
            security,
            from,
            to,
            credentials,
            timeout: parse_timeout("timeout", self.timeout.as_deref(), Duration::from_secs(30))?,
        })
    }
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
    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(self.timeout));
        let tls = || {
            TlsParameters::new(self.host.clone())
                .map_err(|e| ConfigError::new("smtp_url", format!("cannot set up TLS: {e}")))
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
        builder
            .multipart(MultiPart::alternative_plain_html(
                plain_zh(event),
                // A monthly report brings its own HTML: the report is the email.
                event.report_html.clone().unwrap_or_else(|| html_zh(event)),
            ))
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
            self.transport.send(message).await.map(|_| ()).map_err(|e| {
                DeliveryError::new(format!(
                    "SMTP {}:{}: {e}",
                    self.config.host, self.config.port
                ))
            })
        })
    }
}

/// The HTML body: the plain text's lines, escaped, with the summary emphasised.
pub fn html_zh(event: &Event) -> String {
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"></head><body>",
    );
    html.push_str(&format!("<h2>{}</h2>", escape(&title_zh(event))));
    html.push_str(&format!(
        "<p><strong>{}</strong></p><table>",
        escape(&event.summary)
    ));
    for line in plain_zh(event).lines().skip(3) {
        if let Some((label, value)) = line.split_once('：') {
            let value = if value.starts_with("https://") || value.starts_with("http://") {
                format!("<a href=\"{0}\">{0}</a>", escape(value))
            } else {
                escape(value)
            };
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{value}</td></tr>",
                escape(label)
            ));
        }
    }
    html.push_str("</table></body></html>");
    html
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

    #[test]
    fn urls_choose_port_and_security() {
        let plain = config("smtp://127.0.0.1").validate().unwrap();
        assert_eq!(
            (plain.port(), plain.security()),
            (25, Security::StartTlsOpportunistic)
        );
        let tls = config("smtps://mail.example.com").validate().unwrap();
        assert_eq!((tls.port(), tls.security()), (465, Security::Tls));
        let mut authenticated = config("smtp://mail.example.com:587");
        authenticated.username_env = Some("SMTP_USER".into());
        authenticated.password_env = Some("SMTP_PASSWORD".into());
        let checked = authenticated.validate().unwrap();
        assert_eq!(
            (checked.port(), checked.security()),
            (587, Security::StartTlsRequired)
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            config("http://mail").validate().unwrap_err().key,
            "smtp_url"
        );
        assert_eq!(
            config("smtp://user:pw@mail").validate().unwrap_err().key,
            "smtp_url"
        );
        assert_eq!(
            config("smtp://mail:99999").validate().unwrap_err().key,
            "smtp_url"
        );
        let mut bad = config("smtp://mail");
        bad.from = "not an address".into();
        assert_eq!(bad.validate().unwrap_err().key, "from");
        let mut bad = config("smtp://mail");
        bad.to = vec!["ops@example.com".into(), "nobody".into()];
        assert_eq!(bad.validate().unwrap_err().key, "to[1]");
        let mut bad = config("smtp://mail");
        bad.to.clear();
        assert_eq!(bad.validate().unwrap_err().key, "to");
        let mut bad = config("smtp://mail");
        bad.starttls = Some("maybe".into());
        assert_eq!(bad.validate().unwrap_err().key, "starttls");
        let mut bad = config("smtp://mail");
        bad.username_env = Some("U".into());
        assert_eq!(bad.validate().unwrap_err().key, "password_env");
        let mut clear = config("smtp://mail");
        clear.username_env = Some("U".into());
        clear.password_env = Some("P".into());
        clear.starttls = Some("off".into());
        assert_eq!(clear.validate().unwrap_err().key, "starttls");
    }

    #[test]
    fn missing_credentials_are_named_at_build() {
        let mut with_credentials = config("smtps://mail.example.com");
        with_credentials.username_env = Some("SMTP_USER".into());
        with_credentials.password_env = Some("SMTP_PASSWORD".into());
        let err = with_credentials
            .validate()
            .unwrap()
            .build(&|_| None)
            .err()
            .unwrap();
        assert_eq!(err.key, "username_env");
    }

    #[test]
    fn the_html_body_escapes_and_links() {
        let mut event = Event::test("evt_1".into(), chrono::Utc::now());
        event.summary = "<b>剩余不足</b>".into();
        event.repurchase_url = Some("https://market.aliyun.com/".into());
        let html = html_zh(&event);
        assert!(html.contains("&lt;b&gt;剩余不足"));
        assert!(html.contains("<a href=\"https://market.aliyun.com/\">"));
    }
}
