//! A stand-in for the vendor's gateway on loopback, answering what each test scripts.
//!
//! Every request is numbered as it arrives (1, 2, …), and `{n}` in a scripted answer's
//! headers or body becomes that number, so that a test can tell which answer the ledger
//! recorded for which call ([`Reply::numbered`]). The stand-in keeps a log of what it did
//! with each request ([`StandInVendor::answered`]); a reply can also drop the connection
//! after reading the request, as a vendor that crashed mid-call does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Wait this long before answering (to provoke a client timeout).
    pub delay: Duration,
    /// Close the connection after reading the request, without answering.
    pub drop_connection: bool,
}

impl Reply {
    pub fn success() -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("X-Ca-Request-Id", "5C6B1D7E-0000-4000-8000-00000000AAAA".into()),
                ("X-Ca-Market-Billing-Result", "1".into()),
                ("Content-Type", "application/json;charset=UTF-8".into()),
            ],
            body: r#"{"ReturnStatus":"Success","Message":"ok","RemainPoint":420842,"TaskID":18424321,"SuccessCounts":1}"#.into(),
            delay: Duration::ZERO,
            drop_connection: false,
        }
    }

    pub fn gateway_error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            headers: vec![
                (
                    "X-Ca-Request-Id",
                    "5C6B1D7E-0000-4000-8000-00000000BBBB".into(),
                ),
                ("X-Ca-Error-Message", message.into()),
            ],
            body: String::new(),
            delay: Duration::ZERO,
            drop_connection: false,
        }
    }

    /// Reads the request and closes the connection without a word: the request was
    /// written, so the message may have gone out.
    pub fn dropped() -> Reply {
        Reply {
            drop_connection: true,
            ..Reply::gateway_error(500, "never sent")
        }
    }

    /// The same answer with the request's number as its `X-Ca-Request-Id`
    /// (`standin-{n}`) and, in a 200, as the body's `TaskID`.
    pub fn numbered(mut self) -> Reply {
        self = self.with_header("X-Ca-Request-Id", &request_id("{n}"));
        if self.status == 200 {
            self.body = self.body.replace("18424321", "{n}");
        }
        self
    }

    pub fn with_body(mut self, body: &str) -> Reply {
        self.body = body.into();
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// The `X-Ca-Request-Id` a numbered reply gives request `n`.
pub fn request_id(n: &str) -> String {
    format!("standin-{n}")
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
}

/// What the stand-in did with one request.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The request's number (1 for the first).
    pub number: u64,
    /// The status it answered, or `None` when it dropped the connection.
    pub status: Option<u16>,
    /// How long it waited before answering.
    pub delay: Duration,
    /// `X-Ca-Market-Billing-Result: 0` was not among the headers: a 200 is billed.
    pub billed_header: bool,
}

#[derive(Clone)]
struct Shared {
    reply: Arc<Mutex<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
    answered: Arc<Mutex<Vec<Answered>>>,
}

pub struct StandInVendor {
    pub addr: SocketAddr,
    shared: Shared,
}

impl StandInVendor {
    pub async fn start() -> StandInVendor {
        let shared = Shared {
            reply: Arc::new(Mutex::new(Reply::success())),
            received: Arc::default(),
            answered: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, shared.clone()));
        StandInVendor { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every later request gets this answer.
    pub fn answer_with(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// What it did with each request so far, in arrival order.
    pub fn answered(&self) -> Vec<Answered> {
        self.shared.answered.lock().unwrap().clone()
    }
}

/// HTTP/1.1 connections served by hand rather than by `axum::serve`, so that a reply can
/// end its connection without an answer: the service fails, and hyper closes the socket.
async fn serve(listener: tokio::net::TcpListener, shared: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                answer(shared.clone(), request.map(Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Shared,
    request: axum::http::Request<Body>,
) -> Result<Response, std::io::Error> {
    let query = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let (method, path) = (
        request.method().to_string(),
        request.uri().path().to_owned(),
    );
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The whole request is read before anything is decided, as a vendor does.
    let _ = axum::body::to_bytes(request.into_body(), 1 << 20).await;
    let (number, reply) = {
        let mut received = shared.received.lock().unwrap();
        received.push(Received {
            method,
            path,
            query,
            authorization,
        });
        (received.len() as u64, shared.reply.lock().unwrap().clone())
    };
    shared.answered.lock().unwrap().push(Answered {
        number,
        status: (!reply.drop_connection).then_some(reply.status),
        delay: reply.delay,
        billed_header: !reply.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("X-Ca-Market-Billing-Result") && value == "0"
        }),
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let n = number.to_string();
    if reply.drop_connection {
        return Err(std::io::Error::other("dropped as scripted"));
    }
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        reply.body.replace("{n}", &n),
    )
        .into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.replace("{n}", &n).parse().unwrap());
    }
    Ok(response)
}
