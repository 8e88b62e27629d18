//! The HTTP client that calls the vendor through the Alibaba Cloud API Marketplace gateway.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::redirect::Policy;

use super::classify::{classify, VendorAnswer};
use super::format::{VendorFormat, VendorMessage};
use super::redact::sanitize_message;
use crate::domain::mobile::{mask_mobile, mask_mobile_numbers};
use crate::domain::Outcome;
use crate::domain::VendorMethod;
use crate::secret::Secret;

/// The body type the vendor's POST samples declare (the body is empty unless a template
/// format puts its fields there).
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=UTF-8";

/// How long a connection may take before the vendor counts as unreachable. It is kept
/// below the total timeout so that a slow connect ends as a connect error (nothing was
/// sent, nothing charged) rather than as a timeout of the whole call (uncertain).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Idle connections are dropped before a gateway is likely to close them: a request
/// written to a connection the server is closing ends uncertain, and charged.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The vendor's bodies are a few hundred bytes; anything beyond this is not an answer
/// worth keeping in memory.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// One call to the vendor: what to send, where, in which format and with which AppCode.
#[derive(Clone, Copy)]
pub struct VendorCall<'a> {
    /// The channel's vendor format: which fields carry the message, and how the answer
    /// says it was accepted.
    pub format: &'a VendorFormat,
    /// The channel's URL, e.g. `https://yytz.market.alicloudapi.com/chuangxin/yytz`.
    pub url: &'a str,
    pub method: VendorMethod,
    pub appcode: &'a Secret,
    /// The 11-digit national number.
    pub mobile: &'a str,
    /// The full text (`kapool`) or the vendor's template id and parameters (`template`).
    /// A message that does not fit the format is not sent (and not charged).
    pub message: VendorMessage<'a>,
}

/// By hand, so that printing a call shows neither the mobile number nor the URL's query.
impl fmt::Debug for VendorCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("VendorCall");
        debug
            .field("format", &self.format.name())
            .field("url", &endpoint_for_logs(self.url))
            .field("method", &self.method);
        match self.message {
            VendorMessage::Text(content) => debug.field("content", &content),
            VendorMessage::Template {
                template_id,
                params,
            } => {
                // A parameter is the client's text and might hold a number.
                let params: Vec<(&str, String)> = params
                    .iter()
                    .map(|(name, value)| (name.as_str(), mask_mobile_numbers(value)))
                    .collect();
                debug
                    .field("template_id", &template_id)
                    .field("params", &params)
            }
        };
        debug
            .field("mobile", &mask_mobile(self.mobile))
            .field("appcode", &self.appcode)
            .finish()
    }
}

/// The vendor's answer, classified, with how long it took and the raw answer.
#[derive(Debug, Clone)]
pub struct VendorReply {
    pub answer: VendorAnswer,
    /// From just before the request was sent until the body was read (or the call failed).
    pub latency: Duration,
    /// The answer as received, for the drop-in proxy to mirror; `None` when there is no
    /// whole answer to mirror (no connection, a timeout, a body that could not be read).
    pub raw: Option<RawResponse>,
}

/// The vendor's answer as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// Only the `X-Ca-*` headers and `Content-Type` (names in lower case): what the
    /// drop-in proxy mirrors. Hop-by-hop and framing headers are the proxy's own.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The HTTP client could not be built (e.g. no TLS backend could be initialised).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the vendor HTTP client")]
pub struct VendorClientError(#[source] reqwest::Error);

/// Calls vendor APIs. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct VendorClient {
    http: reqwest::Client,
}

