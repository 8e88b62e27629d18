//! Signing in with a client token, and signing out.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::csrf_field;
use crate::console::cookie::{self, CookieJar};
use crate::console::error::ConsoleError;
use crate::console::i18n::bi;
use crate::console::layout;
use crate::console::session::{Session, SignInChallenge, SESSION_LIFETIME, SIGN_IN_LIFETIME};
use crate::console::viewer::Viewer;
use crate::http::AppState;

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: Option<String>,
    csrf: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    csrf: Option<String>,
}

/// Why the form is shown again.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    WrongToken,
    StaleForm,
}

/// `GET /console/sign-in`: the form, or the console for a browser already signed in.
pub async fn form(
    State(state): State<AppState>,
    viewer: Option<Viewer>,
    headers: HeaderMap,
) -> Response {
    if viewer.is_some() {
        return Redirect::to("/console").into_response();
    }
    sign_in_page(&state, &headers, StatusCode::OK, None)
}

/// `POST /console/sign-in`: the token is checked as the API checks a bearer token; the
/// session cookie names the client, never the token.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let fields = super::form(posted)?;
    let now = state.sends.ledger().now();
    if !SignInChallenge::accepts(
        &state.console,
        cookie::read(&headers, cookie::SIGN_IN),
        fields.csrf.as_deref(),
        now,
    ) {
        return Ok(sign_in_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some(Refusal::StaleForm),
        ));
    }
    let token = fields.token.as_deref().unwrap_or("").trim();
    let Some(caller) = state.clients.authenticate(token).cloned() else {
        tracing::warn!("console sign-in refused: the token is no client's");
        return Ok(sign_in_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some(Refusal::WrongToken),
        ));
    };
    tracing::info!(client = %caller.name, admin = caller.admin, "console sign-in");
    let session = Session::start(&caller.name, now);
    let mut response = Redirect::to("/console").into_response();
    CookieJar::for_request(&headers)
        .set(
            cookie::SESSION,
            &session.to_cookie_value(&state.console),
            SESSION_LIFETIME,
        )
        .remove(cookie::SIGN_IN)
        .write_to(response.headers_mut());
    Ok(response)
}

/// `POST /console/sign-out`: the browser forgets the session.
pub async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    posted: Result<Form<SignOutForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let fields = super::form(posted)?;
    viewer.check_csrf(&state, fields.csrf.as_deref())?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    CookieJar::for_request(&headers)
        .remove(cookie::SESSION)
        .write_to(response.headers_mut());
    Ok(response)
}

fn sign_in_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    refusal: Option<Refusal>,
) -> Response {
    let challenge = SignInChallenge::issue(state.sends.ledger().now());
    let body = html! {
        section.card {
            @match refusal {
                Some(Refusal::WrongToken) => {
                    p.notice.error #sign-in-error role="alert" {
                        (bi("令牌不正确。", "That token is not valid."))
                    }
                }
                Some(Refusal::StaleForm) => {
                    p.notice.error #sign-in-error role="alert" {
                        (bi("表单已过期，请重新输入。", "The form expired; enter the token again."))
                    }
                }
                None => {}
            }
            form.stack method="post" action="/console/sign-in" {
                (csrf_field(&challenge.form_token(&state.console)))
                label {
                    span { (bi("客户端令牌", "Client token")) }
                    input #token type="password" name="token" required autocomplete="current-password" autofocus;
                }
                button #sign-in type="submit" { (bi("登录", "Sign in")) }
            }
            p.muted {
                (bi(
                    "使用 [[clients]] 中配置的令牌（与 API 的 Bearer 令牌相同）。管理员可以查看全部内容；其他客户端只看到余量、告警和自己的用量。",
                    "Use a token of [[clients]] (the API's bearer token). Admins see everything; other clients see the quota, the alerts and their own usage."
                ))
            }
        }
    };
    let mut response = (status, layout::bare_page(("登录", "Sign in"), body)).into_response();
    CookieJar::for_request(headers)
        .set(cookie::SIGN_IN, challenge.cookie_value(), SIGN_IN_LIFETIME)
        .write_to(response.headers_mut());
    response
}
