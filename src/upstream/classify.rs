//! The answer table of SPEC §3: what a vendor answer means for the ledger.

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value};

use super::redact::sanitize_message;
use crate::domain::Outcome;

/// The gateway's request id; support finds a call by it.
pub const REQUEST_ID_HEADER: &str = "x-ca-request-id";
/// The gateway's own error text (`Quota Exhausted`, `Throttled by APP Flow Control`, …).
pub const ERROR_MESSAGE_HEADER: &str = "x-ca-error-message";
/// `1` when the marketplace billed the call, `0` when it did not.
pub const BILLING_RESULT_HEADER: &str = "x-ca-market-billing-result";

/// One vendor answer, classified, with what the ledger records about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorAnswer {
    pub outcome: Outcome,
    /// Whether the vendor's quota was (or may have been) spent on this call.
    pub charged: bool,
    /// The HTTP status, when an answer came back at all.
    pub http_status: Option<u16>,
    /// `X-Ca-Request-Id`.
    pub request_id: Option<String>,
    /// The body's `TaskID` (a number or a string; `0` means no task and is dropped).
    pub task_id: Option<String>,
    /// The body's `RemainPoint`: the vendor's own count of what is left.
    pub remain_point: Option<i64>,
    /// `X-Ca-Error-Message`, else the body's `Message`; mobile numbers masked, at most
    /// 200 characters.
    pub message: Option<String>,
}

impl VendorAnswer {
    /// No connection could be made (refused, DNS, TLS, connect timeout), or the request
    /// could not even be built: the request was never written, so nothing was spent.
    pub fn unreachable(message: &str) -> Self {
        Self::without_response(Outcome::UpstreamError, false, message)
    }

    /// The request was (or may have been) written but no full answer came back. The
    /// vendor may have sent the message and billed it, so the unit is charged and the
    /// send flagged for reconciliation.
    pub fn uncertain(message: &str) -> Self {
        Self::without_response(Outcome::Uncertain, true, message)
    }

    fn without_response(outcome: Outcome, charged: bool, message: &str) -> Self {
        Self {
            outcome,
            charged,
            http_status: None,
            request_id: None,
            task_id: None,
            remain_point: None,
            message: sanitize_message(message),
        }
    }
}

/// Classifies one vendor answer by SPEC §3's table.
///
/// Beyond the table:
/// - Every 2xx is read like a 200: the gateway passed the call to the vendor's backend,
///   which is the call the marketplace bills.
/// - 1xx and 3xx are `upstream_error`, not charged. The client does not follow redirects
///   (a redirect would carry the AppCode elsewhere), and the marketplace bills only
///   answers from the backend, so a redirect means the message was not sent.
/// - A 403 whose message is none of the known ones (`User Arrears`, `Expiry of
///   Authorization`, …) and every other 4xx/5xx, with or without `X-Ca-Error-Message`,
///   is `upstream_error`, not charged: the marketplace bills only normal answers.
/// - Messages are compared ignoring ASCII case and surrounding spaces, since gateways
///   and wrappers differ in casing. `ReturnStatus` is read the same way (`success`).
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> VendorAnswer {
    let gateway_message = header_text(headers, ERROR_MESSAGE_HEADER);
    let fields = BodyFields::parse(body);
    let (outcome, charged) = match status {
        200..=299 => {
            let outcome = if fields.is_success() {
                Outcome::Sent
            } else {
                Outcome::VendorRejected
            };
            // Billing-Result `0` says the marketplace did not bill the call; absent or
            // any other value leaves the table's default (a 200 is billed).
            let billed = header_text(headers, BILLING_RESULT_HEADER).as_deref() != Some("0");
            (outcome, billed)
        }
        400 | 403 => (
            classify_gateway_refusal(status, gateway_message.as_deref()),
            false,
        ),
        _ => (Outcome::UpstreamError, false),
    };
    let message = gateway_message
        .as_deref()
        .or(fields.message.as_deref())
        .and_then(sanitize_message);
    VendorAnswer {
        outcome,
        charged,
        http_status: Some(status),
        request_id: header_text(headers, REQUEST_ID_HEADER).filter(|id| !id.is_empty()),
        task_id: fields.task_id,
        remain_point: fields.remain_point,
        message,
    }
}

/// A 400 or 403 from the gateway, told apart by its `X-Ca-Error-Message`.
fn classify_gateway_refusal(status: u16, message: Option<&str>) -> Outcome {
    let Some(message) = message else {
        return Outcome::UpstreamError;
    };
    let lower = message.trim().to_ascii_lowercase();
    match status {
        // `Invalid AppCode `not exists`` is the marketplace's answer to a wrong AppCode.
        400 if lower.starts_with("invalid appcode") => Outcome::AuthFailed,
        // Both `Quota Exhausted` and `Api Market Subscription quota exhausted` are sent
        // in practice; `Quota Expired` means the package's term ran out.
        403 if lower.contains("quota exhausted") || lower == "quota expired" => {
            Outcome::VendorQuotaExhausted
        }
        403 if lower.starts_with("throttled by") => Outcome::Throttled,
        403 if lower == "unauthorized" => Outcome::AuthFailed,
        _ => Outcome::UpstreamError,
    }
}

