//! [`ConsoleError`]: every way a console request can fail, each answered with a page
//! (or, for a missing session, the way to the sign-in form). Causes are logged; pages
//! say what to do, never what broke inside.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::i18n::bi;
use super::layout;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or one that ended or was not signed by this configuration.
    #[error("sign in first")]
    SignInRequired,
    #[error("only an admin may do this")]
    AdminOnly,
    #[error("the form's token is missing or is not this session's")]
    CsrfRejected,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("the ledger or the alert store cannot be read")]
    Unavailable(#[source] anyhow::Error),
}

impl ConsoleError {
    pub fn unavailable(err: impl Into<anyhow::Error>) -> Self {
        ConsoleError::Unavailable(err.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, zh, en) = match &self {
            ConsoleError::SignInRequired => {
                return Redirect::to("/console/sign-in").into_response();
            }
            ConsoleError::AdminOnly => (
                StatusCode::FORBIDDEN,
                ("无权访问", "Not allowed"),
                "只有管理员可以这样做。",
                "Only an admin may do this.",
            ),
            ConsoleError::CsrfRejected => (
                StatusCode::FORBIDDEN,
                ("表单已失效", "Form expired"),
                "表单已失效：请刷新页面后重试。",
                "This form is no longer valid: reload the page and try again.",
            ),
            ConsoleError::NotFound => (
                StatusCode::NOT_FOUND,
                ("未找到", "Not found"),
                "没有这个页面。",
                "There is no such page.",
            ),
            ConsoleError::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                ("请求有误", "Bad request"),
                "请求有误。",
                "The request is not valid.",
            ),
            ConsoleError::Unavailable(err) => {
                tracing::error!(error = format!("{err:#}"), "console page failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ("暂不可用", "Unavailable"),
                    "暂时无法读取数据库，请稍后再试。",
                    "The database cannot be read just now; try again shortly.",
                )
            }
        };
        let detail = match &self {
            ConsoleError::BadRequest(detail) => Some(detail.as_str()),
            _ => None,
        };
        let body = html! {
            section.card {
                h2 { (bi(zh, en)) }
                @if let Some(detail) = detail { p.muted { (detail) } }
                p { a href="/console" { (bi("返回控制台", "Back to the console")) } }
            }
        };
        (status, layout::bare_page(title, body)).into_response()
    }
}
