//! The console's routes, mounted by `http::router`, and the headers every console
//! answer carries.

use axum::http::header::{self, HeaderValue};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::error::ConsoleError;
use super::pages;
use crate::http::AppState;

/// `GET /console` and everything under it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::channels::show))
        .route(
            "/console/sign-in",
            get(pages::sign_in::form).post(pages::sign_in::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_in::sign_out))
        .route("/console/alerts", get(pages::alerts::show))
        .route("/console/alerts/{id}/ack", post(pages::alerts::acknowledge))
        .route(
            "/console/packages",
            get(pages::packages::show).post(pages::packages::register),
        )
        .route("/console/reports", get(pages::reports::show))
        .route("/console/reports/download", get(pages::reports::download))
        .route("/console/usage", get(pages::usage::show))
        .route("/console/{*rest}", get(|| async { ConsoleError::NotFound }))
        .route_layer(middleware::map_response(protect))
}

/// The pages run no script and load nothing from elsewhere: the policy says so, so that
/// even a value that slipped past escaping could not run. They are not framed (an
/// acknowledgement button under another site's overlay), not cached (they show one
/// session's figures), and not sniffed into another type.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