/// A header's value as text. Values that are not UTF-8 are read lossily rather than
/// dropped, so the request id and message survive odd encodings.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
}

/// The fields of the vendor's JSON body that tollgate records. Keys are matched
/// ignoring case: deployments send both `ReturnStatus` and `returnstatus`.
#[derive(Debug, Default)]
struct BodyFields {
    return_status: Option<String>,
    message: Option<String>,
    task_id: Option<String>,
    remain_point: Option<i64>,
}

impl BodyFields {
    /// Anything that is not a JSON object yields no fields, which classifies a 200 as a
    /// rejection: only an explicit `Success` counts as sent.
    fn parse(body: &[u8]) -> Self {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        Self {
            return_status: field(&object, "returnstatus").and_then(text),
            message: field(&object, "message").and_then(text),
            task_id: field(&object, "taskid")
                .and_then(text)
                .filter(|id| id != "0"),
            remain_point: field(&object, "remainpoint").and_then(integer),
        }
    }

    fn is_success(&self) -> bool {
        self.return_status
            .as_deref()
            .is_some_and(|status| status.trim().eq_ignore_ascii_case("success"))
    }
}

/// The value under `lowercase_key`, whatever the key's case in the body.
fn field<'a>(object: &'a Map<String, Value>, lowercase_key: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(lowercase_key))
        .map(|(_, value)| value)
}