impl VendorClient {
    /// A client whose calls give up after `timeout` in total (connect, send, read).
    pub fn new(timeout: Duration) -> Result<Self, VendorClientError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(MAX_CONNECT_TIMEOUT.min(timeout / 2))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // A redirect would resend the AppCode somewhere the channel does not name,
            // and the marketplace never redirects a real call: treat it as an error.
            .redirect(Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| VendorClientError(err.without_url()))?;
        Ok(Self { http })
    }

    /// Sends one message through the vendor and classifies the answer. Never fails:
    /// every way a call can end is an [`Outcome`], with whether it was charged.
    #[tracing::instrument(
        skip_all,
        fields(
            method = call.method.as_str(),
            format = call.format.name(),
            endpoint = %endpoint_for_logs(call.url),
            mobile = %mask_mobile(call.mobile),
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            request_id = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        )
    )]
    pub async fn call(&self, call: VendorCall<'_>) -> VendorReply {
        let started = Instant::now();
        let (answer, raw) = match self.request(&call) {
            Ok(request) => self.send(request, &call).await,
            Err(reason) => (VendorAnswer::unreachable(&reason), None),
        };
        let latency = started.elapsed();
        record_on_span(&answer, latency);
        log_answer(&answer);
        VendorReply {
            answer,
            latency,
            raw,
        }
    }

    /// The request: the format's fields in the query or the form body, and the AppCode
    /// header. A POST always declares a form body, empty when the fields are in the
    /// query, as the vendors' samples send it.
    fn request(&self, call: &VendorCall<'_>) -> Result<reqwest::RequestBuilder, String> {
        let mut authorization =
            HeaderValue::from_str(&format!("APPCODE {}", call.appcode.expose())).map_err(|_| {
                "the AppCode contains characters that cannot be sent in a header".to_owned()
            })?;
        // Marks the value so that the HTTP stack never prints it.
        authorization.set_sensitive(true);
        let fields = call
            .format
            .request(call.method, call.mobile, call.message)
            .map_err(|err| format!("the call was not sent: {err}"))?;
        let builder = match call.method {
            VendorMethod::Get => self.http.get(call.url),
            VendorMethod::Post => self
                .http
                .post(call.url)
                .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
                .body(form_body(fields.form.as_deref().unwrap_or_default())),
        };
        let builder = builder.header(AUTHORIZATION, authorization);
        if fields.query.is_empty() {
            Ok(builder)
        } else {
            Ok(builder.query(&fields.query))
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        call: &VendorCall<'_>,
    ) -> (VendorAnswer, Option<RawResponse>) {
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return (transport_failure(err, call), None),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        match read_body(response).await {
            Ok(body) => {
                let answer = classify(call.format, status, &headers, &body);
                let raw = RawResponse {
                    status,
                    headers: mirrored_headers(&headers),
                    body,
                };
                (answer, Some(raw))
            }
            Err(err) => {
                let detail = describe(err, call);
                let headers_only = classify(call.format, status, &headers, b"");
                if (200..300).contains(&status) {
                    // The vendor took the call and its verdict was in the lost body: the
                    // message may have gone out, so it is charged and reconciled later.
                    let answer = VendorAnswer {
                        message: sanitize_message(&format!(
                            "the answer's body could not be read: {detail}"
                        )),
                        outcome: Outcome::Uncertain,
                        charged: true,
                        ..headers_only
                    };
                    (answer, None)
                } else {
                    // A gateway refusal is decided by its status and headers; its body
                    // is empty anyway, and the marketplace bills no refusal.
                    let raw = RawResponse {
                        status,
                        headers: mirrored_headers(&headers),
                        body: Vec::new(),
                    };
                    (headers_only, Some(raw))
                }
            }
        }
    }
}

/// `application/x-www-form-urlencoded` text of `fields` (empty for none).
fn form_body(fields: &[(String, String)]) -> Vec<u8> {
    if fields.is_empty() {
        return Vec::new();
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
        .into_bytes()
}

/// A call that produced no answer. Whether the request was written decides the charge:
/// a failed connect sent nothing; after that, the vendor may have sent the message.
fn transport_failure(err: reqwest::Error, call: &VendorCall<'_>) -> VendorAnswer {
    let never_sent = err.is_builder() || err.is_connect();
    let timed_out = err.is_timeout();
    let detail = describe(err, call);
    if never_sent {
        VendorAnswer::unreachable(&format!("could not reach the vendor: {detail}"))
    } else if timed_out {
        VendorAnswer::uncertain(&format!("no answer within the timeout: {detail}"))
    } else {
        VendorAnswer::uncertain(&format!(
            "the connection failed after the request was sent: {detail}"
        ))
    }
}

/// The error and its causes on one line. reqwest errors carry the URL, whose query holds
/// the mobile number, so it is stripped; the AppCode is scrubbed in case a lower layer
/// ever echoes a header. Mobile numbers are masked later, with the rest of the message.
fn describe(err: reqwest::Error, call: &VendorCall<'_>) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let appcode = call.appcode.expose();
    if !appcode.is_empty() {
        text = text.replace(appcode, "[redacted]");
    }
    text
}

/// Reads the body, keeping at most [`MAX_BODY_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY_BYTES {
            break;
        }
    }
    Ok(body)
}

