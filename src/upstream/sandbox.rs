//! `tollgate sandbox-upstream`: a simulation of the vendor behind the marketplace gateway.
//!
//! It answers the way the real gateway and the vendors' backends do (see
//! `notes/vendor-facts.md`): gateway refusals as a status with `X-Ca-Error-Message` and
//! an empty body, backend answers as a 200 with the backend's JSON body. Two backends,
//! one per vendor format: a path ending in `/smsSend` (e.g. `/sms/smsSend`) is a
//! template-format vendor shaped like gyytz ([`template`]), every other path the
//! 创信/卡池 kapool backend ([`kapool`]). The gateway in front of them is one: each
//! AppCode has its own quota, spent by every call that reaches a backend, including
//! business failures, as the vendors bill them. Latency, throttling, gateway failures,
//! rejections and calls that never answer can be injected, on either backend.

mod kapool;
mod template;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::format::decode_form;
use crate::domain::mobile::{mask_mobile, mask_mobile_numbers};
use crate::marketplace::sandbox::{self as market, AccountMetering, MarketSimulation};
use crate::marketplace::AccessKey;
use crate::secret::Secret;

/// The AppCode of [`SandboxConfig::default`]'s one account.
pub const DEFAULT_APPCODE: &str = "sandbox-appcode";
/// The quota of [`SandboxConfig::default`]'s one account.
pub const DEFAULT_QUOTA: u64 = 100_000;
/// The path that serves [`SandboxStats`] as JSON; every other path is the vendor.
pub const STATS_PATH: &str = "/__sandbox/stats";

/// How long a call chosen to time out is held before the gateway gives up on it.
const HANG_FOR: Duration = Duration::from_secs(60);
/// How many received requests are kept for tests to inspect.
const RECEIVED_KEPT: usize = 64;

const INVALID_APPCODE: &str = "Invalid AppCode `not exists`";
const QUOTA_EXHAUSTED: &str = "Quota Exhausted";
const THROTTLED: &str = "Throttled by APP Flow Control";
const INTERNAL_ERROR: &str = "Internal Error";
const ASYNC_SERVICE: &str = "Async Service";
/// The backend's answer to an injected rejection: 提交失败 ("submission failed").
const INJECTED_REJECTION: &str = "提交失败";

/// What the simulated vendor does.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The AppCodes it accepts, each with its own remaining quota.
    pub appcodes: Vec<SandboxAccount>,
    /// Added to every answer.
    pub latency: Duration,
    /// A random extra delay between zero and this, added to `latency`.
    pub jitter: Duration,
    /// Share of calls answered `500` with `X-Ca-Error-Message: Internal Error` (not billed).
    pub failure_rate: f64,
    /// Share of calls answered `200` with the backend's business failure (billed):
    /// `"ReturnStatus":"Faild"`, or a non-zero `code` on the template backend.
    pub reject_rate: f64,
    /// Share of calls accepted and then not answered for 60 seconds. They are billed:
    /// the backend sent the message and only the answer was lost.
    pub timeout_rate: f64,
    /// Calls per second per AppCode above which the gateway answers `403 Throttled by
    /// APP Flow Control`.
    pub throttle_per_second: Option<u32>,
    /// The AccessKey pair the simulated Market API accepts (`None`: it knows none).
    pub market: Option<AccessKey>,
}

/// One AppCode the sandbox accepts.
#[derive(Debug, Clone)]
pub struct SandboxAccount {
    pub appcode: Secret,
    /// Calls left in the account's packages.
    pub quota: u64,
    /// The marketplace product the packages are of, for the Market API simulation.
    pub product_code: Option<String>,
}

impl SandboxConfig {
    /// One account holding `quota` calls for `appcode`, answering at once.
    pub fn one_account(appcode: Secret, quota: u64) -> Self {
        Self {
            appcodes: vec![SandboxAccount {
                appcode,
                quota,
                product_code: None,
            }],
            latency: Duration::ZERO,
            ..Self::default()
        }
    }
}

