//! The `wecom` notifier: a WeCom (企业微信) group robot, markdown message. WeCom robots
//! have no signature: the `key` in the URL is the secret, so the URL is never printed.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tollgate_notify::robot::{post_to_robot, RobotAnswer};
use tollgate_notify::{
    markdown_zh, BoxFuture, BuildNotifier, ConfigProblem, DeliveryError, Env, Event, Notifier,
    NotifierConfig, Problems,
};

/// WeCom refuses markdown content over 4096 bytes.
const MAX_MARKDOWN_BYTES: usize = 4096;

/// `[[notifiers]] type = "wecom"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`.
    pub url: String,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckedWeCom {
    url: String,
    timeout: Duration,
}

impl NotifierConfig for WeComConfig {
    const TYPE: &'static str = "wecom";
    type Checked = CheckedWeCom;

    fn validate(&self, problems: &mut Problems) -> Option<CheckedWeCom> {
        let url_ok = problems.http_url("url", &self.url);
        let timeout = problems.optional_duration("timeout", self.timeout.as_deref());
        if !url_ok || (self.timeout.is_some() && timeout.is_none()) {
            return None;
        }
        Some(CheckedWeCom {
            url: self.url.clone(),
            timeout: timeout.unwrap_or(Duration::from_secs(10)),
        })
    }
}

impl BuildNotifier for CheckedWeCom {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(&self, _env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigProblem> {
        let http = tollgate_notify::robot::http_client(self.timeout)?;
        Ok(Arc::new(WeComNotifier {
            config: self.clone(),
            http,
        }))
    }
}

pub struct WeComNotifier {
    config: CheckedWeCom,
    http: reqwest::Client,
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// WeCom answers `{"errcode": 0, "errmsg": "ok"}`.
const ANSWER: RobotAnswer = RobotAnswer {
    code_keys: &["errcode"],
    message_key: "errmsg",
};

impl Notifier for WeComNotifier {
    fn kind(&self) -> &'static str {
        WeComConfig::TYPE
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let payload = serde_json::json!({
                "msgtype": "markdown",
                "markdown": { "content": truncate(markdown_zh(event), MAX_MARKDOWN_BYTES) },
            });
            let request = self.http.post(&self.config.url).json(&payload);
            post_to_robot(request, &self.config.url, ANSWER).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked configuration, or the keys of every problem found.
    fn validate(config: &WeComConfig) -> Result<CheckedWeCom, Vec<String>> {
        config
            .validate_alone()
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn bad_values_are_named() {
        let bad = WeComConfig {
            url: "qyapi.weixin.qq.com".into(),
            timeout: Some("0s".into()),
        };
        assert_eq!(validate(&bad).unwrap_err(), ["url", "timeout"]);
        let err =
            serde_json::from_str::<WeComConfig>(r#"{"url":"https://a","key":"k"}"#).unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }

    #[test]
    fn long_markdown_is_cut_on_a_character_boundary() {
        let cut = truncate("余".repeat(2000), MAX_MARKDOWN_BYTES);
        assert!(cut.len() <= MAX_MARKDOWN_BYTES);
        assert!(cut.chars().all(|c| c == '余'));
    }
}
