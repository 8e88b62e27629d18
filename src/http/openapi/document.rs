//! The document's frame (title, security schemes, shared schemas), the drop-in paths
//! added per configured channel, and the handler that serves the finished document.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::Modify;

use crate::http::error::ErrorBody;

/// The frame every generated document starts from; the routes add their paths to it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tollgate",
        description = "A metering gateway for prepaid SMS and voice APIs on the Alibaba Cloud API \
            Marketplace: sends are rated, charged against the purchased packages and forwarded \
            to the vendor (SPEC §5). Every refusal is `{\"error\": {\"code\", \"message\"}}`; \
            each operation lists the codes it can answer, per status.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "messages", description = "Sending, and the sends recorded"),
        (name = "quota", description = "What is left of each channel's packages"),
        (name = "packages", description = "Purchases and reconciliations (admin clients)"),
        (name = "alerts", description = "Renewal reminders' states"),
        (name = "reports", description = "Monthly cost reports (admin clients)"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "drop-in", description = "The vendor's own request format on each channel's \
            `proxy_path`, for applications written against the vendor"),
    )
)]
pub struct ApiDoc;

/// The names the operations' `security(...)` refer to.
pub const BEARER: &str = "bearer";
pub const APPCODE: &str = "appcode";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: a client's token from `[[clients]] \
                         token_env`. Package, reconciliation, report and acknowledgement \
                         endpoints need an `admin` client.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            APPCODE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Authorization: APPCODE <token>`: the vendor's own header, with the client's \
                 tollgate token where the vendor's AppCode was.",
            ))),
        );
    }
}

/// The finished document, serialized once when the router is built.
#[derive(Clone)]
pub struct ApiDocument(Arc<String>);

/// Serializes the routes' document (begun from [`ApiDoc`]) for [`serve_document`].
pub fn finish(openapi: &OpenApi) -> ApiDocument {
    ApiDocument(Arc::new(
        openapi.to_json().expect("an OpenAPI document serializes"),
    ))
}

/// The OpenAPI 3.1 description of this API
///
/// Generated from the handlers and the types they read and answer; it lists the drop-in
/// paths this instance's channels configure.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
)]
pub async fn serve_document(Extension(document): Extension<ApiDocument>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.0.as_str().to_owned(),
    )
        .into_response()
}

/// Adds a channel's drop-in path: the vendor's request format, `GET` or `POST`, with the
/// operation described by `template` (the proxy handler's annotation).
pub fn describe_proxy_path(
    openapi: &mut OpenApi,
    path: &str,
    what: &str,
    target: &str,
    template: Operation,
) {
    for (method, verb) in [(HttpMethod::Get, "get"), (HttpMethod::Post, "post")] {
        let mut operation = template.clone();
        operation.operation_id = Some(format!("drop_in_{what}_{target}_{verb}"));
        operation.tags = Some(vec!["drop-in".to_owned()]);
        operation.summary = Some(format!(
            "Send on {what} {target} in the vendor's own format"
        ));
        if method == HttpMethod::Get {
            // A GET carries its fields in the query only.
            operation.request_body = None;
        }
        openapi
            .paths
            .add_path_operation(path, vec![method], operation);
    }
}
