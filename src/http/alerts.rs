//! `GET /v1/alerts` (any client) and `POST /v1/alerts/{id}/ack` (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::AppState;
use crate::alerts::{AckOutcome, AlertRecord};

/// Every alert state (`GET /v1/alerts`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertRecord>,
}

crate::refusals!(
    /// What listing the alerts can answer instead.
    ListRefusals {
        401 => ["unauthorized"],
        503 => ["unavailable"],
    }
);

crate::refusals!(
    /// What an acknowledgement can answer instead.
    AckRefusals {
        401 => ["unauthorized"],
        403 => ["forbidden"],
        404 => ["not_found"],
        409 => ["alert_not_firing"],
        503 => ["unavailable"],
    }
);

/// Every alert state
///
/// One per (rule, channel) evaluated so far: `ok`, `firing` or `resolved`.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    operation_id = "list_alerts",
    tag = "alerts",
    responses((status = 200, description = "Every alert state", body = AlertList), ListRefusals),
    security(("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let alerts = state
        .alerts
        .list()
        .await
        .map_err(|err| ApiError::unavailable(&err))?;
    Ok(Json(AlertList { alerts }).into_response())
}

/// Acknowledge a firing alert
///
/// It stops repeating until its state changes (admin clients).
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/ack",
    operation_id = "acknowledge_alert",
    tag = "alerts",
    params(("id" = String, Path, description = "The alert's `id` from `GET /v1/alerts`")),
    responses((status = 200, description = "The acknowledged alert", body = AlertRecord), AckRefusals),
    security(("bearer" = [])),
)]
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
