//! The drop-in proxy: a channel's `proxy_path` served in the vendor's own format.
//!
//! An application written against the vendor (such as the Java sample in its manual)
//! keeps its code and changes only the host; it sends its tollgate token where the
//! AppCode was (`Authorization: APPCODE <token>`). The answer mirrors the vendor's:
//! its status, its `X-Ca-*` headers and its body. Refusals are given as the vendor's
//! gateway gives them, so the application's existing error handling still applies:
//! an unknown token is the gateway's invalid-AppCode answer, and no local quota is
//! `403 Quota Exhausted`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::auth::token_from_header;
use super::AppState;
use crate::domain::Outcome;
use crate::ledger::SendStatus;
use crate::send::{MessageSource, Origin, SendError, SendOutcome, SendRequest};
use crate::upstream::format::decode_form;

/// Send in the vendor's own format
///
/// `content` and `mobile` in the query (the vendor's samples) or in a form body, and
/// the client's tollgate token where the AppCode was. The answer is the vendor's,
/// mirrored (status, `X-Ca-*` headers, body), with the send's id in `X-Tollgate-Id`;
/// tollgate's own refusals are shaped like the vendor gateway's, with
/// `X-Ca-Error-Message` and tollgate's code in `X-Tollgate-Error-Code`.
#[utoipa::path(
    get,
    post,
    path = "/{proxy_path}",
    params(
        ("content" = Option<String>, Query, description = "The message text (or the form body's field)"),
        ("mobile" = Option<String>, Query, description = "The mobile number (or the form body's field)"),
    ),
    request_body(content = inline(ProxyForm), content_type = "application/x-www-form-urlencoded",
        description = "The same fields as a form, where the query has none"),
    responses(
        (status = 200, description = "The vendor's answer, mirrored", content_type = "application/json",
            headers(("X-Tollgate-Id" = String, description = "The send's id"),
                    ("X-Ca-Request-Id" = String, description = "The vendor's request id"))),
        (status = 400, description = "`Invalid AppCode` (no client has the token) or `Invalid Param` (tollgate refused the request: `X-Tollgate-Error-Code` says why, e.g. `invalid_mobile`), or the vendor's own 400, mirrored",
            headers(("X-Ca-Error-Message" = String), ("X-Tollgate-Error-Code" = String))),
        (status = 403, description = "`Quota Exhausted`: no local quota (`X-Tollgate-Error-Code: quota_exhausted` or `quota_reserved`), or the vendor's own 403, mirrored",
            headers(("X-Ca-Error-Message" = String), ("X-Tollgate-Error-Code" = String))),
        (status = 413, description = "The body is larger than 64 KiB (`payload_too_large`)"),
        (status = 429, description = "A traffic limit (`X-Tollgate-Error-Code: rate_limited`, with `Retry-After`), or the vendor's throttling, mirrored",
            headers(("X-Ca-Error-Message" = String), ("X-Tollgate-Error-Code" = String), ("Retry-After" = u64))),
        (status = 502, description = "`Failed To Invoke Backend Service`: the vendor could not be reached, or refused tollgate's AppCode (`X-Tollgate-Error-Code: upstream_auth_failed`)",
            headers(("X-Ca-Error-Message" = String), ("X-Tollgate-Error-Code" = String))),
        (status = 503, description = "`Service Unavailable`: database unreachable, ledger busy or too many sends under way (`X-Tollgate-Error-Code: unavailable`, with `Retry-After`)",
            headers(("X-Ca-Error-Message" = String), ("X-Tollgate-Error-Code" = String), ("Retry-After" = u64))),
        (status = 504, description = "`Async Service`: the vendor did not answer in time; the send is charged and flagged for reconciliation",
            headers(("X-Ca-Error-Message" = String))),
        (status = "default", description = "Any other answer of the vendor, mirrored"),
    ),
    security(("appcode" = [])),
)]
pub async fn handle(
    State(state): State<AppState>,
    channel: String,
    parts: Parts,
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
    // The vendor's samples put content and mobile in the query; a form body is accepted
    // too, for the fields the query does not have.
    let mut fields = decode_form(parts.uri.query().unwrap_or_default().as_bytes());
    fields.extend(decode_form(&body));
    let mut field = |name: &str| {
        fields
            .iter()
            .position(|(key, _)| key == name)
            .map(|at| fields.swap_remove(at).1)
            .unwrap_or_default()
    };
    let request = SendRequest {
        channel,
        to: field("mobile"),
        message: MessageSource::Content(field("content")),
        client: caller.name,
        idempotency: None,
        origin: Origin::Proxy,
    };
    match state.sends.send(request).await {
        Ok(outcome) => mirror(&outcome),
        Err(err) => refusal(err),
    }
}

/// The fields of a drop-in request, as the vendor takes them.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Described, never built: the fields are read by name.
struct ProxyForm {
    content: Option<String>,
    mobile: Option<String>,
}

fn refusal(err: SendError) -> Response {
    match err.innermost() {
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
        SendError::Unavailable(_)
        | SendError::Busy
        | SendError::TooManyInFlight { .. }
        | SendError::RouteUnavailable { .. } => {
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
        _ => gateway_error(
            StatusCode::BAD_REQUEST,
            "Invalid Param",
            Some((err.code(), err.to_string())),
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

/// The vendor's answer as it came, plus the send's id; but not the vendor's refusal of
/// tollgate's own AppCode, which the client would read as a refusal of its token.
fn mirror(outcome: &SendOutcome) -> Response {
    let record = &outcome.record;
    let raw = outcome.vendor.as_ref().and_then(|reply| reply.raw.as_ref());
    let mut response = match raw {
        // The vendor refused tollgate's AppCode: the client's token was right, so this is
        // tollgate's backend failing, as the gateway says when a backend cannot be used.
        Some(_) if record.status == SendStatus::Settled(Outcome::AuthFailed) => gateway_error(
            StatusCode::BAD_GATEWAY,
            "Failed To Invoke Backend Service",
            Some((
                "upstream_auth_failed",
                "the vendor refused tollgate's AppCode; nothing was charged".to_owned(),
            )),
        ),
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
    if !outcome.recorded {
        // The vendor's answer stands; the ledger records it once the database is back.
        response
            .headers_mut()
            .insert("X-Tollgate-Recorded", HeaderValue::from_static("false"));
    }
    response
}
