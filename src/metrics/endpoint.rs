//! `GET /metrics`: the Prometheus text format, or 503 when the ledger cannot be read.

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::MetricsExporter;
use crate::http::AppState;

/// Answers a scrape. A scrape is all or nothing: when the database cannot be read the
/// answer is 503 (and Prometheus records `up == 0`), never a half set of series that
/// dashboards would read as quota having vanished.
pub async fn serve_metrics(State(exporter): State<MetricsExporter>) -> Response {
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
