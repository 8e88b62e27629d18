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
use crate::ledger::{
    LedgerError, NewPackage, NewPackageError, Package, PackageInput, Reconciliation,
};

/// A purchase to register (SPEC §4).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "sms_code", "units": 1000, "price": "45.00", "expires_at": "2027-11-28", "order_id": "2026112800001"}))]
pub struct PackageBody {
    /// A configured channel's name.
    pub channel: String,
    /// Units bought: a positive whole number (or its digits as a string).
    #[schema(schema_with = integer_or_string)]
    pub units: serde_json::Value,
    /// An exact decimal: a string (`"45.00"`) is exact always. A plain JSON number is
    /// parsed as a double and printed back in its shortest form, which gives back the
    /// digits as written for any price of up to 15 significant digits; longer ones must
    /// be strings.
    #[schema(schema_with = number_or_string)]
    pub price: serde_json::Value,
    /// RFC 3339, or a date (midnight in `[server] timezone`); now when absent.
    pub purchased_at: Option<String>,
    /// RFC 3339, or a date; the package never expires when absent.
    pub expires_at: Option<String>,
    /// The vendor's order id. Registering the same order again changes nothing and
    /// answers the first record (200 instead of 201).
    pub order_id: Option<String>,
    pub note: Option<String>,
}

/// `GET /v1/packages?channel=…`
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this channel's packages.
    pub channel: Option<String>,
}

/// Every registered package (`GET /v1/packages`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PackageList {
    pub packages: Vec<Package>,
}

/// The vendor console's count of what is left, to bring the ledger in line with it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "sms_code", "remaining": 812, "note": "console 2026-12-01"}))]
pub struct ReconcileBody {
    pub channel: String,
    /// Units the vendor's console shows as left.
    pub remaining: u64,
    pub note: Option<String>,
}

fn integer_or_string() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+$")),
        )
        .into()
}

fn number_or_string() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]+(\.[0-9]{1,6})?$")),
        )
        .into()
}

crate::refusals!(
    /// What registering a package can answer instead.
    RegisterRefusals {
        400 => ["invalid_request", "unknown_channel"],
        401 => ["unauthorized"],
        403 => ["forbidden"],
        408 => ["request_timeout"],
        413 => ["payload_too_large"],
        415 => ["unsupported_media_type"],
        503 => ["unavailable"],
    }
);

crate::refusals!(
    /// What listing packages can answer instead.
    ListRefusals {
        400 => ["invalid_request", "unknown_channel"],
        401 => ["unauthorized"],
        403 => ["forbidden"],
        503 => ["unavailable"],
    }
);

crate::refusals!(
    /// What a reconciliation can answer instead.
    ReconcileRefusals {
        400 => ["invalid_request", "unknown_channel"],
        401 => ["unauthorized"],
        403 => ["forbidden"],
        408 => ["request_timeout"],
        413 => ["payload_too_large"],
        415 => ["unsupported_media_type"],
        503 => ["unavailable"],
    }
);

/// Register a purchased package
///
/// Admin clients only. The same `order_id` twice registers one package.
#[utoipa::path(
    post,
    path = "/v1/packages",
    operation_id = "register_package",
    tag = "packages",
    request_body = PackageBody,
    responses(
        (status = 201, description = "Registered", body = Package),
        (status = 200, description = "This `order_id` was registered before: the first record, unchanged", body = Package),
        RegisterRefusals,
    ),
    security(("bearer" = [])),
)]
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
        order_id: body.order_id,
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

/// Every registered package
///
/// Admin clients only; with what is left of each.
#[utoipa::path(
    get,
    path = "/v1/packages",
    operation_id = "list_packages",
    tag = "packages",
    params(ListQuery),
    responses((status = 200, description = "The packages", body = PackageList), ListRefusals),
    security(("bearer" = [])),
)]
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
    Ok(Json(PackageList { packages }).into_response())
}

/// Record the vendor console's remaining count
///
/// Admin clients only. The difference is applied as an adjustment entry: history is
/// appended to, never rewritten.
#[utoipa::path(
    post,
    path = "/v1/reconciliations",
    operation_id = "reconcile",
    tag = "packages",
    request_body = ReconcileBody,
    responses((status = 201, description = "Recorded and applied", body = Reconciliation), ReconcileRefusals),
    security(("bearer" = [])),
)]
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
