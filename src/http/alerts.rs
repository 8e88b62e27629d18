//! `GET /v1/alerts` (any client) and `POST /v1/alerts/{id}/ack` (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::AppState;
use crate::alerts::AckOutcome;

/// Every alert state: one per (rule, channel) evaluated so far.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let alerts = state
        .alerts
        .list()
        .await
        .map_err(|err| ApiError::unavailable(&err))?;
    Ok(Json(serde_json::json!({ "alerts": alerts })).into_response())
}

/// Acknowledges a firing alert: it stops repeating until its state changes.
pub async fn acknowledge(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let outcome = state
        .alerts
        .acknowledge(&id, &caller.name)
        .await
        .map_err(|err| ApiError::unavailable(&err))?;
    match outcome {
        AckOutcome::Acknowledged(alert) => Ok(Json(alert).into_response()),
        AckOutcome::NotFiring(alert) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "alert_not_firing",
            format!(
                "alert {} ({} on {}) is {}; only a firing alert can be acknowledged",
                alert.id,
                alert.rule,
                alert.channel,
                alert.state.as_str()
            ),
        )),
        AckOutcome::NotFound => Err(ApiError::not_found(format!(
            "no alert has the id {:?}",
            id.chars().take(64).collect::<String>()
        ))),
    }
}
