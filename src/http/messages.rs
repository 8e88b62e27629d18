//! `POST /v1/messages` (send) and `GET /v1/messages/{id}`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::ApiError;
use super::json::ApiJson;
use super::send_answer::{MessageRecord, SendAnswer};
use super::AppState;
use crate::domain::Outcome;
use crate::ledger::IdempotencyKey;
use crate::send::{MessageSource, Origin, SendOutcome, SendRequest};

/// A send request. Exactly one of `template` (with `params`) or `content`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "sms_code", "to": "13912345678", "template": "login_code", "params": {"code": "482913"}}))]
pub struct SendBody {
    /// A configured channel's name.
    pub channel: String,
    /// A mainland China mobile number (`13912345678`, `+86 139 1234 5678`).
    pub to: String,
    /// A template of the channel, by name; SMS channels send templates only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Every variable of the template (`#code#` → `"code"`), and no other.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamValue>,
    /// Free text, for channels that take it (`voice_notice`) or the digits of a
    /// `voice_code` call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Template parameters may be given as strings or as plain numbers (`"code": 1234`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    #[schema(value_type = f64)]
    Number(serde_json::Number),
}

impl ParamValue {
    fn into_text(self) -> String {
        match self {
            ParamValue::Text(text) => text,
            ParamValue::Number(number) => number.to_string(),
        }
    }
}

crate::refusals!(
    /// What a send can answer instead of [`SendAnswer`]. Every one carries `charged`.
    SendRefusals {
        400 => [
            "invalid_request", "unknown_channel", "invalid_mobile", "unknown_template",
            "missing_template_param", "unknown_template_param", "content_empty",
            "content_too_long", "missing_signature", "missing_unsubscribe_suffix",
            "invalid_voice_code", "outside_sending_window",
        ],
        401 => ["unauthorized"],
        402 => ["quota_exhausted", "quota_reserved", "vendor_quota_exhausted"],
        408 => ["request_timeout"],
        409 => ["idempotency_conflict", "idempotency_in_progress"],
        413 => ["payload_too_large"],
        415 => ["unsupported_media_type"],
        429 => ["throttled", "rate_limited"],
        502 => ["upstream_error", "upstream_auth_failed"],
        503 => ["unavailable"],
        504 => ["upstream_timeout", "send_in_progress"],
    }
);

/// Send a message
///
/// Rates the message, reserves its units, calls the vendor and settles the charge.
/// Every refusal says `"charged"` (`false` unless the vendor call may have gone out),
/// including those of authentication and of malformed or oversized bodies.
#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "send_message",
    tag = "messages",
    request_body = SendBody,
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1-255 visible ASCII characters: a repeat with the same key and body answers the first result without a second send or charge"),
    ),
    responses((status = 200, description = "The vendor's outcome, the charge and what is left", body = SendAnswer), SendRefusals),
    security(("bearer" = [])),
)]
pub async fn send(
    state: State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    body: Result<ApiJson<SendBody>, ApiError>,
) -> Result<Response, ApiError> {
    let result = match (caller, body) {
        (Ok(caller), Ok(ApiJson(body))) => send_checked(state, caller, headers, body).await,
        (Err(err), _) | (_, Err(err)) => Err(err),
    };
    result.map_err(|err| match err.charged {
        Some(_) => err,
        None => err.charged(false),
    })
}

async fn send_checked(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: SendBody,
) -> Result<Response, ApiError> {
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            // The canonical form: the parsed body re-serialized (params sorted), so that
            // the same request sent with other spacing or key order still matches.
            let canonical = serde_json::to_vec(&body).expect("a parsed body serializes");
            let key = value
                .to_str()
                .map_err(|_| ApiError::invalid_request("Idempotency-Key must be visible ASCII"))?;
            Some(
                IdempotencyKey::new(key, &canonical, state.sends.hash_key())
                    .map_err(|e| ApiError::invalid_request(e.to_string()))?,
            )
        }
    };
    let message = match (body.template, body.content) {
        (Some(name), None) => MessageSource::Template {
            name,
            params: body
                .params
                .into_iter()
                .map(|(k, v)| (k, v.into_text()))
                .collect(),
        },
        (None, Some(content)) if body.params.is_empty() => MessageSource::Content(content),
        (None, Some(_)) => {
            return Err(ApiError::invalid_request(
                "\"params\" go with \"template\", not with \"content\"",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "give either \"template\" or \"content\", not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid_request(
                "give \"template\" (with \"params\") or \"content\"",
            ))
        }
    };
    let request = SendRequest {
        channel: body.channel,
        to: body.to,
        message,
        client: caller.name,
        idempotency,
        origin: Origin::Api,
    };
    let outcome = state.sends.send(request).await?;
    Ok(send_response(&outcome))
}

crate::refusals!(
    /// What looking up a send can answer instead of the send.
    GetRefusals {
        401 => ["unauthorized"],
        404 => ["not_found"],
        503 => ["unavailable"],
    }
);

/// One send with its charge
///
/// Clients see their own sends; admin clients see every client's.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    operation_id = "get_message",
    tag = "messages",
    params(("id" = String, Path, description = "The `id` a send answered")),
    responses((status = 200, description = "The send", body = MessageRecord), GetRefusals),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = state.sends.ledger().get_send(&id).await?;
    match record {
        // Clients see their own sends; admins see all.
        Some(record) if caller.admin || record.client == caller.name => {
            Ok(Json(MessageRecord::new(&record)).into_response())
        }
        _ => Err(ApiError::not_found(format!("no message {id:?}"))),
    }
}

/// The answer to a send, from its record: the same for the first request and for
/// every idempotent repeat of it.
pub fn send_response(outcome: &SendOutcome) -> Response {
    let record = &outcome.record;
    let failure = match record.status.outcome() {
        Some(Outcome::VendorQuotaExhausted) => Some((StatusCode::PAYMENT_REQUIRED, "vendor_quota_exhausted", "the vendor says the package is used up; buy a new package and register it")),
        Some(Outcome::Throttled) => Some((StatusCode::TOO_MANY_REQUESTS, "throttled", "the vendor is throttling requests; retry later")),
        Some(Outcome::AuthFailed) => Some((StatusCode::BAD_GATEWAY, "upstream_auth_failed", "the vendor refused the AppCode")),
        Some(Outcome::UpstreamError) => Some((StatusCode::BAD_GATEWAY, "upstream_error", "the vendor call failed; nothing was charged")),
        Some(Outcome::Uncertain) => Some((StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "the vendor did not answer in time; the send may have gone out, so it is charged and flagged for reconciliation")),
        Some(Outcome::Sent | Outcome::VendorRejected) | None => None,
    };
    let Some((status, code, message)) = failure else {
        let mut answer = SendAnswer::new(record, outcome.remaining);
        answer.recorded = outcome.recorded;
        return Json(answer).into_response();
    };
    let detail = record
        .upstream
        .message
        .as_deref()
        .map(|m| format!("{message} ({m})"))
        .unwrap_or_else(|| message.to_owned());
    let mut error = ApiError::new(status, code, detail).charged(record.charged());
    error.send_id = Some(record.id.clone());
    error.attempts = record.attempts();
    error.into_response()
}
