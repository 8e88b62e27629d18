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
pub mod openapi;
mod packages;
mod proxy;
mod quota;
mod reports;
pub mod request_timeout;
mod send_answer;
pub mod serve;

pub use packages::RegisterPackageError;
pub use send_answer::{MessageRecord, QuotaLeft, SendAnswer, UpstreamAnswer};

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter};
use axum::{Extension, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Routes the router serves that the OpenAPI document leaves out, with the reason.
/// Everything else it serves is described, by construction: every other route is added
/// with its handler's `#[utoipa::path]` annotation (`routes!`), and the drop-in paths
/// with the proxy's.
pub const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[(
    "/console",
    "the web console: HTML pages for people, signed in with a session cookie, whose forms \
     carry CSRF tokens; not part of the API of SPEC §5",
)];

/// The whole HTTP surface. Public so that tests can drive it without a socket.
///
/// Every route is held to `server.request_timeout`; the sends (`POST /v1/messages`
/// and the drop-in proxy paths) by a variant that never cuts a send
/// ([`request_timeout`]). `GET /openapi.json` describes every route but the console's.
pub fn router(state: AppState) -> Router {
    let (router, document) = described_routes(&state).split_for_parts();
    router
        .layer(Extension(openapi::finish(&document)))
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

/// Every route with its description, the router and the document built together.
fn described_routes(state: &AppState) -> OpenApiRouter<AppState> {
    use axum::middleware::from_fn_with_state;
    let timeout = request_timeout::RequestTimeout(state.settings.server.limits.request_timeout);
    let mut sends = OpenApiRouter::default().routes(routes!(messages::send));
    // The drop-in paths of channels and of routes (SPEC §13): a route's takes the
    // same request and fails over between its channels.
    let channels = state
        .settings
        .channels
        .iter()
        .filter_map(|c| Some((c.proxy_path.as_ref()?, c.name.as_str(), "channel")));
    let routes = state
        .settings
        .routes
        .iter()
        .filter_map(|r| Some((r.proxy_path.as_ref()?, r.name.as_str(), "route")));
    for (path, target, what) in channels.chain(routes) {
        sends = sends.route(path, proxy_route(target.to_owned()));
        let template = <proxy::__path_handle as utoipa::Path>::operation();
        openapi::describe_proxy_path(sends.get_openapi_mut(), path, what, target, template);
    }
    let sends = sends
        .route_layer(axum::middleware::from_fn(json::read_whole_body))
        .route_layer(from_fn_with_state(timeout, request_timeout::limit_send));
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(messages::get))
        .routes(routes!(quota::all))
        .routes(routes!(quota::one))
        .routes(routes!(packages::register, packages::list))
        .routes(routes!(packages::reconcile))
        .routes(routes!(reports::monthly))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(crate::metrics::serve_metrics))
        .routes(routes!(openapi::serve_document))
        .merge(OpenApiRouter::from(crate::console::routes()))
        .route_layer(axum::middleware::from_fn(json::read_whole_body))
        .route_layer(from_fn_with_state(timeout, request_timeout::limit_request))
        .merge(sends)
}

/// A drop-in path: the vendor takes `GET` and `POST`, and so does tollgate.
fn proxy_route(channel: String) -> axum::routing::MethodRouter<AppState> {
    on(
        MethodFilter::GET.or(MethodFilter::POST),
        move |state: State<AppState>, request: Request| {
            let channel = channel.clone();
            async move {
                let (parts, body) = request.into_parts();
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
                proxy::handle(state, channel, parts, body).await
            }
        },
    )
}
