//! A stand-in for the vendor's gateway on loopback, answering what each test scripts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Wait this long before answering (to provoke a client timeout).
    pub delay: Duration,
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
        }
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

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
}

#[derive(Clone)]
struct Shared {
    reply: Arc<Mutex<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
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
        };
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
}

async fn answer(State(shared): State<Shared>, request: Request) -> Response {
    let query = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    shared.received.lock().unwrap().push(Received {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query,
        authorization: request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let reply = shared.reply.lock().unwrap().clone();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
