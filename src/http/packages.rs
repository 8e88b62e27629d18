//! `POST /v1/packages`, `GET /v1/packages` and `POST /v1/reconciliations` (admin only).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiError;
use super::json::ApiJson;
use super::AppState;
use crate::domain::ChannelName;
use crate::ledger::{LedgerError, NewPackage, NewPackageError, Package, PackageInput};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageBody {
    pub channel: String,
    pub units: serde_json::Value,
    /// An exact decimal: a string (`"45.00"`) is exact always. A plain JSON number is
    /// parsed as a double and printed back in its shortest form, which gives back the
    /// digits as written for any price of up to 15 significant digits; longer ones must
    /// be strings.
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
    ApiJson(body): ApiJson<PackageBody>,
) -> Result<Response, ApiError> {
    let channel = state.channel(&body.channel)?;
    let units = json_text(&body.units);
    let price = json_text(&body.price);
    let input = PackageInput {
        units: &units,
        price: &price,
        purchased_at: body.purchased_at.as_deref(),
        expires_at: body.expires_at.as_deref(),
        vendor_order_id: body.vendor_order_id,
        note: body.note,
    };
    let (package, created) =
        state
            .register_package(channel, input)
            .await
            .map_err(|err| match err {
                RegisterPackageError::Invalid(invalid) => {
                    ApiError::invalid_request(invalid.to_string())
                }
                RegisterPackageError::Ledger(ledger) => ApiError::from(ledger),
            })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(package)).into_response())
}

/// Why a purchase was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterPackageError {
    /// The purchase as written is not valid (units, price, dates, order id, note).
    #[error(transparent)]
    Invalid(#[from] NewPackageError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl AppState {
    /// Registers a purchase written as text and, when it is new, re-evaluates the
    /// channel's alerts: the one sequence behind `POST /v1/packages` and the console's
    /// form, so both validate alike and a repeated order id is a no-op in both. Returns
    /// the package and whether it was newly created.
    pub async fn register_package(
        &self,
        channel: ChannelName,
        input: PackageInput<'_>,
    ) -> Result<(Package, bool), RegisterPackageError> {
        let new = NewPackage::from_input(channel.clone(), input, self.settings.server.timezone)?;
        let (package, created) = self.sends.ledger().register_package(new).await?;
        if created {
            // A new package may end a low-quota alert: resolve it now, not at the next check.
            if let Err(err) = self.alerts.evaluate_channel(&channel).await {
                tracing::error!(channel = %channel, error = format!("{err:#}"), "alert evaluation after a new package failed");
            }
        }
        Ok((package, created))
    }
}

pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_request(e.body_text()))?;
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
    ApiJson(body): ApiJson<ReconcileBody>,
) -> Result<Response, ApiError> {
    let channel: ChannelName = state.channel(&body.channel)?;
    if i64::try_from(body.remaining).is_err() {
        return Err(ApiError::invalid_request("remaining is too large"));
    }
    let record = state
        .sends
        .ledger()
        .reconcile(&channel, body.remaining, body.note)
        .await?;
    // A reconciliation may empty the channel or lift it: its alerts change now, not at
    // the next check (as after a new package).
    if let Err(err) = state.alerts.evaluate_channel(&channel).await {
        tracing::error!(channel = %channel, error = format!("{err:#}"), "alert evaluation after a reconciliation failed");
    }
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// A JSON string as its text, anything else (a number) in its shortest form, which is
/// the number as written for up to 15 significant digits.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
