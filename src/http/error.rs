//! The API's one error type: every refusal as `{"error": {"code", "message", "charged"}}`,
//! with a `Retry-After` header when waiting and repeating the request can succeed.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::ledger::{Attempt, LedgerError};
use crate::send::SendError;

/// An error answered to an API client. `code` is the contract (SPEC §5); `message` is
/// for people. Internal causes are logged, never shown.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Present on send errors: whether the send was charged anyway.
    pub charged: Option<Charged>,
    /// The send this error belongs to, when one was recorded.
    pub send_id: Option<String>,
    /// How long to wait before repeating the request (`Retry-After`), when repeating
    /// it can succeed.
    pub retry_after: Option<Duration>,
    /// A route's send: every channel tried, in order.
    pub attempts: Vec<Attempt>,
}

/// The `charged` of a send error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    Yes,
    No,
    /// The send is still under way: whether it will be charged is not known yet
    /// (`"charged": null`).
    NotYetKnown,
}

/// How long a client should wait before retrying while the database is unreachable: a
/// restart or failover takes seconds, and retrying at once only adds load.
pub const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(5);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            charged: None,
            send_id: None,
            retry_after: None,
            attempts: Vec::new(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown bearer token (Authorization: Bearer <token>)",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs an admin client",
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn unavailable(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error_chain(cause), "database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is unreachable; nothing was sent or changed",
        )
        .retry_after(DATABASE_RETRY_AFTER)
    }

    pub fn charged(mut self, charged: bool) -> Self {
        self.charged = Some(if charged { Charged::Yes } else { Charged::No });
        self
    }

    /// For a send still under way when the client is answered.
    pub fn charge_not_yet_known(mut self) -> Self {
        self.charged = Some(Charged::NotYetKnown);
        self
    }

    /// Tells the client to repeat the request after `wait` (`Retry-After`, in whole
    /// seconds, rounded up).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// `Retry-After` takes whole seconds; a wait below one is given as one, never as 0
/// (which would invite an immediate retry).
fn retry_after_seconds(wait: Duration) -> HeaderValue {
    let seconds = wait.as_millis().div_ceil(1000).max(1);
    HeaderValue::from(seconds as u64)
}

/// The full cause chain of an error, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Every refusal's body: `{"error": {...}}` (SPEC §5).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong. `code` is for programs and listed per operation; `message` is for
/// people and may change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The error code of SPEC §5, such as `quota_exhausted`.
    pub code: &'static str,
    pub message: String,
    /// On send errors only: whether the send was charged anyway (`true` after an
    /// `uncertain` vendor call); `null` while the send is still under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    pub charged: Option<Charged>,
    /// The send this error belongs to, when one was recorded (`GET /v1/messages/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A send through a route: every channel it tried, in order, with how each attempt
    /// ended (SPEC §13).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

impl Serialize for Charged {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Charged::Yes => serializer.serialize_bool(true),
            Charged::No => serializer.serialize_bool(false),
            Charged::NotYetKnown => serializer.serialize_none(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                charged: self.charged,
                id: self.send_id,
                attempts: self.attempts,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_seconds(wait));
        }
        response
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        match &err {
            LedgerError::InvalidPackage(invalid) => ApiError::invalid_request(invalid.to_string()),
            LedgerError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the ledger is busy; nothing was changed, retry shortly",
            )
            .retry_after(Duration::from_secs(1)),
            _ => ApiError::unavailable(&err),
        }
    }
}

impl From<SendError> for ApiError {
    fn from(err: SendError) -> Self {
        let status = match err.innermost() {
            SendError::QuotaExhausted { .. } | SendError::QuotaReserved { .. } => {
                StatusCode::PAYMENT_REQUIRED
            }
            SendError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            SendError::IdempotencyConflict | SendError::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            SendError::Unavailable(cause) => return ApiError::unavailable(cause).charged(false),
            SendError::Busy
            | SendError::TooManyInFlight { .. }
            | SendError::RouteUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut api = ApiError::new(status, err.code(), err.to_string()).charged(false);
        api.retry_after = err.retry_after();
        api.attempts = err.attempts().to_vec();
        api
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), "1");
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after_seconds(Duration::from_secs(5)), "5");
    }

    #[test]
    fn refusals_worth_repeating_say_when() {
        let in_progress = ApiError::from(SendError::IdempotencyInProgress).into_response();
        assert_eq!(in_progress.status(), StatusCode::CONFLICT);
        assert_eq!(in_progress.headers()[header::RETRY_AFTER], "1");

        let full = ApiError::from(SendError::TooManyInFlight { limit: 4 }).into_response();
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(full.headers().contains_key(header::RETRY_AFTER));

        let busy = ApiError::from(SendError::Busy).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers().contains_key(header::RETRY_AFTER));

        let limited = ApiError::from(SendError::RateLimited {
            limit: "per-number".into(),
            rule: "at most 1 send per mobile number per 1m".into(),
            channel_specific: false,
            retry_after: Duration::from_millis(20_100),
        })
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "21");

        let conflict = ApiError::from(SendError::IdempotencyConflict).into_response();
        assert!(!conflict.headers().contains_key(header::RETRY_AFTER));
    }

    /// A full or stuck ledger writer, or traffic-limits task, answers `Busy`; the client
    /// must learn that nothing was sent or charged and when to try again.
    #[test]
    fn a_busy_ledger_writer_or_limits_task_is_503_unavailable_uncharged_with_retry_after() {
        let api = ApiError::from(SendError::from(LedgerError::Busy));
        assert_eq!(api.code, "unavailable");
        assert_eq!(api.charged, Some(Charged::No));

        let response = api.into_response();

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        // A writer that died with the operation queued (the next one starts it again).
        let stopped = ApiError::from(SendError::from(LedgerError::WriterStopped));
        assert_eq!(stopped.code, "unavailable");
        assert_eq!(stopped.charged, Some(Charged::No));
        let response = stopped.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
