//! The HTTP edge: the JSON API, the drop-in proxy paths, health and readiness (and the
//! console's pages, which `crate::console` defines and this router mounts).
//!
//! Handlers parse requests into domain types and hand them to the send service or the
//! ledger; they never write SQL and never call the vendor themselves.

mod alerts;
pub mod auth;
pub mod error;
mod health;
pub mod json;
mod messages;
mod packages;
mod proxy;
mod quota;
mod reports;
pub mod request_timeout;
pub mod serve;

pub use packages::RegisterPackageError;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::Router;

use crate::config::Settings;
use crate::domain::ChannelName;
use crate::send::SendService;
use auth::Clients;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub sends: SendService,
    pub clients: Clients,
    pub metrics: crate::metrics::MetricsExporter,
    /// Who may scrape `/metrics`, one scrape at a time.
    pub scrapes: crate::metrics::ScrapeAccess,
    pub alerts: crate::alerts::AlertEngine,
    /// Signs the console's session cookies and form tokens.
    pub console: crate::console::SessionKey,
}

impl AppState {
    /// A configured channel by name, or 400 `unknown_channel`.
    pub fn channel(&self, name: &str) -> Result<ChannelName, ApiError> {
        self.settings
            .channel(name)
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "unknown_channel",
                    format!(
                        "unknown channel {:?}",
                        name.chars().take(64).collect::<String>()
                    ),
                )
            })
    }
}

/// The whole HTTP surface. Public so that tests can drive it without a socket.
///
/// Every route is held to `server.request_timeout`; the sends (`POST /v1/messages`
/// and the drop-in proxy paths) by a variant that never cuts a send
/// ([`request_timeout`]).
pub fn router(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    let timeout = request_timeout::RequestTimeout(state.settings.server.limits.request_timeout);
    let mut sends = Router::new().route("/v1/messages", post(messages::send));
    for channel in &state.settings.channels {
        let Some(path) = &channel.proxy_path else {
            continue;
        };
        let name = channel.name.to_string();
        sends = sends.route(
            path,
            any(move |state: State<AppState>, request: Request| {
                let name = name.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let query = axum::extract::Query::try_from_uri(&parts.uri)
                        .unwrap_or_else(|_| axum::extract::Query(Default::default()));
                    let body = match axum::body::to_bytes(body, json::MAX_BODY_BYTES).await {
                        Ok(bytes) => bytes,
                        Err(_) => {
                            return ApiError::new(
                                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                                "payload_too_large",
                                "the request body is too large",
                            )
                            .into_response()
                        }
                    };
                    proxy::handle(state, name, parts, query, body).await
                }
            }),
        );
    }
    let sends = sends.route_layer(from_fn_with_state(timeout, request_timeout::limit_send));
    Router::new()
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/quota", get(quota::all))
        .route("/v1/quota/{channel}", get(quota::one))
        .route("/v1/packages", post(packages::register).get(packages::list))
        .route("/v1/reconciliations", post(packages::reconcile))
        .route("/v1/reports/monthly", get(reports::monthly))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::metrics::serve_metrics))
        .merge(crate::console::routes())
        .route_layer(from_fn_with_state(timeout, request_timeout::limit_request))
        .merge(sends)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .with_state(state)
}
