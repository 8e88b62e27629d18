//! `GET /v1/quota` and `GET /v1/quota/{channel}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;

pub async fn all(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let channels: Vec<_> = state
        .settings
        .channels
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let views = state.sends.ledger().quotas(&channels).await?;
    Ok(Json(serde_json::json!({ "channels": views })).into_response())
}

pub async fn one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let channel = state.channel(&channel)?;
    Ok(Json(state.sends.ledger().quota(&channel).await?).into_response())
}
