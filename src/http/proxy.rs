//! The drop-in proxy: a channel's `proxy_path` served in the vendor's own format.
//!
//! An application written against the vendor (such as the Java sample in its manual)
//! keeps its code and changes only the host; it sends its tollgate token where the
//! AppCode was (`Authorization: APPCODE <token>`). The answer mirrors the vendor's:
//! its status, its `X-Ca-*` headers and its body. Refusals are given as the vendor's
//! gateway gives them, so the application's existing error handling still applies:
//! an unknown token is the gateway's invalid-AppCode answer, and no local quota is
//! `403 Quota Exhausted`.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::auth::token_from_header;
use super::AppState;
use crate::domain::Outcome;
use crate::ledger::SendStatus;
use crate::send::{MessageSource, Origin, SendError, SendOutcome, SendRequest};

pub async fn handle(
    State(state): State<AppState>,
    channel: String,
    parts: Parts,
    Query(mut params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(caller) = token_from_header(&parts, "APPCODE")
        .and_then(|t| state.clients.authenticate(t))
        .cloned()
    else {
        return gateway_error(
            StatusCode::BAD_REQUEST,
            "Invalid AppCode `not exists`",
            None,
        );
    };
    // The vendor's samples put content and mobile in the query; a form body is accepted too.
    if let Ok(form) = serde_urlencoded_pairs(&body) {
        for (key, value) in form {
            params.entry(key).or_insert(value);
        }
    }
    let request = SendRequest {
        channel,
        to: params.remove("mobile").unwrap_or_default(),
        message: MessageSource::Content(params.remove("content").unwrap_or_default()),
        client: caller.name,
        idempotency: None,
        origin: Origin::Proxy,
    };
    match state.sends.send(request).await {
        Ok(outcome) => mirror(&outcome),
        Err(err) => refusal(err),
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs.
fn serde_urlencoded_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ()> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(body).map_err(|_| ())?;
    Ok(url_pairs(text))
}

fn url_pairs(text: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://form.invalid/?{text}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn refusal(err: SendError) -> Response {
    match &err {
        // What is left being kept for a higher class looks to a drop-in client like
        // the package being used up, which is what it means for that send (SPEC §11).
        SendError::QuotaExhausted { .. } | SendError::QuotaReserved { .. } => gateway_error(
            StatusCode::FORBIDDEN,
            "Quota Exhausted",
            Some((err.code(), err.to_string())),
        ),
        // A traffic limit answers as the gateway's own flow control does: 403, with
        // when to retry.
        SendError::RateLimited { .. } => {
            let mut response = gateway_error(
                StatusCode::FORBIDDEN,
                "Throttled by USER Flow Control",
                Some((err.code(), err.to_string())),
            );
            if let Some(wait) = err.retry_after() {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
            }
            response
        }
        SendError::Unavailable(_) | SendError::Busy | SendError::TooManyInFlight { .. } => {
            let mut response = gateway_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                Some(("unavailable", err.to_string())),
            );
            if let Some(wait) = err.retry_after() {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
            }
            response
        }
        other => gateway_error(
            StatusCode::BAD_REQUEST,
            "Invalid Param",
            Some((other.code(), other.to_string())),
        ),
    }
}

/// An answer shaped like the vendor gateway's own errors, with tollgate's code and
/// reason alongside for people reading logs.
fn gateway_error(status: StatusCode, message: &str, detail: Option<(&str, String)>) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header("X-Ca-Error-Message", message)
        .header(
            "X-Ca-Request-Id",
            uuid::Uuid::new_v4().to_string().to_uppercase(),
        )
        .header("Content-Type", "application/json; charset=utf-8");
    let body = match detail {
        Some((code, reason)) => {
            builder = builder.header("X-Tollgate-Error-Code", code);
            json!({ "ReturnStatus": "Faild", "Message": reason })
        }
        None => json!({ "message": message }),
    };
    builder
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// The vendor's answer as it came, plus the send's id.
fn mirror(outcome: &SendOutcome) -> Response {
    let record = &outcome.record;
    let raw = outcome.vendor.as_ref().and_then(|reply| reply.raw.as_ref());
    let mut response = match raw {
        Some(raw) => {
            let mut builder = Response::builder().status(raw.status);
            for (name, value) in &raw.headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::from_str(value),
                ) {
                    builder = builder.header(name, value);
                }
            }
            builder
                .body(Body::from(raw.body.clone()))
                .expect("a valid response")
        }
        // No answer to mirror: the vendor timed out, or could not be reached.
        None if record.status == SendStatus::Settled(Outcome::Uncertain) => {
            gateway_error(StatusCode::GATEWAY_TIMEOUT, "Async Service", None)
        }
        None => gateway_error(
            StatusCode::BAD_GATEWAY,
            "Failed To Invoke Backend Service",
            None,
        ),
    };
    if let Ok(id) = HeaderValue::from_str(&record.id) {
        response.headers_mut().insert("X-Tollgate-Id", id);
    }
    response
}