impl Default for SandboxConfig {
    /// One account ([`DEFAULT_APPCODE`], [`DEFAULT_QUOTA`] calls), 20 ms per answer,
    /// nothing injected.
    fn default() -> Self {
        Self {
            appcodes: vec![SandboxAccount {
                appcode: Secret::new(DEFAULT_APPCODE),
                quota: DEFAULT_QUOTA,
                product_code: Some(market::SANDBOX_PRODUCT_CODE.to_owned()),
            }],
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            failure_rate: 0.0,
            reject_rate: 0.0,
            timeout_rate: 0.0,
            throttle_per_second: None,
            market: Some(AccessKey::new(
                market::SANDBOX_ACCESS_KEY_ID,
                market::SANDBOX_ACCESS_KEY_SECRET,
            )),
        }
    }
}

/// Counters of what the sandbox has answered; served at [`STATS_PATH`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SandboxStats {
    /// Every vendor call received, whatever its answer.
    pub requests: u64,
    /// `200` with the backend's success (`ReturnStatus: Success`, `code: 0`).
    pub successes: u64,
    /// `200` with the backend's business failure (`ReturnStatus: Faild`, a non-zero
    /// `code`), whether the request was refused or the rejection injected.
    pub rejections: u64,
    /// `400 Invalid AppCode`.
    pub auth_failures: u64,
    /// `403 Throttled by APP Flow Control`.
    pub throttled: u64,
    /// `403 Quota Exhausted`.
    pub quota_exhausted: u64,
    /// Injected `500 Internal Error`.
    pub injected_failures: u64,
    /// Injected calls that were never answered in time.
    pub injected_timeouts: u64,
    /// Per account, in configuration order, named `account-<index>` so that no AppCode
    /// leaves the process.
    pub accounts: Vec<SandboxAccountStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxAccountStats {
    pub account: String,
    pub remaining: u64,
    /// Calls that spent quota: successes, rejections and unanswered calls.
    pub billed: u64,
    pub successes: u64,
    pub rejections: u64,
}

/// A request as the sandbox received it, kept for tests to check what was sent. Its
/// `Debug` masks the mobile numbers.
#[derive(Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// The whole `Authorization` header, as sent.
    pub authorization: Option<Secret>,
    pub content_type: Option<String>,
    pub body_len: usize,
    /// Every query field, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Every field of an `application/x-www-form-urlencoded` body, decoded, in order.
    pub form: Vec<(String, String)>,
    /// `content` and `mobile` as found in the query string.
    pub query_content: Option<String>,
    pub query_mobile: Option<String>,
    /// What the sandbox acted on: the query's values, else the form body's.
    pub content: Option<String>,
    pub mobile: Option<String>,
}

impl ReceivedRequest {
    /// The first query field named `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }

    /// The first form-body field named `name`.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        find(&self.form, name)
    }

    /// What a backend reads for `name`: the query's value, else the form body's (the
    /// vendors' samples send both ways).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.query_value(name).or_else(|| self.form_value(name))
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

impl std::fmt::Debug for ReceivedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |mobile: &Option<String>| mobile.as_deref().map(mask_mobile);
        let masked_pairs = |pairs: &[(String, String)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(name, value)| (name.clone(), mask_mobile_numbers(value)))
                .collect()
        };
        f.debug_struct("ReceivedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("authorization", &self.authorization)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body_len)
            .field("query", &masked_pairs(&self.query))
            .field("form", &masked_pairs(&self.form))
            .field("query_content", &self.query_content)
            .field("query_mobile", &masked(&self.query_mobile))
            .field("content", &self.content)
            .field("mobile", &masked(&self.mobile))
            .finish()
    }
}

/// The sandbox's shared state: accounts, counters and the stop signal.
#[derive(Clone)]
pub struct SandboxState {
    shared: Arc<Shared>,
}

struct Shared {
    latency: Duration,
    jitter: Duration,
    failure_rate: f64,
    reject_rate: f64,
    timeout_rate: f64,
    throttle_per_second: Option<u32>,
    /// One lock for all bookkeeping: each call's check and spend of quota must be one
    /// step, and the critical sections are a few comparisons long. It is never held
    /// across an await.
    book: Mutex<Book>,
    market: MarketSimulation,
    /// Set to `true` to stop: the server shuts down and held calls are released.
    stopping: watch::Sender<bool>,
}

