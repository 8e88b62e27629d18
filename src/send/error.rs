//! Why a send was refused, or failed before the vendor answered.

use std::time::Duration;

use crate::domain::content::ContentError;
use crate::domain::SendClass;
use crate::ledger::{Attempt, LedgerError};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    #[error("{0}")]
    InvalidMobile(#[from] crate::domain::mobile::MobileError),
    #[error("channel {channel} has no template {template:?}")]
    UnknownTemplate { channel: String, template: String },
    #[error("{kind} channels send registered templates only: give \"template\" and \"params\" instead of \"content\"")]
    TemplateRequired { kind: &'static str },
    #[error("channel {channel} sends the vendor's own templates (format = \"template\"): send a template by name, not the text")]
    VendorTemplateRequired { channel: String },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(
        "no quota left on channel {channel}: {remaining} unit(s) remain, the send needs {needed}"
    )]
    QuotaExhausted {
        channel: String,
        remaining: i64,
        needed: u32,
    },
    #[error(
        "the {remaining} unit(s) left on channel {channel} are kept for {kept_for} sends; this {class} send was not sent"
    )]
    QuotaReserved {
        channel: String,
        remaining: i64,
        class: SendClass,
        kept_for: &'static str,
    },
    #[error("over the traffic limit {limit} ({rule}); nothing was sent, retry in {}s", retry_after_secs(*.retry_after))]
    RateLimited {
        limit: String,
        rule: String,
        retry_after: Duration,
        /// Every limit it is over names its channels (a route's next channel may fit).
        channel_specific: bool,
    },
    /// Every channel of a route was tried and none took the send: `last` is why the
    /// last one did not.
    #[error("{last} (route {route} tried {})", tried(attempts))]
    Route {
        route: String,
        attempts: Vec<Attempt>,
        last: Box<SendError>,
    },
    #[error("every channel of route {route} is skipped for now (their vendors keep failing); nothing was sent, retry shortly")]
    RouteUnavailable {
        route: String,
        attempts: Vec<Attempt>,
    },
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error("a request with this Idempotency-Key is still being sent; retry later")]
    IdempotencyInProgress,
    #[error("the ledger is busy; nothing was sent, retry shortly")]
    Busy,
    #[error("{limit} sends are under way on this instance, its limit (server.max_in_flight_sends); nothing was sent, retry shortly")]
    TooManyInFlight { limit: usize },
    #[error("the ledger is unavailable; nothing was sent")]
    Unavailable(#[source] LedgerError),
}

impl SendError {
    /// The error code of SPEC §5.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::UnknownChannel(_) => "unknown_channel",
            SendError::InvalidMobile(e) => e.code(),
            SendError::UnknownTemplate { .. } => "unknown_template",
            SendError::TemplateRequired { .. } | SendError::VendorTemplateRequired { .. } => {
                "invalid_request"
            }
            SendError::Content(e) => e.code(),
            SendError::QuotaExhausted { .. } => "quota_exhausted",
            SendError::QuotaReserved { .. } => "quota_reserved",
            SendError::RateLimited { .. } => "rate_limited",
            SendError::Route { last, .. } => last.code(),
            SendError::RouteUnavailable { .. } => "unavailable",
            SendError::IdempotencyConflict => "idempotency_conflict",
            SendError::IdempotencyInProgress => "idempotency_in_progress",
            SendError::Busy | SendError::TooManyInFlight { .. } | SendError::Unavailable(_) => {
                "unavailable"
            }
        }
    }

    /// When a retry of the same request may succeed, how long to wait first (the
    /// `Retry-After` of the answer); `None` when repeating it cannot help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::RateLimited { retry_after, .. } => {
                Some(Duration::from_secs(retry_after_secs(*retry_after)))
            }
            SendError::Route { last, .. } => last.retry_after(),
            SendError::RouteUnavailable { .. } => Some(Duration::from_secs(5)),
            // The first request with the key is usually answered within a second.
            SendError::IdempotencyInProgress => Some(Duration::from_secs(1)),
            // Momentary: a queue or the in-flight limit is full.
            SendError::Busy | SendError::TooManyInFlight { .. } => Some(Duration::from_secs(1)),
            // The database is down or failing over: retrying at once only adds load.
            SendError::Unavailable(_) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

impl From<LedgerError> for SendError {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::Busy => SendError::Busy,
            other => SendError::Unavailable(other),
        }
    }
}

impl SendError {
    /// The error a route's attempt ended with, unwrapped from the route's.
    pub fn innermost(&self) -> &SendError {
        match self {
            SendError::Route { last, .. } => last.innermost(),
            other => other,
        }
    }

    /// The channels a route tried, when this is a route's refusal.
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            SendError::Route { attempts, .. } | SendError::RouteUnavailable { attempts, .. } => {
                attempts
            }
            _ => &[],
        }
    }

    /// Whether a route tries its next channel after this refusal of one: anything but
    /// a number that is not a mobile number, which no channel can send to.
    pub(super) fn fails_over(&self) -> bool {
        !matches!(self, SendError::InvalidMobile(_))
    }
}

/// `a: quota_exhausted, b: circuit_open`.
fn tried(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.channel, a.status))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whole seconds, rounded up, and at least one: a client that waits this long finds the
/// window has let its send through.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_micros().div_ceil(1_000_000).max(1) as u64
}
