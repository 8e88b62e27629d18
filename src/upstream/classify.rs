//! The answer table of SPEC §3: what a vendor answer means for the ledger.

use axum::http::HeaderMap;
use serde::Serialize;

use super::format::VendorFormat;
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
    /// The vendor's id for the message (kapool's `TaskID`, a template vendor's `smsid`;
    /// a number or a string; `0` means no task and is dropped); numbers masked.
    pub task_id: Option<String>,
    /// A count of what is left the answer reports: kapool's `RemainPoint`, a template
    /// vendor's `remaining_field`; recorded on the send as reported.
    pub remain_point: Option<i64>,
    /// The vendor's count of the buyer's package (a configured `remaining_field` only;
    /// see [`crate::upstream::format::BodyFields`]): what the channel's
    /// `vendor_remaining` is kept from.
    pub package_remaining: Option<i64>,
    /// `X-Ca-Error-Message`, else the body's message (`Message`, `msg`); mobile numbers
    /// masked, at most 200 characters.
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
            package_remaining: None,
            message: sanitize_message(message),
        }
    }
}

/// Classifies one vendor answer by SPEC §3's table. The gateway's part of the table is
/// the same for every format; only a 2xx body is read by the channel's `format`.
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
///   and wrappers differ in casing.
/// - The task id and message are masked like every recorded vendor text: a vendor that
///   echoes the number in either must not store it.
pub fn classify(
    format: &VendorFormat,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> VendorAnswer {
    let gateway_message = header_text(headers, ERROR_MESSAGE_HEADER);
    let fields = format.read_body(body);
    let (outcome, charged) = match status {
        200..=299 => {
            let outcome = if fields.success {
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
        task_id: fields.task_id.as_deref().and_then(sanitize_message),
        remain_point: fields.remaining,
        package_remaining: fields.package_remaining,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::format::TemplateFormat;
    use axum::http::HeaderValue;

    const SUCCESS: &str = r#"{"ReturnStatus":"Success","Message":"ok","RemainPoint":420842,"TaskID":18424321,"SuccessCounts":1}"#;
    const FAILD: &str = r#"{"ReturnStatus":"Faild","Message":"需要签名","RemainPoint":419,"TaskID":0,"SuccessCounts":0}"#;
    const GYYTZ_SUCCESS: &str =
        r#"{"msg":"成功","smsid":"165957496829318315203372267","code":"0","balance":"13"}"#;
    const GYYTZ_FAILURE: &str = r#"{"code":"1001","msg":"手机号码格式错误"}"#;

    fn kapool() -> VendorFormat {
        VendorFormat::Kapool
    }

    fn template() -> VendorFormat {
        VendorFormat::Template(TemplateFormat::example())
    }

    /// Each format with a body it reads as success: what the gateway's answers are
    /// checked against, so that none of them depends on the format.
    fn every_format() -> [(VendorFormat, &'static str); 2] {
        [(kapool(), SUCCESS), (template(), GYYTZ_SUCCESS)]
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn gateway_error(format: &VendorFormat, status: u16, message: &str) -> VendorAnswer {
        classify(
            format,
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
            &kapool(),
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
                package_remaining: None,
                message: Some("ok".into()),
            }
        );
    }

    #[test]
    fn a_200_with_faild_is_rejected_and_charged() {
        let answer = classify(&kapool(), 200, &HeaderMap::new(), FAILD.as_bytes());
        assert_eq!(answer.outcome, Outcome::VendorRejected);
        assert!(answer.charged);
        assert_eq!(answer.message.as_deref(), Some("需要签名"));
        assert_eq!(answer.remain_point, Some(419));
        assert_eq!(answer.task_id, None, "TaskID 0 names no task");
    }

    #[test]
    fn a_template_vendors_success_code_is_sent_with_its_id_and_balance() {
        let answer = classify(
            &template(),
            200,
            &headers(&[
                ("X-Ca-Request-Id", "E5D22290-AAAA-BBBB-CCCC-123456789ABC"),
                ("X-Ca-Market-Billing-Result", "1"),
            ]),
            GYYTZ_SUCCESS.as_bytes(),
        );
        assert_eq!(
            answer,
            VendorAnswer {
                outcome: Outcome::Sent,
                charged: true,
                http_status: Some(200),
                request_id: Some("E5D22290-AAAA-BBBB-CCCC-123456789ABC".into()),
                task_id: Some("165957496829318315203372267".into()),
                remain_point: Some(13),
                package_remaining: Some(13),
                message: Some("成功".into()),
            }
        );
    }

    #[test]
    fn a_template_vendors_other_code_is_rejected_and_charged() {
        let answer = classify(
            &template(),
            200,
            &HeaderMap::new(),
            GYYTZ_FAILURE.as_bytes(),
        );
        assert_eq!(
            (answer.outcome, answer.charged),
            (Outcome::VendorRejected, true)
        );
        assert_eq!(answer.message.as_deref(), Some("手机号码格式错误"));
        assert_eq!(answer.task_id, None);
    }

    #[test]
    fn each_format_reads_only_its_own_success_rule() {
        let kapool_reads_gyytz =
            classify(&kapool(), 200, &HeaderMap::new(), GYYTZ_SUCCESS.as_bytes());
        assert_eq!(kapool_reads_gyytz.outcome, Outcome::VendorRejected);
        let template_reads_kapool =
            classify(&template(), 200, &HeaderMap::new(), SUCCESS.as_bytes());
        assert_eq!(template_reads_kapool.outcome, Outcome::VendorRejected);
    }

    #[test]
    fn a_200_whose_body_is_not_json_is_rejected_and_charged() {
        for (format, _) in every_format() {
            let answer = classify(&format, 200, &HeaderMap::new(), b"<html>ok</html>");
            assert_eq!(answer.outcome, Outcome::VendorRejected);
            assert!(answer.charged);
            assert_eq!(answer.message, None);
            let empty = classify(&format, 200, &HeaderMap::new(), b"");
            assert_eq!(empty.outcome, Outcome::VendorRejected);
        }
    }

    #[test]
    fn billing_result_zero_keeps_the_outcome_but_is_not_charged() {
        let free = headers(&[("X-Ca-Market-Billing-Result", "0")]);
        for (format, success) in every_format() {
            let sent = classify(&format, 200, &free, success.as_bytes());
            assert_eq!((sent.outcome, sent.charged), (Outcome::Sent, false));
        }
        let rejected = classify(&kapool(), 200, &free, FAILD.as_bytes());
        assert_eq!(
            (rejected.outcome, rejected.charged),
            (Outcome::VendorRejected, false)
        );
        let rejected = classify(&template(), 200, &free, GYYTZ_FAILURE.as_bytes());
        assert_eq!(
            (rejected.outcome, rejected.charged),
            (Outcome::VendorRejected, false)
        );
    }

    #[test]
    fn quota_exhausted_is_vendor_quota_exhausted_and_free() {
        for (format, _) in every_format() {
            let answer = gateway_error(&format, 403, "Quota Exhausted");
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
    }

    #[test]
    fn the_marketplace_subscription_quota_string_and_expiry_are_also_exhausted() {
        for (format, _) in every_format() {
            for message in ["Api Market Subscription quota exhausted", "Quota Expired"] {
                let answer = gateway_error(&format, 403, message);
                assert_eq!(
                    (answer.outcome, answer.charged),
                    (Outcome::VendorQuotaExhausted, false),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn throttling_is_a_403_not_a_429() {
        for (format, _) in every_format() {
            for message in [
                "Throttled by APP Flow Control",
                "Throttled by USER Flow Control",
                "Throttled by API Flow Control",
            ] {
                let answer = gateway_error(&format, 403, message);
                assert_eq!(
                    (answer.outcome, answer.charged),
                    (Outcome::Throttled, false)
                );
            }
        }
    }

    #[test]
    fn an_invalid_appcode_and_unauthorized_are_auth_failures() {
        for (format, _) in every_format() {
            for (status, message) in [(400, "Invalid AppCode `not exists`"), (403, "Unauthorized")]
            {
                let answer = gateway_error(&format, status, message);
                assert_eq!(
                    (answer.outcome, answer.charged),
                    (Outcome::AuthFailed, false),
                    "{status} {message}"
                );
            }
        }
    }

    #[test]
    fn other_errors_with_a_gateway_message_are_upstream_errors() {
        for (format, _) in every_format() {
            for (status, message) in [
                (400, "Invalid Url"),
                (403, "User Arrears"),
                (404, "API Not Found"),
                (500, "Internal Error"),
                (503, "Service Unavailable"),
                (504, "Async Service"),
                (500, "Quota Exhausted"),
            ] {
                let answer = gateway_error(&format, status, message);
                assert_eq!(
                    (answer.outcome, answer.charged),
                    (Outcome::UpstreamError, false),
                    "{status} {message}"
                );
                assert_eq!(answer.message.as_deref(), Some(message));
                assert_eq!(answer.http_status, Some(status));
            }
        }
    }

    #[test]
    fn errors_without_a_gateway_message_are_upstream_errors() {
        for (format, success) in every_format() {
            for status in [400, 403, 429, 500, 502] {
                let answer = classify(&format, status, &HeaderMap::new(), success.as_bytes());
                assert_eq!(
                    (answer.outcome, answer.charged),
                    (Outcome::UpstreamError, false),
                    "{status}"
                );
            }
        }
    }

    #[test]
    fn redirects_and_informational_answers_are_upstream_errors() {
        for (format, success) in every_format() {
            for status in [101, 301, 302, 304] {
                let answer = classify(&format, status, &HeaderMap::new(), success.as_bytes());
                assert_eq!(
                    (answer.outcome, answer.charged),
                    (Outcome::UpstreamError, false),
                    "{status}"
                );
            }
        }
    }

    #[test]
    fn other_2xx_answers_are_read_like_a_200() {
        for (format, success) in every_format() {
            let answer = classify(&format, 201, &HeaderMap::new(), success.as_bytes());
            assert_eq!((answer.outcome, answer.charged), (Outcome::Sent, true));
        }
    }

    #[test]
    fn the_gateway_message_wins_over_the_body_message() {
        let answer = classify(
            &kapool(),
            500,
            &headers(&[("X-Ca-Error-Message", "Internal Error")]),
            br#"{"Message":"backend said something"}"#,
        );
        assert_eq!(answer.message.as_deref(), Some("Internal Error"));
        let answer = classify(
            &template(),
            500,
            &headers(&[("X-Ca-Error-Message", "Internal Error")]),
            br#"{"msg":"backend said something"}"#,
        );
        assert_eq!(answer.message.as_deref(), Some("Internal Error"));
    }

    #[test]
    fn mobile_numbers_in_messages_are_masked_and_long_messages_cut() {
        let body = format!(
            r#"{{"ReturnStatus":"Faild","Message":"号码13800138000已加入黑名单{}"}}"#,
            "x".repeat(300)
        );
        let answer = classify(&kapool(), 200, &HeaderMap::new(), body.as_bytes());
        let message = answer.message.unwrap();
        assert!(message.starts_with("号码138****8000已加入黑名单"));
        assert!(!message.contains("13800138000"));
        assert_eq!(message.chars().count(), 200);
    }

    #[test]
    fn a_template_vendor_that_echoes_the_number_has_it_masked() {
        let body = r#"{"code":"1002","msg":"13800138000 超过日发送上限","smsid":"13800138000"}"#;
        let answer = classify(&template(), 200, &HeaderMap::new(), body.as_bytes());
        assert_eq!(
            answer.message.as_deref(),
            Some("138****8000 超过日发送上限")
        );
        assert_eq!(answer.task_id.as_deref(), Some("138****8000"));
    }
}