struct Book {
    accounts: Vec<Account>,
    stats: SandboxStats,
    next_task_id: u64,
    received: VecDeque<ReceivedRequest>,
}

struct Account {
    appcode: Secret,
    product_code: Option<String>,
    /// Everything given: the initial quota and every `add_quota`.
    given: u64,
    remaining: u64,
    billed: u64,
    successes: u64,
    rejections: u64,
    /// The current one-second flow-control window: when it opened and calls admitted.
    window: Option<(Instant, u32)>,
}

impl Account {
    /// Admits a call unless `limit` calls were already admitted in the current second.
    fn admit(&mut self, now: Instant, limit: u32) -> bool {
        match &mut self.window {
            Some((opened, count)) if now.duration_since(*opened) < Duration::from_secs(1) => {
                if *count >= limit {
                    return false;
                }
                *count += 1;
                true
            }
            _ => {
                self.window = Some((now, 1));
                limit > 0
            }
        }
    }
}

impl SandboxState {
    pub fn new(config: SandboxConfig) -> Self {
        let accounts = config
            .appcodes
            .into_iter()
            .map(|account| Account {
                appcode: account.appcode,
                product_code: account.product_code,
                given: account.quota,
                remaining: account.quota,
                billed: 0,
                successes: 0,
                rejections: 0,
                window: None,
            })
            .collect();
        let (stopping, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                latency: config.latency,
                jitter: config.jitter,
                failure_rate: config.failure_rate,
                reject_rate: config.reject_rate,
                timeout_rate: config.timeout_rate,
                throttle_per_second: config.throttle_per_second,
                book: Mutex::new(Book {
                    accounts,
                    stats: SandboxStats::default(),
                    // Far from zero, like the vendor's, so a task id never reads as "none".
                    next_task_id: 18_424_321,
                    received: VecDeque::new(),
                }),
                market: MarketSimulation::new(config.market),
                stopping,
            }),
        }
    }

    pub fn stats(&self) -> SandboxStats {
        let book = self.book();
        let mut stats = book.stats.clone();
        stats.accounts = book
            .accounts
            .iter()
            .enumerate()
            .map(|(index, account)| SandboxAccountStats {
                account: format!("account-{index}"),
                remaining: account.remaining,
                billed: account.billed,
                successes: account.successes,
                rejections: account.rejections,
            })
            .collect();
        stats
    }

    /// The quota left for `appcode`, or `None` if the sandbox does not know it.
    pub fn remaining(&self, appcode: &str) -> Option<u64> {
        let book = self.book();
        book.account(appcode).map(|account| account.remaining)
    }

    /// Adds `units` to `appcode`'s quota, like buying a package; returns the new
    /// remaining count, or `None` if the sandbox does not know the AppCode.
    pub fn add_quota(&self, appcode: &str, units: u64) -> Option<u64> {
        let mut book = self.book();
        let index = book.account_index(appcode)?;
        let account = &mut book.accounts[index];
        account.remaining = account.remaining.saturating_add(units);
        account.given = account.given.saturating_add(units);
        Some(account.remaining)
    }

    /// The figures of every account sold as a marketplace product, for the Market API
    /// simulation (`crate::marketplace::sandbox`).
    pub fn metering(&self) -> Vec<AccountMetering> {
        let book = self.book();
        let sold = book.accounts.iter().filter_map(|account| {
            Some(AccountMetering {
                product_code: account.product_code.clone()?,
                given: account.given,
                billed: account.billed,
                remaining: account.remaining,
            })
        });
        sold.collect()
    }

    pub(crate) fn market(&self) -> &MarketSimulation {
        &self.shared.market
    }

    /// The last requests received (at most 64), oldest first.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.book().received.iter().cloned().collect()
    }

    /// Stops the server and releases calls held by an injected timeout.
    pub fn stop(&self) {
        self.shared.stopping.send_replace(true);
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere cannot leave the counters half-updated in a way that
        // matters to a simulation, so a poisoned lock is still used.
        self.shared
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn stopped(&self) {
        let mut stopping = self.shared.stopping.subscribe();
        // An error means the sender is gone, which also means stop.
        let _ = stopping.wait_for(|stop| *stop).await;
    }

    /// Draws this call's fate and delay. Done before any await, since the thread-local
    /// generator cannot be held across one.
    fn roll(&self) -> (Fate, Duration) {
        let shared = &self.shared;
        let mut rng = rand::thread_rng();
        // `gen::<f64>() < rate` rather than `gen_bool`, which panics outside 0..=1.
        let fate = if rng.gen::<f64>() < shared.failure_rate {
            Fate::Fail
        } else if rng.gen::<f64>() < shared.timeout_rate {
            Fate::Hang
        } else if rng.gen::<f64>() < shared.reject_rate {
            Fate::Reject
        } else {
            Fate::Normal
        };
        let delay = shared.latency + shared.jitter.mul_f64(rng.gen::<f64>());
        (fate, delay)
    }

    /// Decides the answer to one call and does its bookkeeping, in one critical section.
    /// The gateway's part (AppCode, flow control, quota, injected failures) is the same
    /// for both backends; only what a backend refuses and how it words its answer differ.
    fn decide(&self, request: ReceivedRequest, appcode: Option<&str>, fate: Fate) -> Answer {
        let throttle = self.shared.throttle_per_second;
        let backend = Backend::for_path(&request.path);
        let mut book = self.book();
        book.stats.requests += 1;
        let failure = backend.refusal(&request);
        if book.received.len() == RECEIVED_KEPT {
            book.received.pop_front();
        }
        book.received.push_back(request);

        let Some(index) = appcode.and_then(|code| book.account_index(code)) else {
            book.stats.auth_failures += 1;
            return Answer::gateway(StatusCode::BAD_REQUEST, INVALID_APPCODE);
        };
        let Book {
            accounts,
            stats,
            next_task_id,
            ..
        } = &mut *book;
        let account = &mut accounts[index];
        if let Some(limit) = throttle {
            if !account.admit(Instant::now(), limit) {
                stats.throttled += 1;
                return Answer::gateway(StatusCode::FORBIDDEN, THROTTLED);
            }
        }
        if account.remaining == 0 {
            stats.quota_exhausted += 1;
            return Answer::gateway(StatusCode::FORBIDDEN, QUOTA_EXHAUSTED);
        }
        if fate == Fate::Fail {
            stats.injected_failures += 1;
            return Answer::gateway(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR);
        }

        // From here the call reached the backend, which bills it whatever it answers.
        account.remaining -= 1;
        account.billed += 1;
        if fate == Fate::Hang {
            stats.injected_timeouts += 1;
            return Answer::Hang;
        }
        let failure = failure.or((fate == Fate::Reject).then_some(INJECTED_REJECTION));
        match failure {
            Some(message) => {
                stats.rejections += 1;
                account.rejections += 1;
                Answer::Backend(backend.refused(message, account.remaining))
            }
            None => {
                stats.successes += 1;
                account.successes += 1;
                let task_id = *next_task_id;
                *next_task_id += 1;
                Answer::Backend(backend.accepted(account.remaining, task_id))
            }
        }
    }
}

