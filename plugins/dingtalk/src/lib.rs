//! The `dingtalk` notifier: a DingTalk custom robot (自定义机器人), markdown message.
//!
//! With `secret_env` (the robot's `SEC…` secret) each request is signed: `timestamp` in
//! milliseconds and `sign = base64(HMAC-SHA256(key = secret, message = timestamp + "\n"
//! + secret))` are added to the query string (URL-encoded).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tollgate_notify::robot::{post_to_robot, RobotAnswer};
use tollgate_notify::{
    markdown_zh, secret_from_env, title_zh, BoxFuture, BuildNotifier, ConfigProblem, DeliveryError,
    Env, Event, Notifier, NotifierConfig, Problems,
};

/// `[[notifiers]] type = "dingtalk"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// The robot's webhook URL, `https://oapi.dingtalk.com/robot/send?access_token=…`.
    pub url: String,
    /// The environment variable holding the robot's signing secret (`SEC…`).
    pub secret_env: Option<String>,
    /// Mobile numbers to @-mention.
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    #[serde(default)]
    pub at_all: bool,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckedDingTalk {
    url: String,
    secret_env: Option<String>,
    at_mobiles: Vec<String>,
    at_all: bool,
    timeout: Duration,
}

impl NotifierConfig for DingTalkConfig {
    const TYPE: &'static str = "dingtalk";
    type Checked = CheckedDingTalk;

    fn validate(&self, problems: &mut Problems) -> Option<CheckedDingTalk> {
        let before = problems.len();
        problems.http_url("url", &self.url);
        if self
            .secret_env
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            problems.add("secret_env", "must name an environment variable");
        }
        for (i, mobile) in self.at_mobiles.iter().enumerate() {
            if mobile.is_empty() || !mobile.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
                problems.add(&format!("at_mobiles[{i}]"), "must be a mobile number");
            }
        }
        let timeout =
            problems.duration("timeout", self.timeout.as_deref(), Duration::from_secs(10));
        (problems.len() == before).then(|| CheckedDingTalk {
            url: self.url.clone(),
            secret_env: self.secret_env.clone(),
            at_mobiles: self.at_mobiles.clone(),
            at_all: self.at_all,
            timeout,
        })
    }
}

impl BuildNotifier for CheckedDingTalk {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigProblem> {
        let secret = self
            .secret_env
            .as_deref()
            .map(|variable| secret_from_env(env, "secret_env", variable))
            .transpose()?;
        let http = tollgate_notify::robot::http_client(self.timeout)?;
        Ok(Arc::new(DingTalkNotifier {
            config: self.clone(),
            secret,
            http,
        }))
    }
}

/// `base64(HMAC-SHA256(key = secret, message = "<timestamp_ms>\n<secret>"))`, before
/// URL encoding.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

pub struct DingTalkNotifier {
    config: CheckedDingTalk,
    secret: Option<String>,
    http: reqwest::Client,
}

impl Notifier for DingTalkNotifier {
    fn kind(&self) -> &'static str {
        DingTalkConfig::TYPE
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let mut text = markdown_zh(event);
            for mobile in &self.config.at_mobiles {
                text.push_str(&format!("\n@{mobile}"));
            }
            let payload = serde_json::json!({
                "msgtype": "markdown",
                "markdown": { "title": title_zh(event), "text": text },
                "at": { "atMobiles": self.config.at_mobiles, "isAtAll": self.config.at_all },
            });
            let mut request = self.http.post(&self.config.url).json(&payload);
            if let Some(secret) = &self.secret {
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_default();
                request = request.query(&[
                    ("timestamp", timestamp.to_string()),
                    ("sign", sign(secret, timestamp)),
                ]);
            }
            post_to_robot(request, &self.config.url, ANSWER).await
        })
    }
}

/// DingTalk answers `{"errcode": 0, "errmsg": "ok"}`.
const ANSWER: RobotAnswer = RobotAnswer {
    code_keys: &["errcode"],
    message_key: "errmsg",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DingTalkConfig {
        DingTalkConfig {
            url: "https://oapi.dingtalk.com/robot/send?access_token=x".into(),
            secret_env: Some("DING_SECRET".into()),
            at_mobiles: vec![],
            at_all: false,
            timeout: None,
        }
    }

    /// The checked configuration, or the keys of every problem found.
    fn validate(config: &DingTalkConfig) -> Result<CheckedDingTalk, Vec<String>> {
        config
            .validate_alone()
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn bad_values_are_named_all_at_once() {
        let mut bad = config();
        bad.url = "oapi.dingtalk.com".into();
        bad.at_mobiles = vec!["ops".into(), "13800000000".into(), "".into()];
        bad.secret_env = Some(" ".into());
        assert_eq!(
            validate(&bad).unwrap_err(),
            ["url", "secret_env", "at_mobiles[0]", "at_mobiles[2]"]
        );
    }

    #[test]
    fn a_missing_secret_is_named_at_build() {
        let err = validate(&config()).unwrap().build(&|_| None).err().unwrap();
        assert_eq!(err.key, "secret_env");
        assert!(err.problem.contains("DING_SECRET"));
    }

    #[test]
    fn the_signature_signs_timestamp_newline_secret_with_the_secret() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SECabc").unwrap();
        mac.update(b"1700000000000\nSECabc");
        let expected = BASE64.encode(mac.finalize().into_bytes());
        assert_eq!(sign("SECabc", 1_700_000_000_000), expected);
    }
}
