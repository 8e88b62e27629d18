//! The `webhook` notifier: the event JSON POSTed to a URL, signed per the Standard
//! Webhooks specification so that receivers can verify it with any Standard Webhooks
//! library.
//!
//! Headers: `webhook-id` (the event id, stable across retries), `webhook-timestamp`
//! (Unix seconds), `webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`,
//! where the secret is written `whsec_<base64>` and the key is its decoded bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tollgate_notify::{
    secret_from_env, url_origin, BoxFuture, BuildNotifier, ConfigProblem, DeliveryError, Env,
    Event, Notifier, NotifierConfig, Problems,
};

/// `[[notifiers]] type = "webhook"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable holding the `whsec_…` signing secret. Without it the
    /// body is sent unsigned.
    pub secret_env: Option<String>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub timeout: Option<String>,
}

/// A checked webhook configuration.
#[derive(Debug, Clone)]
pub struct CheckedWebhook {
    url: String,
    secret_env: Option<String>,
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    timeout: Duration,
}

impl NotifierConfig for WebhookConfig {
    const TYPE: &'static str = "webhook";
    type Checked = CheckedWebhook;

    fn validate(&self, problems: &mut Problems) -> Option<CheckedWebhook> {
        let before = problems.len();
        problems.http_url("url", &self.url);
        if let Some(name) = &self.secret_env {
            if name.trim().is_empty() {
                problems.add("secret_env", "must name an environment variable");
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let Ok(header) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) else {
                problems.add(&key, "is not a valid HTTP header name");
                continue;
            };
            if header.as_str().starts_with("webhook-") || header == reqwest::header::CONTENT_TYPE {
                problems.add(&key, "is set by tollgate itself");
                continue;
            }
            match reqwest::header::HeaderValue::from_str(value) {
                Ok(value) => headers.push((header, value)),
                Err(_) => problems.add(&key, "is not a valid HTTP header value"),
            }
        }
        let timeout =
            problems.duration("timeout", self.timeout.as_deref(), Duration::from_secs(10));
        (problems.len() == before).then(|| CheckedWebhook {
            url: self.url.clone(),
            secret_env: self.secret_env.clone(),
            headers,
            timeout,
        })
    }
}

impl BuildNotifier for CheckedWebhook {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigProblem> {
        let key = match &self.secret_env {
            Some(variable) => Some(decode_secret(&secret_from_env(
                env,
                "secret_env",
                variable,
            )?)?),
            None => None,
        };
        let http = tollgate_notify::robot::http_client(self.timeout)?;
        Ok(Arc::new(WebhookNotifier {
            config: self.clone(),
            key,
            http,
        }))
    }
}

/// Decodes `whsec_<base64>` into the signing key.
fn decode_secret(secret: &str) -> Result<Vec<u8>, ConfigProblem> {
    let encoded = secret.strip_prefix("whsec_").ok_or_else(|| {
        ConfigProblem::new("secret_env", "the secret must look like whsec_<base64>")
    })?;
    let key = BASE64
        .decode(encoded)
        .map_err(|_| ConfigProblem::new("secret_env", "the part after whsec_ is not base64"))?;
    if key.is_empty() {
        return Err(ConfigProblem::new("secret_env", "the secret is empty"));
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

pub struct WebhookNotifier {
    config: CheckedWebhook,
    key: Option<Vec<u8>>,
    http: reqwest::Client,
}

impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        WebhookConfig::TYPE
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = event.to_json();
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let mut request = self
                .http
                .post(&self.config.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", &event.id)
                .header("webhook-timestamp", timestamp.to_string());
            if let Some(key) = &self.key {
                request =
                    request.header("webhook-signature", sign(key, &event.id, timestamp, &body));
            }
            for (name, value) in &self.config.headers {
                request = request.header(name, value);
            }
            let origin = url_origin(&self.config.url);
            let response = request
                .body(body)
                .send()
                .await
                .map_err(|e| DeliveryError::new(format!("{origin}: {}", without_url(&e))))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(DeliveryError::new(format!(
                    "{origin} answered HTTP {status}"
                )))
            }
        })
    }
}

/// A reqwest error without the URL (which may carry a token).
fn without_url(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret_env: Some("HOOK_SECRET".into()),
            headers: BTreeMap::new(),
            timeout: None,
        }
    }

    /// The checked configuration, or the keys of every problem found.
    fn validate(config: &WebhookConfig) -> Result<CheckedWebhook, Vec<String>> {
        config
            .validate_alone()
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn a_bad_url_is_named() {
        assert_eq!(
            validate(&config("automation.example.com")).unwrap_err(),
            ["url"]
        );
    }

    #[test]
    fn every_bad_header_and_the_timeout_are_named_together() {
        let mut bad = config("https://a.example");
        bad.headers.insert("bad header".into(), "x".into());
        bad.headers.insert("webhook-id".into(), "x".into());
        bad.headers.insert("x-ok".into(), "fine".into());
        bad.timeout = Some("forever".into());
        assert_eq!(
            validate(&bad).unwrap_err(),
            ["headers.bad header", "headers.webhook-id", "timeout"]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<WebhookConfig>(r#"{"url":"https://a","secrt_env":"X"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("secrt_env"), "{err}");
    }

    #[test]
    fn a_missing_or_malformed_secret_is_named_without_its_value() {
        let checked = validate(&config("https://a.example")).unwrap();
        let err = checked.build(&|_| None).err().unwrap();
        assert_eq!(err.key, "secret_env");
        let err = checked.build(&|_| Some("hunter2".into())).err().unwrap();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        // The example from the Standard Webhooks specification's reference libraries.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
