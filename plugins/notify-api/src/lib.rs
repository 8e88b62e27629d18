//! The notifier plugin interface: the event every notifier delivers, the two steps of a
//! plugin (a pure `validate` of its configuration, then `build` with the environment),
//! and the zh-CN wording that the human-facing notifiers share.
//!
//! A plugin crate provides a configuration type (serde, unknown keys refused) that
//! implements [`NotifierConfig`]; its checked form implements [`BuildNotifier`], whose
//! `build` reads secrets from the environment and returns a ready [`Notifier`].

mod event;
mod wording;

pub mod config;
pub mod robot;

pub use config::{ConfigProblem, Problems};
pub use event::{Event, EventKind, RenderedReport, Severity, Status, EVENT_VERSION};
pub use wording::{
    event_timezone, facts, local_time, markdown_zh, plain_zh, severity_tag, severity_zh, title_zh,
    unit_zh, Fact,
};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future, so that notifiers can be held as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Looks up an environment variable (tests pass their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

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

    /// Checks every value without any I/O, records every problem in `problems` (keys
    /// relative to the notifier's table: `smtp_url`, `to[1]`), and returns the checked
    /// configuration when there was none.
    fn validate(&self, problems: &mut Problems) -> Option<Self::Checked>;

    /// [`NotifierConfig::validate`] on its own (for tests and tools): the checked
    /// configuration, or every problem with keys relative to the table.
    fn validate_alone(&self) -> Result<Self::Checked, Vec<ConfigProblem>> {
        let mut problems = Problems::new();
        match self.validate(&mut problems) {
            Some(checked) if problems.is_empty() => Ok(checked),
            _ => Err(problems.into_vec()),
        }
    }
}

/// How long one delivery may hold a notification. The outbox leases a notification to the
/// worker delivering it for this long, and after it another worker may deliver it again;
/// so every notifier's `timeout` (the limit on a whole delivery) must stay below it, and
/// tollgate refuses a configuration where it does not.
pub const DELIVERY_LEASE: Duration = Duration::from_secs(300);

/// A checked configuration, ready to become a notifier.
pub trait BuildNotifier: std::fmt::Debug + Send + Sync {
    /// The limit on one whole delivery (`timeout` in the notifier's table).
    fn timeout(&self) -> Duration;

    /// Reads the secrets named in the configuration from `env` and builds the client.
    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigProblem>;
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

/// Reads a required secret from the environment variable named by `key`'s value.
pub fn secret_from_env(env: Env<'_>, key: &str, variable: &str) -> Result<String, ConfigProblem> {
    env(variable).filter(|v| !v.is_empty()).ok_or_else(|| {
        ConfigProblem::new(
            key,
            format!("the environment variable {variable} is not set"),
        )
    })
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
    fn url_origins_hide_paths_and_queries() {
        assert_eq!(
            url_origin("https://oapi.dingtalk.com/robot/send?access_token=abc"),
            "https://oapi.dingtalk.com"
        );
    }
}
