//! Bearer-token clients: who is calling, and whether they are an admin.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;
use crate::secret::Secret;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub admin: bool,
}

/// Tokens are kept only as SHA-256 digests: a lookup compares digests, so neither the
/// tokens nor their timing leak, and a memory dump shows no token.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_digest: Arc<HashMap<[u8; 32], Caller>>,
}

impl Clients {
    pub fn new(clients: impl IntoIterator<Item = (Secret, Caller)>) -> Self {
        Self {
            by_digest: Arc::new(
                clients
                    .into_iter()
                    .map(|(token, caller)| (digest(token.expose()), caller))
                    .collect(),
            ),
        }
    }

    pub fn authenticate(&self, token: &str) -> Option<&Caller> {
        self.by_digest.get(&digest(token))
    }

    /// The client configured under `name`, as it is configured now (the console's
    /// session names its client; whether it is an admin is read here at each request).
    pub fn named(&self, name: &str) -> Option<&Caller> {
        self.by_digest.values().find(|caller| caller.name == name)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: <scheme> <token>` header, if the scheme matches
/// (case-insensitively, as HTTP auth schemes are).
pub fn token_from_header<'a>(parts: &'a Parts, scheme: &str) -> Option<&'a str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (given, token) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        token_from_header(parts, "Bearer")
            .and_then(|token| state.clients.authenticate(token))
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// A caller that must be an admin.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.admin {
            Ok(Admin(caller))
        } else {
            Err(ApiError::forbidden())
        }
    }
}
