//! The request timeout: no request holds the edge longer than `server.request_timeout`.
//!
//! The header-read timeout (in [`super::serve`]) bounds how long a client may take to
//! send its headers; this bounds the rest: the body, then the handler. What the client
//! is told depends on where the time ran out, so that the answer is true:
//!
//! - the body had not fully arrived: 408 `request_timeout`, nothing was done;
//! - a send's handler was still running: 504 `send_in_progress`. Nothing is cut: the
//!   send runs in a task of its own (`SendService::send`), which reserves, calls the
//!   vendor and settles whether or not anyone waits for it, so the client only stops
//!   waiting. Whether it will be charged is not known yet (`"charged": null`); a client
//!   that sent an `Idempotency-Key` gets the outcome by repeating the request (409
//!   `idempotency_in_progress` until it is known), one without may send twice by
//!   repeating it, and is told so;
//! - any other handler: 503 `unavailable`, the handler is dropped. Its database
//!   transaction, if any, is rolled back unless it had already committed, which is why
//!   a write is said to have perhaps taken effect.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The `server.request_timeout` every route is held to.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

/// Where a request was when its time ran out.
enum RanOut {
    /// Still receiving the body.
    Body,
    /// The body was in; the handler was working.
    Handler,
}

/// For every route but the sends.
pub async fn limit_request(
    State(RequestTimeout(limit)): State<RequestTimeout>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match within(limit, request, next).await {
        Ok(response) => response,
        Err(RanOut::Body) => body_too_slow(limit).into_response(),
        Err(RanOut::Handler) => {
            tracing::warn!(%method, %path, ?limit, "a request ran out of time and was given up");
            let effect = if method == Method::GET || method == Method::HEAD {
                "retry shortly"
            } else {
                "it may or may not have taken effect: check before repeating it"
            };
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the request did not finish within server.request_timeout ({:?}); {effect}",
                    limit
                ),
            )
            .retry_after(Duration::from_secs(1))
            .into_response()
        }
    }
}

/// For `POST /v1/messages` and the drop-in proxy paths: a send is never cut.
pub async fn limit_send(
    State(RequestTimeout(limit)): State<RequestTimeout>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let has_key = request.headers().contains_key("idempotency-key");
    match within(limit, request, next).await {
        Ok(response) => response,
        Err(RanOut::Body) => body_too_slow(limit).charged(false).into_response(),
        Err(RanOut::Handler) => {
            // The path only: a proxy request's query holds the mobile number.
            tracing::warn!(%path, ?limit, "a send outlived the request timeout; it continues without its client");
            let repeat = if has_key {
                "repeat the request with the same Idempotency-Key to get its outcome"
            } else {
                "it had no Idempotency-Key, so repeating it may send the message twice"
            };
            let error = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "send_in_progress",
                format!(
                    "the send did not finish within server.request_timeout ({:?}) and is still under way: it is charged if the vendor takes it or does not answer; {repeat}",
                    limit
                ),
            )
            .charge_not_yet_known();
            if has_key {
                error.retry_after(Duration::from_secs(1)).into_response()
            } else {
                error.into_response()
            }
        }
    }
}

fn body_too_slow(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within server.request_timeout ({:?}); nothing was done",
            limit
        ),
    )
}

async fn within(limit: Duration, request: Request, next: Next) -> Result<Response, RanOut> {
    let (parts, body) = request.into_parts();
    let received = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = Body::new(Watched {
        inner: body,
        received: received.clone(),
    });
    let request = Request::from_parts(parts, body);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => Ok(response),
        Err(_) if received.load(Ordering::SeqCst) => Err(RanOut::Handler),
        Err(_) => Err(RanOut::Body),
    }
}

/// A request body that notes when its end has been read.
struct Watched {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.received.store(true, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
