//! `GET /v1/quota` and `GET /v1/quota/{channel}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;

pub async fn all(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let mut views = Vec::with_capacity(state.settings.channels.len());
    for channel in &state.settings.channels {
        views.push(state.sends.ledger().quota(&channel.name).await?);
    }
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
