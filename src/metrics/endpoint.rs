//! `GET /metrics`: the Prometheus text format, or 503 when the ledger cannot be read.

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{MetricsExporter, ScrapeAccess};
use crate::http::error::ApiError;
use crate::http::AppState;

/// Prometheus metrics
///
/// The series of SPEC §9 in Prometheus' text format. With `[metrics] token_env` set,
/// scrapes present that token as `Authorization: Bearer <token>`.
///
/// A scrape is all or nothing: when the database cannot be read the answer is 503 (and
/// Prometheus records `up == 0`), never a half set of series that dashboards would read
/// as quota having vanished. Who may scrape and how many at once is [`ScrapeAccess`]'s
/// to say.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`[metrics] token_env` is set and the scrape did not present its token: `unauthorized`", body = crate::http::error::ErrorBody),
        (status = 503, description = "Another scrape is running (`unavailable`, with `Retry-After`), or the ledger cannot be read (plain text)"),
    ),
    security((), ("bearer" = [])),
)]
pub async fn serve_metrics(
    State(exporter): State<MetricsExporter>,
    State(access): State<ScrapeAccess>,
    headers: HeaderMap,
) -> Response {
    if !access.authorized(&headers) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "scraping needs the metrics token ([metrics] token_env) as Authorization: Bearer <token>",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let Some(_turn) = access.turn().await else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "another scrape is still running; scrapes run one at a time so that they never take the send path's database connections",
        )
        .retry_after(std::time::Duration::from_secs(1))
        .into_response();
    };
    match exporter.render().await {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "a metrics scrape failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "metrics unavailable: the ledger cannot be read\n",
            )
                .into_response()
        }
    }
}

impl FromRef<AppState> for MetricsExporter {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for ScrapeAccess {
    fn from_ref(state: &AppState) -> Self {
        state.scrapes.clone()
    }
}
