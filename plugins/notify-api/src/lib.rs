//! The notifier plugin interface: the event every notifier delivers, the two steps of a
//! plugin (a pure `validate` of its configuration, then `build` with the environment),
//! and the zh-CN wording that the human-facing notifiers share.
//!
//! A plugin crate provides a configuration type (serde, unknown keys refused) that
//! implements [`NotifierConfig`]; its checked form implements [`BuildNotifier`], whose
//! `build` reads secrets from the environment and returns a ready [`Notifier`].

mod event;
mod wording;

pub mod robot;

pub use event::{Event, EventKind, Severity, Status, EVENT_VERSION};
pub use wording::{markdown_zh, plain_zh, title_zh};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future, so that notifiers can be held as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Looks up an environment variable (tests pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A configuration problem, naming the key (inside the notifier's table) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Why one delivery attempt failed. The message never holds a secret (tokens, keys,
/// passwords, robot URLs): it is stored with the attempt and may be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

impl DeliveryError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A plugin's configuration as written in `[[notifiers]]` (without `name` and `type`).
pub trait NotifierConfig {
    /// The `type` that selects this plugin.
    const TYPE: &'static str;
    type Checked: BuildNotifier;

    /// Checks every value without any I/O and returns the checked configuration, or the
    /// first problem with the key it concerns.
    fn validate(&self) -> Result<Self::Checked, ConfigError>;
}

/// A checked configuration, ready to become a notifier.
pub trait BuildNotifier: std::fmt::Debug + Send + Sync {
    /// Reads the secrets named in the configuration from `env` and builds the client.
    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigError>;
}

/// Something that delivers events somewhere.
pub trait Notifier: Send + Sync {
    /// The plugin type (`email`, `webhook`, …), for logs and `notify test`.
    fn kind(&self) -> &'static str;

    /// Delivers one event. `Ok` means the receiver accepted it; the outbox retries on
    /// `Err`. The same event (same `id`) may be delivered more than once after a crash,
    /// so receivers that care deduplicate on `id`.
    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// Parses an optional duration such as `"10s"` (default when absent), naming `key`.
pub fn parse_timeout(
    key: &str,
    raw: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    let parsed = parse_duration(raw).ok_or_else(|| {
        ConfigError::new(
            key,
            format!("{raw:?} is not a duration like \"10s\" or \"2m\""),
        )
    })?;
    if parsed.is_zero() {
        return Err(ConfigError::new(key, "must be longer than zero"));
    }
    Ok(parsed)
}

/// `<number><unit>` with unit ms, s, m or h: enough for notifier timeouts.
fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" | "min" => Some(Duration::from_secs(number.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(number.checked_mul(3600)?)),
        _ => None,
    }
}

/// Reads a required secret from the environment variable named by `key`'s value.
pub fn secret_from_env(env: Env<'_>, key: &str, variable: &str) -> Result<String, ConfigError> {
    env(variable).filter(|v| !v.is_empty()).ok_or_else(|| {
        ConfigError::new(
            key,
            format!("the environment variable {variable} is not set"),
        )
    })
}

/// Checks that `url` is an http(s) URL; returns the problem otherwise.
pub fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(ConfigError::new(key, "must be an http:// or https:// URL")),
    }
}

/// The scheme and host of a URL, for messages: robot URLs carry their token in the path
/// or the query, which must never be printed.
pub fn url_origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(invalid url)".to_owned();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_parsed_or_named() {
        assert_eq!(
            parse_timeout("timeout", Some("15s"), Duration::ZERO).unwrap(),
            Duration::from_secs(15)
        );
        assert_eq!(
            parse_timeout("timeout", None, Duration::from_secs(3)).unwrap(),
            Duration::from_secs(3)
        );
        let err = parse_timeout("timeout", Some("soon"), Duration::ZERO).unwrap_err();
        assert_eq!(err.key, "timeout");
        assert!(parse_timeout("timeout", Some("0s"), Duration::ZERO).is_err());
    }

    #[test]
    fn url_origins_hide_paths_and_queries() {
        assert_eq!(
            url_origin("https://oapi.dingtalk.com/robot/send?access_token=abc"),
            "https://oapi.dingtalk.com"
        );
        assert!(check_http_url("url", "ftp://x").is_err());
        assert!(check_http_url("url", "http://127.0.0.1:9/x").is_ok());
    }
}
