//! A JSON body extractor whose every rejection is an [`ApiError`] with a spec code.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest request body accepted; a send is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Like `axum::Json`, but a body that is too large answers 413 `payload_too_large`
/// and a malformed one 400 `invalid_request` naming the problem, in the API's format.
pub struct ApiJson<T>(pub T, pub Bytes);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
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
        Ok(ApiJson(value, bytes))
    }
}
