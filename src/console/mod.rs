//! The console: server-rendered pages for the people who buy the next package.
//!
//! `GET /console` and the pages under it show what is left of each channel and when it
//! runs out, the alerts, the packages, this month's and last month's costs and a burn
//! chart, zh-CN first with the English beside it. The pages are HTML drawn on the server
//! with [maud](https://maud.lambda.xyz) and a little inline CSS: no build step, no
//! script, no chart library.
//!
//! maud rather than askama: its templates are Rust expressions checked by the compiler
//! like any other code (a misspelt field is a build error, not a blank on the page), it
//! escapes every interpolated value unless told otherwise, and the pages stay one file
//! each next to the handler that fills them, with no template folder to keep in step.
//!
//! The console reads only the ledger's read interface (`ledger::views`) and the alert
//! engine, and writes only through the same calls as the API (`AppState::register_package`,
//! `AlertEngine::acknowledge`), so it shows and does exactly what the API would.
//! Signing in takes a client token, as the API does; the session is a signed cookie
//! ([`session`]), and every form carries a CSRF token.

mod chart;
mod cookie;
mod error;
mod i18n;
mod layout;
mod pages;
mod router;
mod session;
mod viewer;

pub use error::ConsoleError;
pub use router::routes;
pub use session::{Session, SessionError, SessionKey, SESSION_LIFETIME};
pub use viewer::Viewer;
