//! `GET /v1/reports/monthly?month=YYYY-MM&format=json|csv|html` (admin only: the report
//! shows every client's usage and cost).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use crate::report::{to_csv, to_html, Month, MonthlyReport, ReportContext};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthlyQuery {
    /// YYYY-MM in the configured time zone; last month when absent.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$", example = "2026-11")]
    pub month: Option<String>,
    /// `json` (default), `csv` or `html`.
    #[param(pattern = "^(json|csv|html)$")]
    pub format: Option<String>,
}

crate::refusals!(
    /// What a report request can answer instead.
    MonthlyRefusals {
        400 => ["invalid_request"],
        401 => ["unauthorized"],
        403 => ["forbidden"],
        503 => ["unavailable"],
    }
);

/// A month's cost report
///
/// Admin clients only: the report shows every client's usage and cost. Month boundaries
/// are in `[server] timezone`.
#[utoipa::path(
    get,
    path = "/v1/reports/monthly",
    operation_id = "monthly_report",
    tag = "reports",
    params(MonthlyQuery),
    responses(
        (status = 200, description = "The report: JSON (`format=json`, the default), CSV (`format=csv`) or the email's HTML (`format=html`)",
            content(
                (MonthlyReport = "application/json"),
                (String = "text/csv"),
                (String = "text/html"),
            )),
        MonthlyRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn monthly(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<MonthlyQuery>,
) -> Result<Response, ApiError> {
    let timezone = state.settings.server.timezone;
    let now = Utc::now();
    let month = match query.month.as_deref() {
        Some(raw) => Month::parse(raw).map_err(|err| ApiError::invalid_request(err.to_string()))?,
        None => Month::containing(now, timezone).previous(),
    };
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "html") {
        return Err(ApiError::invalid_request(format!(
            "format must be json, csv or html, not {:?}",
            format.chars().take(20).collect::<String>()
        )));
    }
    let report = MonthlyReport::build(state.sends.ledger(), month, now)
        .await
        .map_err(|err| ApiError::unavailable(&err))?;
    let filename = format!("attachment; filename=\"tollgate-report-{month}.csv\"");
    Ok(match format {
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, filename),
            ],
            to_csv(&report),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            to_html(
                &report,
                &ReportContext::from_channels(&state.settings.channels),
            ),
        )
            .into_response(),
        _ => Json(report).into_response(),
    })
}
