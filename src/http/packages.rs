//! `POST /v1/packages`, `GET /v1/packages` and `POST /v1/reconciliations` (admin only).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiError;
use super::json::ApiJson;
use super::AppState;
use crate::domain::instant::parse_instant;
use crate::domain::{ChannelName, PackageUnits, Yuan};
use crate::ledger::NewPackage;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageBody {
    pub channel: String,
    pub units: serde_json::Value,
    /// An exact decimal: a string (`"45.00"`) is safest; a plain JSON number is read
    /// from its written digits, never through a float.
    pub price: serde_json::Value,
    pub purchased_at: Option<String>,
    pub expires_at: Option<String>,
    pub vendor_order_id: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub channel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBody {
    pub channel: String,
    pub remaining: u64,
    pub note: Option<String>,
}

pub async fn register(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body, _): ApiJson<PackageBody>,
) -> Result<Response, ApiError> {
    let channel = state.channel(&body.channel)?;
    let units = match &body.units {
        serde_json::Value::Number(n) => n.as_i64().ok_or(()),
        _ => Err(()),
    }
    .and_then(|n| PackageUnits::new(n).map_err(|_| ()))
    .map_err(|()| {
        ApiError::invalid_request(format!(
            "units must be a positive whole number, not {}",
            body.units
        ))
    })?;
    let price = match &body.price {
        serde_json::Value::String(text) => Yuan::parse(text),
        serde_json::Value::Number(number) => Yuan::parse(&number.to_string()),
        other => Yuan::parse(&other.to_string()),
    }
    .map_err(|e| ApiError::invalid_request(format!("price: {e}")))?;
    let timezone = state.settings.server.timezone;
    let purchased_at = match &body.purchased_at {
        Some(raw) => parse_instant(raw, timezone)
            .map_err(|e| ApiError::invalid_request(format!("purchased_at: {e}")))?,
        None => Utc::now(),
    };
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|raw| parse_instant(raw, timezone))
        .transpose()
        .map_err(|e| ApiError::invalid_request(format!("expires_at: {e}")))?;
    let new = NewPackage::new(
        channel,
        units,
        price,
        purchased_at,
        expires_at,
        body.vendor_order_id,
        body.note,
    )
    .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let (package, created) = state.sends.ledger().register_package(new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(package)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let channel = query
        .channel
        .as_deref()
        .map(|c| state.channel(c))
        .transpose()?;
    let packages = state.sends.ledger().list_packages(channel.as_ref()).await?;
    Ok(Json(serde_json::json!({ "packages": packages })).into_response())
}

pub async fn reconcile(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body, _): ApiJson<ReconcileBody>,
) -> Result<Response, ApiError> {
    let channel: ChannelName = state.channel(&body.channel)?;
    let record = state
        .sends
        .ledger()
        .reconcile(&channel, body.remaining, body.note)
        .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}
