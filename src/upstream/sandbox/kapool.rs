//! The sandbox's kapool backend (创信/卡池): what it refuses and how it words its answers.

use serde::Serialize;

use super::{BackendBody, ReceivedRequest};
use crate::domain::mobile::is_mainland_mobile;

/// The backend's body, fields in the vendor's order and spelling.
#[derive(Debug, Serialize)]
struct VendorBody {
    #[serde(rename = "ReturnStatus")]
    return_status: &'static str,
    #[serde(rename = "Message")]
    message: &'static str,
    #[serde(rename = "RemainPoint")]
    remain_point: u64,
    #[serde(rename = "TaskID")]
    task_id: u64,
    #[serde(rename = "SuccessCounts")]
    success_counts: u32,
}

/// What the backend refuses (and still bills), with the vendor's Chinese messages. It
/// reads `content` and `mobile` from the query, else the form body.
pub(super) fn refusal(request: &ReceivedRequest) -> Option<&'static str> {
    business_failure(
        &request.path,
        request.content.as_deref(),
        request.mobile.as_deref(),
    )
}

pub(super) fn accepted(remaining: u64, task_id: u64) -> BackendBody {
    body(VendorBody {
        return_status: "Success",
        message: "ok",
        remain_point: remaining,
        task_id,
        success_counts: 1,
    })
}

pub(super) fn refused(message: &'static str, remaining: u64) -> BackendBody {
    body(VendorBody {
        return_status: "Faild",
        message,
        remain_point: remaining,
        task_id: 0,
        success_counts: 0,
    })
}

fn body(body: VendorBody) -> BackendBody {
    BackendBody {
        json: serde_json::to_vec(&body).expect("the vendor body serializes"),
        verdict: body.return_status,
        message: body.message,
    }
}

fn business_failure(
    path: &str,
    content: Option<&str>,
    mobile: Option<&str>,
) -> Option<&'static str> {
    let mobile = mobile.map(str::trim).unwrap_or("");
    if mobile.is_empty() {
        return Some("手机号码为空");
    }
    if !is_mainland_mobile(mobile) {
        return Some("手机号码格式错误");
    }
    let content = content.unwrap_or("");
    if content.trim().is_empty() {
        return Some("发送内容为空");
    }
    if content.encode_utf16().count() > 500 {
        return Some("发送内容超长");
    }
    let path = path.to_ascii_lowercase();
    if path.contains("yyyzm") {
        // The voice verification code API reads out 4 to 6 digits.
        let digits = content.len();
        if !(4..=6).contains(&digits) || !content.bytes().all(|b| b.is_ascii_digit()) {
            return Some("验证码格式错误");
        }
    } else if (path.contains("dx") || path.contains("sms")) && !has_signature(content) {
        return Some("需要签名");
    }
    None
}

/// Whether the text carries a `【…】` signature with something inside.
fn has_signature(content: &str) -> bool {
    content
        .split_once('【')
        .and_then(|(_, rest)| rest.split_once('】'))
        .is_some_and(|(signature, _)| !signature.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_need_brackets_with_something_inside() {
        assert!(has_signature("【卡池】你好"));
        assert!(has_signature("你好【卡池】"));
        assert!(!has_signature("你好"));
        assert!(!has_signature("【】你好"));
        assert!(!has_signature("【卡池 你好"));
    }

    #[test]
    fn business_failures_carry_the_vendor_messages() {
        let sms = "/chuangxin/dxjk";
        assert_eq!(
            business_failure(sms, Some("【卡池】hi"), None),
            Some("手机号码为空")
        );
        assert_eq!(
            business_failure(sms, Some("【卡池】hi"), Some("12345")),
            Some("手机号码格式错误")
        );
        assert_eq!(
            business_failure(sms, Some("hi"), Some("13800138000")),
            Some("需要签名")
        );
        assert_eq!(
            business_failure(sms, Some("【卡池】hi"), Some("13800138000")),
            None
        );
        assert_eq!(
            business_failure("/chuangxin/yytz", Some("hi"), Some("13800138000")),
            None
        );
        assert_eq!(
            business_failure("/chuangxin/yyyzm", Some("12a4"), Some("13800138000")),
            Some("验证码格式错误")
        );
        assert_eq!(
            business_failure("/chuangxin/yyyzm", Some("1234"), Some("13800138000")),
            None
        );
    }

    #[test]
    fn answers_are_in_the_vendors_shape() {
        let json: serde_json::Value = serde_json::from_slice(&accepted(4, 77).json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ReturnStatus":"Success","Message":"ok","RemainPoint":4,"TaskID":77,"SuccessCounts":1})
        );
        let json: serde_json::Value = serde_json::from_slice(&refused("需要签名", 3).json).unwrap();
        assert_eq!(json["ReturnStatus"], "Faild");
        assert_eq!(json["TaskID"], 0);
    }
}
