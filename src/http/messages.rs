//! `POST /v1/messages` (send) and `GET /v1/messages/{id}`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::json::ApiJson;
use super::AppState;
use crate::domain::Outcome;
use crate::ledger::{IdempotencyKey, SendRecord};
use crate::send::{MessageSource, Origin, SendOutcome, SendRequest};

/// A send request. Exactly one of `template` (with `params`) or `content`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    pub channel: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Template parameters may be given as strings or as plain numbers (`"code": 1234`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
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

/// Every refusal of a send says `"charged": false`, including those of the extractors
/// (authentication, malformed or oversized bodies), so clients can rely on the field.
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

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = state.sends.ledger().get_send(&id).await?;
    match record {
        // Clients see their own sends; admins see all.
        Some(record) if caller.admin || record.client == caller.name => {
            let mut body = message_json(&record, None);
            body["client"] = json!(record.client);
            body["created_at"] = json!(record.created_at);
            body["settled_at"] = json!(record.settled_at);
            body["needs_reconciliation"] = json!(record.needs_reconciliation);
            body["upstream"]["remain_point"] = json!(record.upstream.remain_point);
            Ok(Json(body).into_response())
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
        return Json(message_json(record, Some(outcome.remaining))).into_response();
    };
    let detail = record
        .upstream
        .message
        .as_deref()
        .map(|m| format!("{message} ({m})"))
        .unwrap_or_else(|| message.to_owned());
    let mut error = ApiError::new(status, code, detail).charged(record.charged());
    error.send_id = Some(record.id.clone());
    error.into_response()
}

fn message_json(record: &SendRecord, remaining: Option<i64>) -> serde_json::Value {
    let mut body = json!({
        "id": record.id,
        "channel": record.channel,
        "to": record.to,
        "class": record.class,
        "status": record.status,
        "charged": record.charged(),
        "units": record.units,
        "cost": record.cost,
        "upstream": {
            "status": record.upstream.status,
            "request_id": record.upstream.request_id,
            "task_id": record.upstream.task_id,
            "message": record.upstream.message,
        },
    });
    if let Some(remaining) = remaining {
        body["quota"] = json!({ "remaining_units": remaining });
    }
    body
}
