//! `GET /openapi.json`: the OpenAPI 3.1 description of the API (SPEC §15), generated
//! from the handlers' own `#[utoipa::path]` annotations and the request and answer
//! types they (de)serialize, so that it describes what the router serves.

mod document;
mod refusals;
mod schemas;

pub use document::{
    __path_serve_document, describe_proxy_path, finish, serve_document, ApiDoc, ApiDocument,
    APPCODE, BEARER,
};
pub use refusals::refusal_responses;
