//! One file per console page: each reads what it shows from the ledger's read interface
//! or the alert engine, and draws it.

pub mod alerts;
pub mod channels;
pub mod packages;
pub mod reports;
pub mod sign_in;
pub mod usage;

use axum::extract::rejection::FormRejection;
use axum::Form;
use maud::{html, Markup};

use super::error::ConsoleError;

/// A posted form's fields, or a page saying the post was not a form.
pub fn form<T>(posted: Result<Form<T>, FormRejection>) -> Result<T, ConsoleError> {
    posted
        .map(|Form(fields)| fields)
        .map_err(|rejection| ConsoleError::BadRequest(rejection.body_text()))
}

/// The hidden field that carries the session's CSRF token in every form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}
