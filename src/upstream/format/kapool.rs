//! The `kapool` format (卡池 and the 创信 family): `content` + `mobile` in the query, and
//! an answer whose `ReturnStatus` is `Success`.

use super::body::{field, integer, json_object, text, BodyFields};
use super::vendor_format::VendorRequest;
use crate::domain::VendorMethod;

/// The request as the vendor's samples send it: `content` and `mobile` in the query for
/// both methods, and for POST an empty form body.
pub(super) fn request(method: VendorMethod, mobile: &str, content: &str) -> VendorRequest {
    VendorRequest {
        query: vec![
            ("content".to_owned(), content.to_owned()),
            ("mobile".to_owned(), mobile.to_owned()),
        ],
        form: match method {
            VendorMethod::Get => None,
            VendorMethod::Post => Some(Vec::new()),
        },
    }
}

/// `ReturnStatus`, `Message`, `TaskID` and `RemainPoint`, keys in any case. Only an
/// explicit `Success` (any case) counts as sent; `Faild`, another value, a missing field
/// or a body that is not JSON all read as rejected. A `TaskID` of `0` names no task.
pub(super) fn read_body(body: &[u8]) -> BodyFields {
    let Some(object) = json_object(body) else {
        return BodyFields::default();
    };
    BodyFields {
        success: field(&object, "ReturnStatus")
            .and_then(text)
            .is_some_and(|status| status.eq_ignore_ascii_case("success")),
        message: field(&object, "Message").and_then(text),
        task_id: field(&object, "TaskID")
            .and_then(text)
            .filter(|id| id != "0"),
        remaining: field(&object, "RemainPoint").and_then(integer),
        package_remaining: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{"ReturnStatus":"Success","Message":"ok","RemainPoint":420842,"TaskID":18424321,"SuccessCounts":1}"#;
    const FAILD: &str = r#"{"ReturnStatus":"Faild","Message":"需要签名","RemainPoint":419,"TaskID":0,"SuccessCounts":0}"#;

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn content_and_mobile_go_in_the_query_for_both_methods() {
        let post = request(VendorMethod::Post, "13800138000", "【卡池】hi");
        assert_eq!(
            post.query,
            [pair("content", "【卡池】hi"), pair("mobile", "13800138000")]
        );
        assert_eq!(post.form, Some(Vec::new()), "a POST has an empty form body");
        let get = request(VendorMethod::Get, "13800138000", "【卡池】hi");
        assert_eq!(get.query, post.query);
        assert_eq!(get.form, None);
    }

    #[test]
    fn success_is_read_with_the_vendor_fields() {
        assert_eq!(
            read_body(SUCCESS.as_bytes()),
            BodyFields {
                success: true,
                message: Some("ok".into()),
                task_id: Some("18424321".into()),
                remaining: Some(420842),
                // Recorded, but not the buyer's package: see `BodyFields`.
                package_remaining: None,
            }
        );
    }

    #[test]
    fn faild_is_not_success_and_task_id_zero_names_no_task() {
        let fields = read_body(FAILD.as_bytes());
        assert!(!fields.success);
        assert_eq!(fields.message.as_deref(), Some("需要签名"));
        assert_eq!(fields.remaining, Some(419));
        assert_eq!(fields.task_id, None);
    }

    #[test]
    fn a_body_without_return_status_is_not_success() {
        assert!(!read_body(br#"{"code":"0","msg":"ok"}"#).success);
        assert!(!read_body(b"<html>ok</html>").success);
        assert!(!read_body(b"").success);
    }

    #[test]
    fn keys_are_matched_ignoring_case() {
        let body = r#"{"returnstatus":"Success","message":"ok","remainpoint":"7","taskid":"T-99"}"#;
        let fields = read_body(body.as_bytes());
        assert!(fields.success);
        assert_eq!(fields.task_id.as_deref(), Some("T-99"));
        assert_eq!(fields.remaining, Some(7));
        assert_eq!(fields.message.as_deref(), Some("ok"));
        let shouting = read_body(br#"{"RETURNSTATUS":"success","TASKID":5}"#);
        assert!(shouting.success);
        assert_eq!(shouting.task_id.as_deref(), Some("5"));
    }
}