impl Book {
    fn account_index(&self, appcode: &str) -> Option<usize> {
        self.accounts
            .iter()
            .position(|account| account.appcode.expose() == appcode)
    }

    fn account(&self, appcode: &str) -> Option<&Account> {
        self.account_index(appcode)
            .map(|index| &self.accounts[index])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Normal,
    Fail,
    Hang,
    Reject,
}

enum Answer {
    /// A refusal by the gateway: a status, `X-Ca-Error-Message`, an empty body.
    Gateway {
        status: StatusCode,
        message: &'static str,
    },
    /// Accepted, then held until the gateway gives up.
    Hang,
    /// The backend's JSON answer, always a 200.
    Backend(BackendBody),
}

impl Answer {
    fn gateway(status: StatusCode, message: &'static str) -> Self {
        Answer::Gateway { status, message }
    }
}

/// The simulated backend behind a path, one per vendor format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Kapool,
    Template,
}

impl Backend {
    fn for_path(path: &str) -> Self {
        if template::serves(path) {
            Backend::Template
        } else {
            Backend::Kapool
        }
    }

    /// What the backend refuses (and still bills), in its own words.
    fn refusal(self, request: &ReceivedRequest) -> Option<&'static str> {
        match self {
            Backend::Kapool => kapool::refusal(request),
            Backend::Template => template::refusal(request),
        }
    }

    fn accepted(self, remaining: u64, task_id: u64) -> BackendBody {
        match self {
            Backend::Kapool => kapool::accepted(remaining, task_id),
            Backend::Template => template::accepted(remaining, task_id),
        }
    }

    fn refused(self, message: &'static str, remaining: u64) -> BackendBody {
        match self {
            Backend::Kapool => kapool::refused(message, remaining),
            Backend::Template => template::refused(message, remaining),
        }
    }
}

