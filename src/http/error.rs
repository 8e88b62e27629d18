//! The API's one error type: every refusal as `{"error": {"code", "message", "charged"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::ledger::LedgerError;
use crate::send::SendError;

/// An error answered to an API client. `code` is the contract (SPEC §5); `message` is
/// for people. Internal causes are logged, never shown.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Present on send errors: whether the send was charged anyway.
    pub charged: Option<bool>,
    /// The send this error belongs to, when one was recorded.
    pub send_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            charged: None,
            send_id: None,
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
    }

    pub fn charged(mut self, charged: bool) -> Self {
        self.charged = Some(charged);
        self
    }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(charged) = self.charged {
            error["charged"] = json!(charged);
        }
        if let Some(id) = self.send_id {
            error["id"] = json!(id);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        match &err {
            LedgerError::InvalidPackage(invalid) => ApiError::invalid_request(invalid.to_string()),
            _ => ApiError::unavailable(&err),
        }
    }
}

impl From<SendError> for ApiError {
    fn from(err: SendError) -> Self {
        let status = match &err {
            SendError::QuotaExhausted { .. } => StatusCode::PAYMENT_REQUIRED,
            SendError::IdempotencyConflict | SendError::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            SendError::Unavailable(cause) => return ApiError::unavailable(cause).charged(false),
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, err.code(), err.to_string()).charged(false)
    }
}
