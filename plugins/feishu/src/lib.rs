//! The `feishu` notifier: a Feishu / Lark custom bot (自定义机器人), text message.
//!
//! Feishu signs differently from DingTalk: `timestamp` is in *seconds*, and `sign =
//! base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = empty))` — the string
//! to sign is the key and the message is empty. Both go in the JSON body.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tollgate_notify::robot::{post_to_robot, RobotAnswer};
use tollgate_notify::{
    plain_zh, secret_from_env, BoxFuture, BuildNotifier, ConfigProblem, DeliveryError, Env, Event,
    Notifier, NotifierConfig, Problems,
};

/// `[[notifiers]] type = "feishu"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    /// The bot's webhook URL, `https://open.feishu.cn/open-apis/bot/v2/hook/<token>`.
    pub url: String,
    /// The environment variable holding the bot's signing secret.
    pub secret_env: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckedFeishu {
    url: String,
    secret_env: Option<String>,
    timeout: Duration,
}

impl NotifierConfig for FeishuConfig {
    const TYPE: &'static str = "feishu";
    type Checked = CheckedFeishu;

    fn validate(&self, problems: &mut Problems) -> Option<CheckedFeishu> {
        let before = problems.len();
        problems.http_url("url", &self.url);
        if self
            .secret_env
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            problems.add("secret_env", "must name an environment variable");
        }
        let timeout =
            problems.duration("timeout", self.timeout.as_deref(), Duration::from_secs(10));
        (problems.len() == before).then(|| CheckedFeishu {
            url: self.url.clone(),
            secret_env: self.secret_env.clone(),
            timeout,
        })
    }
}

impl BuildNotifier for CheckedFeishu {
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
        Ok(Arc::new(FeishuNotifier {
            config: self.clone(),
            secret,
            http,
        }))
    }
}

/// `base64(HMAC-SHA256(key = "<timestamp_s>\n<secret>", message = ""))`.
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    BASE64.encode(mac.finalize().into_bytes())
}

pub struct FeishuNotifier {
    config: CheckedFeishu,
    secret: Option<String>,
    http: reqwest::Client,
}

impl Notifier for FeishuNotifier {
    fn kind(&self) -> &'static str {
        FeishuConfig::TYPE
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let mut payload = serde_json::json!({
                "msg_type": "text",
                "content": { "text": plain_zh(event) },
            });
            if let Some(secret) = &self.secret {
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                payload["timestamp"] = serde_json::json!(timestamp.to_string());
                payload["sign"] = serde_json::json!(sign(secret, timestamp));
            }
            let request = self.http.post(&self.config.url).json(&payload);
            post_to_robot(request, &self.config.url, ANSWER).await
        })
    }
}

/// Current bots answer `{"code": 0, "msg": "success"}`; older ones `{"StatusCode": 0}`.
const ANSWER: RobotAnswer = RobotAnswer {
    code_keys: &["code", "StatusCode"],
    message_key: "msg",
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked configuration, or the keys of every problem found.
    fn validate(config: &FeishuConfig) -> Result<CheckedFeishu, Vec<String>> {
        config
            .validate_alone()
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn bad_values_are_named() {
        let bad = FeishuConfig {
            url: "open.feishu.cn/hook".into(),
            secret_env: Some("".into()),
            timeout: Some("5 parsecs".into()),
        };
        assert_eq!(
            validate(&bad).unwrap_err(),
            ["url", "secret_env", "timeout"]
        );
    }

    #[test]
    fn the_string_to_sign_is_the_key_and_the_message_is_empty() {
        let mac = Hmac::<Sha256>::new_from_slice(b"1599360473\nsecret").unwrap();
        assert_eq!(
            sign("secret", 1_599_360_473),
            BASE64.encode(mac.finalize().into_bytes())
        );
        // DingTalk's scheme (secret as key, string as message) gives something else.
        let mut dingtalk = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        dingtalk.update(b"1599360473\nsecret");
        assert_ne!(
            sign("secret", 1_599_360_473),
            BASE64.encode(dingtalk.finalize().into_bytes())
        );
    }
}
