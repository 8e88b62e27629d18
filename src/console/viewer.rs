//! [`Viewer`]: who is looking at the console, from the session cookie, as the
//! configuration knows that client now.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;

use super::cookie;
use super::error::ConsoleError;
use super::session::Session;
use crate::http::AppState;

/// A signed-in client. An admin sees and may do everything; any other client sees the
/// quota, the alerts and its own usage, and no form that changes anything.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub client: String,
    pub admin: bool,
    session: Session,
    csrf_token: String,
}

impl Viewer {
    /// The CSRF token for this session's forms.
    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }

    pub fn require_admin(&self) -> Result<(), ConsoleError> {
        if self.admin {
            Ok(())
        } else {
            Err(ConsoleError::AdminOnly)
        }
    }

    /// Refuses a form that does not carry this session's token: a post made by another
    /// site, or a form from an earlier session.
    pub fn check_csrf(&self, state: &AppState, token: Option<&str>) -> Result<(), ConsoleError> {
        if self.session.accepts_csrf_token(&state.console, token) {
            Ok(())
        } else {
            Err(ConsoleError::CsrfRejected)
        }
    }

    /// The client whose usage this viewer may see alone, or `None` for an admin, who sees
    /// every client's.
    pub fn only_client(&self) -> Option<&str> {
        (!self.admin).then_some(self.client.as_str())
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value =
            cookie::read(&parts.headers, cookie::SESSION).ok_or(ConsoleError::SignInRequired)?;
        let session = Session::from_cookie_value(value, &state.console, state.sends.ledger().now())
            .map_err(|err| {
                tracing::debug!(reason = %err, "console session refused");
                ConsoleError::SignInRequired
            })?;
        // A client removed from the configuration since has no session any more.
        let caller = state
            .clients
            .named(session.client())
            .ok_or(ConsoleError::SignInRequired)?;
        Ok(Viewer {
            client: caller.name.clone(),
            admin: caller.admin,
            csrf_token: session.csrf_token(&state.console),
            session,
        })
    }
}

/// A page that also serves visitors who are not signed in (the sign-in form) asks for
/// `Option<Viewer>`.
impl OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Viewer as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}