/// Strings as they are, numbers and booleans as written; empty strings count as absent.
fn text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// An integer given as a JSON number or as a string of digits.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SUCCESS: &str = r#"{"ReturnStatus":"Success","Message":"ok","RemainPoint":420842,"TaskID":18424321,"SuccessCounts":1}"#;
    const FAILD: &str = r#"{"ReturnStatus":"Faild","Message":"需要签名","RemainPoint":419,"TaskID":0,"SuccessCounts":0}"#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn gateway_error(status: u16, message: &str) -> VendorAnswer {
        classify(
            status,
            &headers(&[
                ("X-Ca-Request-Id", "E5D22290-AAAA-BBBB-CCCC-123456789ABC"),
                ("X-Ca-Error-Message", message),
            ]),
            b"",
        )
    }

    #[test]
    fn a_200_with_return_status_success_is_sent_and_charged() {
        let answer = classify(
            200,
            &headers(&[
                ("X-Ca-Request-Id", "E5D22290-AAAA-BBBB-CCCC-123456789ABC"),
                ("X-Ca-Market-Billing-Result", "1"),
            ]),
            SUCCESS.as_bytes(),
        );
        assert_eq!(
            answer,
            VendorAnswer {
                outcome: Outcome::Sent,
                charged: true,
                http_status: Some(200),
                request_id: Some("E5D22290-AAAA-BBBB-CCCC-123456789ABC".into()),
                task_id: Some("18424321".into()),
                remain_point: Some(420842),
                message: Some("ok".into()),
            }
        );
    }

    #[test]
    fn a_200_with_faild_is_rejected_and_charged() {
        let answer = classify(200, &HeaderMap::new(), FAILD.as_bytes());
        assert_eq!(answer.outcome, Outcome::VendorRejected);
        assert!(answer.charged);
        assert_eq!(answer.message.as_deref(), Some("需要签名"));
        assert_eq!(answer.remain_point, Some(419));
        assert_eq!(answer.task_id, None, "TaskID 0 names no task");
    }

    #[test]
    fn a_200_whose_body_is_not_json_is_rejected_and_charged() {
        let answer = classify(200, &HeaderMap::new(), b"<html>ok</html>");
        assert_eq!(answer.outcome, Outcome::VendorRejected);
        assert!(answer.charged);
        assert_eq!(answer.message, None);
        let empty = classify(200, &HeaderMap::new(), b"");
        assert_eq!(empty.outcome, Outcome::VendorRejected);
    }

    #[test]
    fn a_200_without_return_status_is_rejected() {
        let answer = classify(200, &HeaderMap::new(), br#"{"code":"0","msg":"ok"}"#);
        assert_eq!(answer.outcome, Outcome::VendorRejected);
        assert!(answer.charged);
    }

    #[test]
    fn body_keys_are_matched_ignoring_case() {
        let body = r#"{"returnstatus":"Success","message":"ok","remainpoint":"7","taskid":"T-99"}"#;
        let answer = classify(200, &HeaderMap::new(), body.as_bytes());
        assert_eq!(answer.outcome, Outcome::Sent);
        assert_eq!(answer.task_id.as_deref(), Some("T-99"));
        assert_eq!(answer.remain_point, Some(7));
        assert_eq!(answer.message.as_deref(), Some("ok"));
        let shouting = r#"{"RETURNSTATUS":"success","TASKID":5}"#;
        let answer = classify(200, &HeaderMap::new(), shouting.as_bytes());
        assert_eq!(answer.outcome, Outcome::Sent);
        assert_eq!(answer.task_id.as_deref(), Some("5"));
    }

    #[test]
    fn billing_result_zero_keeps_the_outcome_but_is_not_charged() {
        let free = headers(&[("X-Ca-Market-Billing-Result", "0")]);
        let sent = classify(200, &free, SUCCESS.as_bytes());
        assert_eq!((sent.outcome, sent.charged), (Outcome::Sent, false));
        let rejected = classify(200, &free, FAILD.as_bytes());
        assert_eq!(
            (rejected.outcome, rejected.charged),
            (Outcome::VendorRejected, false)
        );
    }

    #[test]
    fn quota_exhausted_is_vendor_quota_exhausted_and_free() {
        let answer = gateway_error(403, "Quota Exhausted");
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::VendorQuotaExhausted, false)
        );
        assert_eq!(answer.message.as_deref(), Some("Quota Exhausted"));
        assert_eq!(
            answer.request_id.as_deref(),
            Some("E5D22290-AAAA-BBBB-CCCC-123456789ABC")
        );
    }

    #[test]
    fn the_marketplace_subscription_quota_string_is_also_exhausted() {
        let answer = gateway_error(403, "Api Market Subscription quota exhausted");
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::VendorQuotaExhausted, false)
        );
    }

    #[test]
    fn quota_expired_is_vendor_quota_exhausted() {
        let answer = gateway_error(403, "Quota Expired");
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::VendorQuotaExhausted, false)
        );
    }

    #[test]
    fn throttling_is_a_403_not_a_429() {
        for message in [
            "Throttled by APP Flow Control",
            "Throttled by USER Flow Control",
            "Throttled by API Flow Control",
        ] {
            let answer = gateway_error(403, message);
            assert_eq!(
                (answer.outcome, answer.charged),
                (Outcome::Throttled, false)
            );
        }
    }

    #[test]
    fn an_invalid_appcode_is_a_400_auth_failure() {
        let answer = gateway_error(400, "Invalid AppCode `not exists`");
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::AuthFailed, false)
        );
    }

    #[test]
    fn unauthorized_is_an_auth_failure() {
        let answer = gateway_error(403, "Unauthorized");
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::AuthFailed, false)
        );
    }

    #[test]
    fn other_errors_with_a_gateway_message_are_upstream_errors() {
        for (status, message) in [
            (400, "Invalid Url"),
            (403, "User Arrears"),
            (404, "API Not Found"),
            (500, "Internal Error"),
            (503, "Service Unavailable"),
            (504, "Async Service"),
        ] {
            let answer = gateway_error(status, message);
            assert_eq!(
                (answer.outcome, answer.charged),
                (Outcome::UpstreamError, false),
                "{status} {message}"
            );
            assert_eq!(answer.message.as_deref(), Some(message));
            assert_eq!(answer.http_status, Some(status));
        }
    }

    #[test]
    fn errors_without_a_gateway_message_are_upstream_errors() {
        for status in [400, 403, 429, 500, 502] {
            let answer = classify(status, &HeaderMap::new(), b"oops");
            assert_eq!(
                (answer.outcome, answer.charged),
                (Outcome::UpstreamError, false),
                "{status}"
            );
        }
    }

    #[test]
    fn a_quota_message_on_a_500_is_not_mistaken_for_exhaustion() {
        let answer = gateway_error(500, "Quota Exhausted");
        assert_eq!(answer.outcome, Outcome::UpstreamError);
    }

    #[test]
    fn redirects_and_informational_answers_are_upstream_errors() {
        for status in [101, 301, 302, 304] {
            let answer = classify(status, &HeaderMap::new(), SUCCESS.as_bytes());
            assert_eq!(
                (answer.outcome, answer.charged),
                (Outcome::UpstreamError, false),
                "{status}"
            );
        }
    }

    #[test]
    fn other_2xx_answers_are_read_like_a_200() {
        let answer = classify(201, &HeaderMap::new(), SUCCESS.as_bytes());
        assert_eq!((answer.outcome, answer.charged), (Outcome::Sent, true));
    }

    #[test]
    fn the_gateway_message_wins_over_the_body_message() {
        let answer = classify(
            500,
            &headers(&[("X-Ca-Error-Message", "Internal Error")]),
            br#"{"Message":"backend said something"}"#,
        );
        assert_eq!(answer.message.as_deref(), Some("Internal Error"));
    }

    #[test]
    fn mobile_numbers_in_messages_are_masked_and_long_messages_cut() {
        let body = format!(
            r#"{{"ReturnStatus":"Faild","Message":"号码13800138000已加入黑名单{}"}}"#,
            "x".repeat(300)
        );
        let answer = classify(200, &HeaderMap::new(), body.as_bytes());
        let message = answer.message.unwrap();
        assert!(message.starts_with("号码138****8000已加入黑名单"));
        assert!(!message.contains("13800138000"));
        assert_eq!(message.chars().count(), 200);
    }
}