/// A backend's JSON answer, with what the sandbox logs of it.
#[derive(Debug)]
struct BackendBody {
    json: Vec<u8>,
    /// The body's verdict as the backend writes it (`Success`, `Faild`, `0`, `1001`).
    verdict: &'static str,
    message: &'static str,
}

/// The sandbox's HTTP interface: [`STATS_PATH`], the Market API at `GET /?Action=…`, and
/// the vendor on every other path.
pub fn router(state: SandboxState) -> Router {
    Router::new()
        .route(STATS_PATH, get(stats))
        .fallback(vendor_call)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            market::market_api,
        ))
        .with_state(state)
}

/// A running sandbox. Dropping the handle stops the server too.
pub struct SandboxHandle {
    addr: SocketAddr,
    state: SandboxState,
    server: Option<JoinHandle<()>>,
}

impl SandboxHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`, e.g. the URL of a channel pointed at the sandbox.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    pub fn stats(&self) -> SandboxStats {
        self.state.stats()
    }

    pub fn remaining(&self, appcode: &str) -> Option<u64> {
        self.state.remaining(appcode)
    }

    pub fn add_quota(&self, appcode: &str, units: u64) -> Option<u64> {
        self.state.add_quota(appcode, units)
    }

    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.received()
    }

    /// Stops accepting, releases held calls and waits for open connections to finish.
    pub async fn shutdown(mut self) {
        self.state.stop();
        if let Some(server) = self.server.take() {
            if let Err(err) = server.await {
                tracing::error!(error = %err, "the sandbox server task failed");
            }
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.state.stop();
    }
}

/// Serves the sandbox on `listener` in a background task until the handle is shut
/// down or dropped.
pub async fn spawn(listener: TcpListener, config: SandboxConfig) -> SandboxHandle {
    let addr = listener
        .local_addr()
        .expect("a bound TCP listener has a local address");
    let state = SandboxState::new(config);
    let app = router(state.clone());
    let stopping = state.clone();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopping.stopped().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the sandbox server stopped");
        }
    });
    tracing::info!(%addr, "sandbox vendor listening");
    SandboxHandle {
        addr,
        state,
        server: Some(server),
    }
}

async fn stats(State(state): State<SandboxState>) -> Json<SandboxStats> {
    Json(state.stats())
}

/// Any path, any method: one call to the simulated vendor.
#[tracing::instrument(skip_all, fields(method = %method, path = %uri.path()))]
async fn vendor_call(
    State(state): State<SandboxState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let request = received_request(&method, &uri, &headers, &body);
    let appcode = request
        .authorization
        .as_ref()
        .and_then(|header| header.expose().strip_prefix("APPCODE "))
        .filter(|code| !code.is_empty())
        .map(str::to_owned);
    let mobile = request.mobile.as_deref().map(mask_mobile);
    let (fate, delay) = state.roll();
    let answer = state.decide(request, appcode.as_deref(), fate);

    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = state.stopped() => {}
    }
    let response = match answer {
        Answer::Gateway { status, message } => {
            tracing::debug!(
                mobile,
                status = status.as_u16(),
                message,
                "sandbox refused the call"
            );
            gateway_response(status, message)
        }
        Answer::Hang => {
            tracing::debug!(mobile, "sandbox holds the call unanswered");
            tokio::select! {
                () = tokio::time::sleep(HANG_FOR) => {}
                () = state.stopped() => {}
            }
            gateway_response(StatusCode::GATEWAY_TIMEOUT, ASYNC_SERVICE)
        }
        Answer::Backend(body) => {
            tracing::debug!(
                mobile,
                verdict = body.verdict,
                message = body.message,
                "sandbox answered"
            );
            backend_response(body)
        }
    };
    with_request_id(response, &request_id)
}

fn gateway_response(status: StatusCode, message: &'static str) -> Response {
    (status, [("X-Ca-Error-Message", message)]).into_response()
}

fn backend_response(body: BackendBody) -> Response {
    (
        StatusCode::OK,
        [
            ("Content-Type", "application/json; charset=UTF-8"),
            ("X-Ca-Market-Billing-Result", "1"),
        ],
        Body::from(body.json),
    )
        .into_response()
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("X-Ca-Request-Id", value);
    }
    response
}

fn received_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> ReceivedRequest {
    let header = |name| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let query = decode_form(uri.query().unwrap_or("").as_bytes());
    let content_type = header("content-type");
    // The vendor reads `content` and `mobile` from the query, and from a form body when
    // the caller sends one (its samples do both).
    let form = match &content_type {
        Some(kind) if kind.starts_with("application/x-www-form-urlencoded") => decode_form(body),
        _ => Vec::new(),
    };
    let owned = |pairs: &[(String, String)], key: &str| find(pairs, key).map(str::to_owned);
    let query_content = owned(&query, "content");
    let query_mobile = owned(&query, "mobile");
    ReceivedRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        authorization: header("authorization").map(Secret::new),
        content_type,
        body_len: body.len(),
        content: query_content.clone().or_else(|| owned(&form, "content")),
        mobile: query_mobile.clone().or_else(|| owned(&form, "mobile")),
        query_content,
        query_mobile,
        query,
        form,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPCODE: &str = "sandbox-test-appcode";

    async fn sandbox(config: SandboxConfig) -> SandboxHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        spawn(listener, config).await
    }

    fn one_account(quota: u64) -> SandboxConfig {
        SandboxConfig::one_account(Secret::new(APPCODE), quota)
    }

    fn http() -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn body_json(response: reqwest::Response) -> serde_json::Value {
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    #[test]
    fn the_default_is_one_account_with_no_failures() {
        let config = SandboxConfig::default();
        assert_eq!(config.appcodes.len(), 1);
        assert_eq!(config.appcodes[0].appcode.expose(), DEFAULT_APPCODE);
        assert_eq!(config.latency, Duration::from_millis(20));
        assert_eq!(
            (config.failure_rate, config.reject_rate, config.timeout_rate),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(config.throttle_per_second, None);
    }

    #[tokio::test]
    async fn a_post_with_a_form_body_is_accepted() {
        let sandbox = sandbox(one_account(5)).await;

        let response = http()
            .post(sandbox.url("/chuangxin/dxjk"))
            .header("Authorization", format!("APPCODE {APPCODE}"))
            .form(&[("content", "【卡池】你好"), ("mobile", "13800138000")])
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["x-ca-market-billing-result"], "1");
        let request_id = headers["x-ca-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(request_id).is_ok());
        assert_eq!(request_id, request_id.to_uppercase());
        let body = body_json(response).await;
        assert_eq!(body["ReturnStatus"], "Success");
        assert_eq!(body["Message"], "ok");
        assert_eq!(body["RemainPoint"], 4);
        assert_eq!(body["SuccessCounts"], 1);
        assert!(body["TaskID"].as_u64().unwrap() > 0);
        let request = &sandbox.received()[0];
        assert_eq!(request.query_content, None);
        assert_eq!(request.content.as_deref(), Some("【卡池】你好"));
    }

    #[tokio::test]
    async fn a_missing_or_malformed_authorization_is_an_invalid_appcode() {
        let sandbox = sandbox(one_account(5)).await;
        let url = sandbox.url("/chuangxin/yytz?content=hi&mobile=13800138000");

        for authorization in [
            None,
            Some(format!("APPCODE  {APPCODE}")),
            Some(format!("appcode {APPCODE}")),
            Some(format!("Bearer {APPCODE}")),
            Some("APPCODE ".to_owned()),
        ] {
            let mut request = http().get(&url);
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 400, "{authorization:?}");
            assert_eq!(
                response.headers()["x-ca-error-message"],
                "Invalid AppCode `not exists`"
            );
            assert!(response.headers().contains_key("x-ca-request-id"));
        }
        assert_eq!(sandbox.remaining(APPCODE), Some(5));
        assert_eq!(sandbox.stats().auth_failures, 5);
    }

    #[tokio::test]
    async fn business_failures_are_faild_and_still_billed() {
        let sandbox = sandbox(one_account(5)).await;

        let response = http()
            .get(sandbox.url("/chuangxin/dxjk?content=%E4%BD%A0%E5%A5%BD"))
            .header("Authorization", format!("APPCODE {APPCODE}"))
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 200);
        let body = body_json(response).await;
        assert_eq!(body["ReturnStatus"], "Faild");
        assert_eq!(body["Message"], "手机号码为空");
        assert_eq!(body["RemainPoint"], 4);
        assert_eq!(body["TaskID"], 0);
        assert_eq!(body["SuccessCounts"], 0);
        assert_eq!(sandbox.remaining(APPCODE), Some(4));
    }

    #[tokio::test]
    async fn quota_is_kept_per_appcode() {
        let sandbox = sandbox(SandboxConfig {
            appcodes: vec![
                SandboxAccount {
                    appcode: Secret::new("first"),
                    quota: 1,
                    product_code: None,
                },
                SandboxAccount {
                    appcode: Secret::new("second"),
                    quota: 0,
                    product_code: None,
                },
            ],
            latency: Duration::ZERO,
            ..SandboxConfig::default()
        })
        .await;
        let url = sandbox.url("/chuangxin/yytz?content=hi&mobile=13800138000");
        let call = |code: &'static str| {
            http()
                .get(&url)
                .header("Authorization", format!("APPCODE {code}"))
                .send()
        };

        assert_eq!(call("first").await.unwrap().status(), 200);
        let exhausted = call("second").await.unwrap();
        assert_eq!(exhausted.status(), 403);
        assert_eq!(exhausted.headers()["x-ca-error-message"], "Quota Exhausted");
        assert_eq!(sandbox.add_quota("second", 2), Some(2));
        assert_eq!(call("second").await.unwrap().status(), 200);

        assert_eq!(sandbox.remaining("first"), Some(0));
        assert_eq!(sandbox.remaining("second"), Some(1));
        assert_eq!(sandbox.remaining("unknown"), None);
        assert_eq!(sandbox.add_quota("unknown", 1), None);
    }

    #[tokio::test]
    async fn the_stats_endpoint_counts_without_naming_appcodes() {
        let sandbox = sandbox(one_account(5)).await;
        let url = sandbox.url("/chuangxin/yytz?content=hi&mobile=13800138000");
        for _ in 0..2 {
            http()
                .get(&url)
                .header("Authorization", format!("APPCODE {APPCODE}"))
                .send()
                .await
                .unwrap();
        }
        http().get(&url).send().await.unwrap();

        let response = http().get(sandbox.url(STATS_PATH)).send().await.unwrap();

        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(!text.contains(APPCODE), "{text}");
        let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(stats["requests"], 3);
        assert_eq!(stats["successes"], 2);
        assert_eq!(stats["auth_failures"], 1);
        assert_eq!(stats["accounts"][0]["account"], "account-0");
        assert_eq!(stats["accounts"][0]["remaining"], 3);
        assert_eq!(stats["accounts"][0]["billed"], 2);
        assert_eq!(sandbox.stats().requests, 3, "the stats call is not counted");
    }

    #[tokio::test]
    async fn shutdown_releases_held_calls_promptly() {
        let sandbox = sandbox(SandboxConfig {
            timeout_rate: 1.0,
            ..one_account(5)
        })
        .await;
        let url = sandbox.url("/chuangxin/yytz?content=hi&mobile=13800138000");
        let held = tokio::spawn(
            http()
                .get(url)
                .header("Authorization", format!("APPCODE {APPCODE}"))
                .send(),
        );
        while sandbox.stats().injected_timeouts == 0 {
            tokio::task::yield_now().await;
        }

        let started = Instant::now();
        sandbox.shutdown().await;

        assert!(started.elapsed() < Duration::from_secs(5));
        let response = held.await.unwrap().unwrap();
        assert_eq!(response.status(), 504);
    }
}
