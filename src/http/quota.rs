//! `GET /v1/quota` and `GET /v1/quota/{channel}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;
use crate::ledger::QuotaView;

/// Every channel's quota (`GET /v1/quota`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct QuotaList {
    pub channels: Vec<QuotaView>,
}

crate::refusals!(
    /// What reading every channel's quota can answer instead.
    AllRefusals {
        401 => ["unauthorized"],
        503 => ["unavailable"],
    }
);

crate::refusals!(
    /// What reading one channel's quota can answer instead.
    OneRefusals {
        400 => ["unknown_channel"],
        401 => ["unauthorized"],
        503 => ["unavailable"],
    }
);

/// Every channel's quota
#[utoipa::path(
    get,
    path = "/v1/quota",
    operation_id = "list_quota",
    tag = "quota",
    responses((status = 200, description = "One view per configured channel", body = QuotaList), AllRefusals),
    security(("bearer" = [])),
)]
pub async fn all(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let channels: Vec<_> = state
        .settings
        .channels
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let channels = state.sends.ledger().quotas(&channels).await?;
    Ok(Json(QuotaList { channels }).into_response())
}

/// One channel's quota
///
/// `remaining = purchased − used − reserved − expired + reconciled` over the channel's
/// whole history; `remaining_ratio` is `remaining / pool_units` (SPEC §4).
#[utoipa::path(
    get,
    path = "/v1/quota/{channel}",
    operation_id = "get_quota",
    tag = "quota",
    params(("channel" = String, Path, description = "A configured channel's name")),
    responses((status = 200, description = "The channel's quota", body = QuotaView), OneRefusals),
    security(("bearer" = [])),
)]
pub async fn one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let channel = state.channel(&channel)?;
    Ok(Json(state.sends.ledger().quota(&channel).await?).into_response())
}
