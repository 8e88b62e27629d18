//! A JSON body extractor whose every rejection is an [`ApiError`] with a spec code.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest request body accepted; a send is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads the request's whole body (up to [`MAX_BODY_BYTES`]) before the route answers.
///
/// A request refused before its body is read (no token, not an admin, not JSON) would
/// otherwise be answered while the client is still writing the body, and the connection
/// closed under it: the client then sees a broken pipe instead of its 401, 403 or 415.
/// A body over the limit is read on and thrown away up to [`DRAINED_AT_MOST`], so that
/// its 413 reaches the client too; past that the connection is closed. Runs inside the
/// request timeout, so a slow body is bounded as the rest of the request is.
pub async fn read_whole_body(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let (parts, mut body) = request.into_parts();
    let mut kept = Vec::new();
    let mut seen = 0_usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return ApiError::invalid_request("the request body could not be read").into_response();
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len();
        if seen <= MAX_BODY_BYTES {
            kept.extend_from_slice(&data);
        } else if seen > DRAINED_AT_MOST {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(kept)))
        .await
}

/// How much of a body over the limit is read (and thrown away) so that its 413 can be
/// delivered.
const DRAINED_AT_MOST: usize = 4 * 1024 * 1024;

/// Like `axum::Json`, but a body that is not declared `application/json` answers 415
/// `unsupported_media_type`, one that is too large 413 `payload_too_large` and a
/// malformed one 400 `invalid_request` naming the problem, in the API's format.
///
/// The media type is checked before the body is read: a form or a text body that
/// happens to parse as JSON is still refused, so that a client sending the wrong type
/// finds out on its first request rather than when its content changes.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        declared_json(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    ApiError::invalid_request(format!("cannot read the request body: {rejection}"))
                }
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|err| {
            // serde quotes the offending value, which may be a mobile number.
            let problem = crate::domain::mobile::mask_mobile_numbers(&err.to_string());
            ApiError::invalid_request(format!(
                "the body is not valid JSON for this endpoint: {problem}"
            ))
        })?;
        Ok(ApiJson(value))
    }
}

/// Whether the request says its body is JSON: `application/json`, with no parameter
/// or a `charset` of UTF-8 (RFC 8259 allows no other).
fn declared_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let Some(declared) = declared else {
        return Err(unsupported("no Content-Type"));
    };
    let mut parts = declared.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        let shown: String = essence
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Err(unsupported(&format!("Content-Type {shown}")));
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return Err(unsupported("a charset other than UTF-8"));
        }
    }
    Ok(())
}

fn unsupported(given: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the body must be JSON sent with Content-Type: application/json (the request has {given})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn json_with_or_without_a_utf8_charset_is_accepted() {
        for value in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=\"UTF-8\"",
        ] {
            assert!(declared_json(&with_type(Some(value))).is_ok(), "{value}");
        }
    }

    #[test]
    fn anything_else_is_an_unsupported_media_type() {
        for value in [
            None,
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/json; charset=latin1"),
            Some("application/jsonp"),
        ] {
            let err = declared_json(&with_type(value)).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
                "{value:?}"
            );
        }
    }
}