fn mirrored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ca-") || *name == CONTENT_TYPE)
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The URL without its query, user info or fragment: the configured URL might carry an
/// AppCode in its query (the gateway allows that), and the call adds the mobile there.
fn endpoint_for_logs(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            match url.port() {
                Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
                None => format!("{}://{host}{}", url.scheme(), url.path()),
            }
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

fn record_on_span(answer: &VendorAnswer, latency: Duration) {
    let span = tracing::Span::current();
    span.record("outcome", answer.outcome.as_str());
    span.record(
        "latency_ms",
        u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
    );
    if let Some(status) = answer.http_status {
        span.record("status", status);
    }
    if let Some(request_id) = &answer.request_id {
        span.record("request_id", request_id.as_str());
    }
}

fn log_answer(answer: &VendorAnswer) {
    let message = answer.message.as_deref().unwrap_or("");
    match answer.outcome {
        Outcome::Sent => tracing::info!("the vendor accepted the message"),
        Outcome::VendorRejected => {
            tracing::info!(
                message,
                charged = answer.charged,
                "the vendor rejected the message"
            )
        }
        Outcome::Uncertain => {
            tracing::warn!(
                message,
                "no answer from the vendor; the send is charged and flagged"
            )
        }
        _ => tracing::warn!(message, "the vendor refused the call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::format::{ParamsIn, TemplateFormat};
    use crate::upstream::sandbox::{self, SandboxConfig, SandboxHandle};
    use std::collections::BTreeMap;
    use tokio::net::TcpListener;

    const APPCODE: &str = "83359fd73fe94948385f570e3c139105";
    const MOBILE: &str = "13800138000";
    const SMS: &str = "【卡池】你的验证码是：123456，3分钟内有效！";

    fn config(quota: u64) -> SandboxConfig {
        SandboxConfig::one_account(Secret::new(APPCODE), quota)
    }

    async fn sandbox(config: SandboxConfig) -> SandboxHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        sandbox::spawn(listener, config).await
    }

    fn client() -> VendorClient {
        VendorClient::new(Duration::from_secs(5)).unwrap()
    }

    async fn send(
        client: &VendorClient,
        url: &str,
        method: VendorMethod,
        content: &str,
        appcode: &Secret,
    ) -> VendorReply {
        client
            .call(VendorCall {
                format: &VendorFormat::Kapool,
                url,
                method,
                appcode,
                mobile: MOBILE,
                message: VendorMessage::Text(content),
            })
            .await
    }

    #[test]
    fn vendor_methods_parse_in_any_case() {
        for (text, method) in [
            ("GET", VendorMethod::Get),
            ("get", VendorMethod::Get),
            ("POST", VendorMethod::Post),
            ("Post", VendorMethod::Post),
        ] {
            assert_eq!(text.parse::<VendorMethod>(), Ok(method));
            let json = format!("\"{text}\"");
            assert_eq!(serde_json::from_str::<VendorMethod>(&json).unwrap(), method);
        }
        assert!("PUT".parse::<VendorMethod>().is_err());
        assert!(serde_json::from_str::<VendorMethod>("\"DELETE\"").is_err());
        assert_eq!(
            serde_json::to_string(&VendorMethod::Post).unwrap(),
            "\"POST\""
        );
    }

    #[test]
    fn a_printed_call_shows_no_mobile_number_or_appcode() {
        let appcode = Secret::new(APPCODE);
        let call = VendorCall {
            format: &VendorFormat::Kapool,
            url: "https://dxyzm.market.alicloudapi.com/chuangxin/dxjk?mobile=13800138000",
            method: VendorMethod::Post,
            appcode: &appcode,
            mobile: MOBILE,
            message: VendorMessage::Text(SMS),
        };
        let printed = format!("{call:?}");
        assert!(
            !printed.contains(MOBILE) && !printed.contains(APPCODE),
            "{printed}"
        );
        assert!(printed.contains("138****8000"));
    }

    #[test]
    fn a_printed_template_call_shows_no_mobile_number_or_appcode() {
        let appcode = Secret::new(APPCODE);
        let format = VendorFormat::Template(TemplateFormat::example());
        let params = BTreeMap::from([("phone".to_owned(), MOBILE.to_owned())]);
        let call = VendorCall {
            format: &format,
            url: "https://gyytz.market.alicloudapi.com/sms/smsSend",
            method: VendorMethod::Post,
            appcode: &appcode,
            mobile: MOBILE,
            message: VendorMessage::Template {
                template_id: "T-1",
                params: &params,
            },
        };
        let printed = format!("{call:?}");
        assert!(
            !printed.contains(MOBILE) && !printed.contains(APPCODE),
            "{printed}"
        );
        assert!(printed.contains("template") && printed.contains("T-1"));
    }

    #[test]
    fn logged_endpoints_carry_no_query() {
        assert_eq!(
            endpoint_for_logs("https://yytz.market.alicloudapi.com/chuangxin/yytz?appcode=secret"),
            "https://yytz.market.alicloudapi.com/chuangxin/yytz"
        );
        assert_eq!(
            endpoint_for_logs("http://user:pw@127.0.0.1:9000/x?mobile=13800138000"),
            "http://127.0.0.1:9000/x"
        );
        assert_eq!(endpoint_for_logs("not a url"), "<invalid url>");
    }

    #[tokio::test]
    async fn a_post_reaches_the_vendor_with_the_appcode_and_query_parameters() {
        let sandbox = sandbox(config(10)).await;
        let appcode = Secret::new(APPCODE);
        let url = sandbox.url("/chuangxin/dxjk");

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(reply.answer.outcome, Outcome::Sent);
        let received = sandbox.received();
        assert_eq!(received.len(), 1);
        let request = &received[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/chuangxin/dxjk");
        assert_eq!(
            request.authorization.as_ref().map(Secret::expose),
            Some(format!("APPCODE {APPCODE}").as_str())
        );
        assert_eq!(request.query_content.as_deref(), Some(SMS));
        assert_eq!(request.query_mobile.as_deref(), Some(MOBILE));
        assert_eq!(request.content_type.as_deref(), Some(FORM_CONTENT_TYPE));
        assert_eq!(request.body_len, 0);
    }

    #[tokio::test]
    async fn a_get_carries_the_parameters_in_the_query() {
        let sandbox = sandbox(config(10)).await;
        let appcode = Secret::new(APPCODE);
        let content = "您好, 您的快递已送达小区门口 & 请前来签收。100%+";

        let url = sandbox.url("/chuangxin/yytz");
        let reply = send(&client(), &url, VendorMethod::Get, content, &appcode).await;

        assert_eq!(reply.answer.outcome, Outcome::Sent);
        let request = &sandbox.received()[0];
        assert_eq!(request.method, "GET");
        assert_eq!(request.query_content.as_deref(), Some(content));
        assert_eq!(request.query_mobile.as_deref(), Some(MOBILE));
        assert_eq!(request.content_type, None);
    }

    #[tokio::test]
    async fn a_successful_send_is_sent_and_charged_with_the_vendor_fields() {
        let sandbox = sandbox(config(3)).await;
        let appcode = Secret::new(APPCODE);
        let client = client();
        let url = sandbox.url("/chuangxin/dxjk");

        let first = send(&client, &url, VendorMethod::Post, SMS, &appcode).await;
        let second = send(&client, &url, VendorMethod::Post, SMS, &appcode).await;

        let answer = &first.answer;
        assert_eq!((answer.outcome, answer.charged), (Outcome::Sent, true));
        assert_eq!(answer.http_status, Some(200));
        assert_eq!(answer.remain_point, Some(2));
        assert_eq!(second.answer.remain_point, Some(1));
        let first_task: u64 = answer.task_id.as_deref().unwrap().parse().unwrap();
        let second_task: u64 = second.answer.task_id.as_deref().unwrap().parse().unwrap();
        assert!(second_task > first_task);
        let request_id = answer.request_id.as_deref().unwrap();
        assert_eq!(request_id.len(), 36);
        assert_eq!(request_id, request_id.to_uppercase());
        let raw = first.raw.as_ref().unwrap();
        assert_eq!(raw.status, 200);
        assert!(raw
            .headers
            .contains(&("x-ca-market-billing-result".to_owned(), "1".to_owned())));
        assert!(raw
            .headers
            .iter()
            .any(|(name, _)| name == "x-ca-request-id"));
        assert!(raw.headers.iter().any(|(name, _)| name == "content-type"));
        assert!(!raw.headers.iter().any(|(name, _)| name == "content-length"));
        assert_eq!(sandbox.remaining(APPCODE), Some(1));
        assert_eq!(sandbox.stats().successes, 2);
    }

    #[tokio::test]
    async fn the_vendor_quota_is_exhausted_after_n_calls() {
        let sandbox = sandbox(config(2)).await;
        let appcode = Secret::new(APPCODE);
        let client = client();
        let url = sandbox.url("/chuangxin/dxjk");

        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let reply = send(&client, &url, VendorMethod::Post, SMS, &appcode).await;
            outcomes.push((reply.answer.outcome, reply.answer.charged));
        }

        assert_eq!(
            outcomes,
            [
                (Outcome::Sent, true),
                (Outcome::Sent, true),
                (Outcome::VendorQuotaExhausted, false)
            ]
        );
        assert_eq!(sandbox.remaining(APPCODE), Some(0));
        sandbox.add_quota(APPCODE, 1);
        let after = send(&client, &url, VendorMethod::Post, SMS, &appcode).await;
        assert_eq!(after.answer.outcome, Outcome::Sent);
    }

    #[tokio::test]
    async fn an_unknown_appcode_is_an_auth_failure() {
        let sandbox = sandbox(config(5)).await;
        let wrong = Secret::new("0000000000000000000000000000dead");
        let url = sandbox.url("/chuangxin/dxjk");

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &wrong).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::AuthFailed, false)
        );
        assert_eq!(reply.answer.http_status, Some(400));
        assert_eq!(
            reply.answer.message.as_deref(),
            Some("Invalid AppCode `not exists`")
        );
        assert_eq!(sandbox.remaining(APPCODE), Some(5));
    }

    #[tokio::test]
    async fn calls_above_the_flow_limit_are_throttled() {
        let sandbox = sandbox(SandboxConfig {
            throttle_per_second: Some(1),
            ..config(5)
        })
        .await;
        let appcode = Secret::new(APPCODE);
        let client = client();
        let url = sandbox.url("/chuangxin/dxjk");

        let first = send(&client, &url, VendorMethod::Post, SMS, &appcode).await;
        let second = send(&client, &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(first.answer.outcome, Outcome::Sent);
        assert_eq!(
            (second.answer.outcome, second.answer.charged),
            (Outcome::Throttled, false)
        );
        assert_eq!(second.answer.http_status, Some(403));
        assert_eq!(sandbox.remaining(APPCODE), Some(4));
    }

    #[tokio::test]
    async fn an_injected_gateway_failure_is_an_upstream_error() {
        let sandbox = sandbox(SandboxConfig {
            failure_rate: 1.0,
            ..config(5)
        })
        .await;
        let appcode = Secret::new(APPCODE);
        let url = sandbox.url("/chuangxin/dxjk");

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::UpstreamError, false)
        );
        assert_eq!(reply.answer.http_status, Some(500));
        assert_eq!(reply.answer.message.as_deref(), Some("Internal Error"));
        assert_eq!(reply.raw.unwrap().status, 500);
        assert_eq!(sandbox.remaining(APPCODE), Some(5));
    }

    #[tokio::test]
    async fn a_vendor_that_never_answers_is_uncertain_and_charged() {
        let sandbox = sandbox(SandboxConfig {
            timeout_rate: 1.0,
            ..config(5)
        })
        .await;
        let appcode = Secret::new(APPCODE);
        let impatient = VendorClient::new(Duration::from_millis(300)).unwrap();
        let url = sandbox.url("/chuangxin/dxjk");

        let reply = send(&impatient, &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::Uncertain, true)
        );
        assert_eq!(reply.answer.http_status, None);
        assert!(reply.raw.is_none());
        assert!(reply.latency >= Duration::from_millis(300));
        let message = reply.answer.message.unwrap();
        assert!(message.contains("timeout"), "{message}");
        assert!(!message.contains(MOBILE) && !message.contains(APPCODE));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_upstream_error_and_not_charged() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let appcode = Secret::new(APPCODE);
        let url = format!("http://{addr}/chuangxin/dxjk");

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::UpstreamError, false)
        );
        assert_eq!(reply.answer.http_status, None);
        assert!(reply.raw.is_none());
        let message = reply.answer.message.unwrap();
        assert!(message.contains("could not reach the vendor"), "{message}");
        assert!(!message.contains(MOBILE), "{message}");
        assert!(!message.contains("138****8000") && !message.contains("mobile="));
        assert!(!message.contains(APPCODE));
    }

    #[tokio::test]
    async fn an_invalid_url_is_an_upstream_error_and_not_charged() {
        let appcode = Secret::new(APPCODE);

        let reply = send(&client(), "not a url", VendorMethod::Get, SMS, &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::UpstreamError, false)
        );
    }

    #[tokio::test]
    async fn an_appcode_that_cannot_be_a_header_is_never_sent() {
        let appcode = Secret::new("bad\ncode");

        let reply = send(
            &client(),
            "http://127.0.0.1:9/",
            VendorMethod::Get,
            SMS,
            &appcode,
        )
        .await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::UpstreamError, false)
        );
        assert!(!reply.answer.message.unwrap().contains("bad"));
    }

    /// A vendor that reads the whole request, writes `answer` (possibly nothing, or a
    /// cut-off answer) and closes the connection.
    async fn broken_vendor(answer: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        format!("http://{addr}/chuangxin/dxjk")
    }

    #[tokio::test]
    async fn a_connection_lost_after_the_request_is_uncertain_and_charged() {
        let url = broken_vendor("").await;
        let appcode = Secret::new(APPCODE);

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::Uncertain, true)
        );
        assert!(reply.raw.is_none());
    }

    #[tokio::test]
    async fn a_200_whose_body_is_cut_off_is_uncertain_and_charged() {
        let url = broken_vendor(
            "HTTP/1.1 200 OK\r\nX-Ca-Request-Id: REQ-1\r\nContent-Length: 100\r\n\r\n{\"Return",
        )
        .await;
        let appcode = Secret::new(APPCODE);

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &appcode).await;

        let answer = &reply.answer;
        assert_eq!((answer.outcome, answer.charged), (Outcome::Uncertain, true));
        assert_eq!(answer.http_status, Some(200));
        assert_eq!(answer.request_id.as_deref(), Some("REQ-1"));
        assert!(reply.raw.is_none(), "a cut-off answer is not mirrored");
    }

    #[tokio::test]
    async fn a_refusal_whose_body_is_cut_off_is_still_classified_by_its_headers() {
        let url = broken_vendor(
            "HTTP/1.1 403 Forbidden\r\nX-Ca-Error-Message: Quota Exhausted\r\nContent-Length: 10\r\n\r\nab",
        )
        .await;
        let appcode = Secret::new(APPCODE);

        let reply = send(&client(), &url, VendorMethod::Post, SMS, &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::VendorQuotaExhausted, false)
        );
        assert_eq!(reply.raw.unwrap().status, 403);
    }

    #[tokio::test]
    async fn a_faild_answer_is_vendor_rejected_and_charged() {
        let sandbox = sandbox(config(5)).await;
        let appcode = Secret::new(APPCODE);
        let url = sandbox.url("/chuangxin/dxjk");

        // No 【signature】: the SMS vendor refuses it, and still bills it.
        let reply = send(
            &client(),
            &url,
            VendorMethod::Post,
            "你的验证码是：1234",
            &appcode,
        )
        .await;

        let answer = &reply.answer;
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::VendorRejected, true)
        );
        assert_eq!(answer.message.as_deref(), Some("需要签名"));
        assert_eq!(answer.remain_point, Some(4));
        assert_eq!(answer.task_id, None);
        assert_eq!(sandbox.remaining(APPCODE), Some(4));
    }

    #[tokio::test]
    async fn an_injected_rejection_is_vendor_rejected_and_charged() {
        let sandbox = sandbox(SandboxConfig {
            reject_rate: 1.0,
            ..config(5)
        })
        .await;
        let appcode = Secret::new(APPCODE);
        let url = sandbox.url("/chuangxin/yytz");

        let reply = send(&client(), &url, VendorMethod::Get, "您好", &appcode).await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::VendorRejected, true)
        );
        assert_eq!(sandbox.stats().rejections, 1);
    }

    fn template_call<'a>(
        format: &'a VendorFormat,
        url: &'a str,
        appcode: &'a Secret,
        params: &'a BTreeMap<String, String>,
    ) -> VendorCall<'a> {
        VendorCall {
            format,
            url,
            method: VendorMethod::Post,
            appcode,
            mobile: MOBILE,
            message: VendorMessage::Template {
                template_id: "908e94ccf08b4476ba6c876d13f084ad",
                params,
            },
        }
    }

    #[tokio::test]
    async fn a_form_template_call_carries_its_fields_in_the_body_only() {
        let sandbox = sandbox(config(5)).await;
        let appcode = Secret::new(APPCODE);
        let format = VendorFormat::Template(TemplateFormat {
            params_in: ParamsIn::Form,
            ..TemplateFormat::example()
        });
        let params = BTreeMap::from([("code".to_owned(), "1234".to_owned())]);
        let url = sandbox.url("/sms/smsSend");

        let reply = client()
            .call(template_call(&format, &url, &appcode, &params))
            .await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::Sent, true)
        );
        assert_eq!(reply.answer.remain_point, Some(4));
        let request = &sandbox.received()[0];
        assert!(request.query.is_empty(), "{request:?}");
        assert_eq!(request.content_type.as_deref(), Some(FORM_CONTENT_TYPE));
        assert_eq!(request.form_value("mobile"), Some(MOBILE));
        assert_eq!(request.form_value("param"), Some("**code**:1234"));
    }

    #[tokio::test]
    async fn a_message_that_does_not_fit_the_format_is_never_sent_or_charged() {
        let sandbox = sandbox(config(5)).await;
        let appcode = Secret::new(APPCODE);
        let format = VendorFormat::Template(TemplateFormat::example());
        let url = sandbox.url("/sms/smsSend");

        let reply = client()
            .call(VendorCall {
                format: &format,
                url: &url,
                method: VendorMethod::Post,
                appcode: &appcode,
                mobile: MOBILE,
                message: VendorMessage::Text(SMS),
            })
            .await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::UpstreamError, false)
        );
        let message = reply.answer.message.unwrap();
        assert!(message.contains("template id"), "{message}");
        assert!(sandbox.received().is_empty());
        assert_eq!(sandbox.remaining(APPCODE), Some(5));
    }

    #[tokio::test]
    async fn a_pairs_value_the_vendor_cannot_read_is_never_sent_or_charged() {
        let sandbox = sandbox(config(5)).await;
        let appcode = Secret::new(APPCODE);
        let format = VendorFormat::Template(TemplateFormat::example());
        let params = BTreeMap::from([("time".to_owned(), "10:30".to_owned())]);
        let url = sandbox.url("/sms/smsSend");

        let reply = client()
            .call(template_call(&format, &url, &appcode, &params))
            .await;

        assert_eq!(
            (reply.answer.outcome, reply.answer.charged),
            (Outcome::UpstreamError, false)
        );
        assert!(reply.answer.message.unwrap().contains("\"time\""));
        assert!(sandbox.received().is_empty());
    }
}
