//! The sandbox's template backend, shaped like gyytz's `/sms/smsSend`: the vendor's
//! template id and parameters instead of the text.
//!
//! It reads `mobile`, `templateId` and `param` (the query's values, else the form
//! body's), takes `param` in either style tollgate sends (`**code**:1234,**minute**:5`
//! or a JSON object of strings), and answers `{"code":"0","msg":"成功","smsid":…,
//! "balance":"<remaining>"}`, or `{"code":"<non-zero>","msg":…}` for a business failure
//! (billed, like the kapool backend's `Faild`). gyytz's own failure codes are not
//! published; the codes below are the sandbox's.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{BackendBody, ReceivedRequest};
use crate::domain::mobile::is_mainland_mobile;

/// The last path segment that selects this backend (any case): `/sms/smsSend`.
const PATH_SEGMENT: &str = "smsSend";

/// The fields the backend reads, in gyytz's spelling.
const MOBILE_FIELD: &str = "mobile";
const TEMPLATE_ID_FIELD: &str = "templateId";
const PARAMS_FIELD: &str = "param";

/// The business failures, `(code, msg)`. The last one answers any other refusal, such
/// as an injected rejection.
const REFUSALS: [(&str, &str); 5] = [
    ("1001", MOBILE_MISSING),
    ("1002", MOBILE_INVALID),
    ("1003", TEMPLATE_MISSING),
    ("1004", PARAMS_INVALID),
    ("1099", "提交失败"),
];
const MOBILE_MISSING: &str = "手机号码不能为空";
const MOBILE_INVALID: &str = "手机号码格式错误";
const TEMPLATE_MISSING: &str = "模板ID不能为空";
const PARAMS_INVALID: &str = "模板参数格式错误";

/// The backend's answer, fields in gyytz's order and spelling; its numbers are strings.
#[derive(Debug, Serialize)]
struct VendorBody {
    msg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    smsid: Option<String>,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<String>,
}

/// Whether `path` is this backend's.
pub(super) fn serves(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|segment| segment.eq_ignore_ascii_case(PATH_SEGMENT))
}

/// What the backend refuses (and still bills): a missing or malformed number, no
/// template id, parameters that do not parse.
pub(super) fn refusal(request: &ReceivedRequest) -> Option<&'static str> {
    let mobile = request.value(MOBILE_FIELD).map(str::trim).unwrap_or("");
    if mobile.is_empty() {
        return Some(MOBILE_MISSING);
    }
    if !is_mainland_mobile(mobile) {
        return Some(MOBILE_INVALID);
    }
    let template_id = request.value(TEMPLATE_ID_FIELD).map(str::trim);
    if template_id.is_none_or(str::is_empty) {
        return Some(TEMPLATE_MISSING);
    }
    if parse_params(request.value(PARAMS_FIELD).unwrap_or("")).is_none() {
        return Some(PARAMS_INVALID);
    }
    None
}

/// gyytz's ids are 27 digits; this one is unique per sandbox by the task counter.
pub(super) fn accepted(remaining: u64, task_id: u64) -> BackendBody {
    body(VendorBody {
        msg: "成功",
        smsid: Some(format!("1659574968{task_id:017}")),
        code: "0",
        balance: Some(remaining.to_string()),
    })
}

pub(super) fn refused(message: &'static str, _remaining: u64) -> BackendBody {
    let (code, msg) = REFUSALS
        .iter()
        .find(|(_, msg)| *msg == message)
        .copied()
        .unwrap_or(REFUSALS[REFUSALS.len() - 1]);
    body(VendorBody {
        msg,
        smsid: None,
        code,
        balance: None,
    })
}

fn body(body: VendorBody) -> BackendBody {
    BackendBody {
        json: serde_json::to_vec(&body).expect("the vendor body serializes"),
        verdict: body.code,
        message: body.msg,
    }
}

/// The parameters in either style, or `None` if they parse as neither. Nothing at all
/// is no parameters.
fn parse_params(text: &str) -> Option<BTreeMap<String, String>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(BTreeMap::new());
    }
    if text.starts_with('{') {
        return serde_json::from_str(text).ok();
    }
    let mut params = BTreeMap::new();
    for pair in text.split(',') {
        let (name, value) = pair.strip_prefix("**")?.split_once("**:")?;
        let named =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !named || params.insert(name.to_owned(), value.to_owned()).is_some() {
            return None;
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &[(&str, &str)]) -> ReceivedRequest {
        ReceivedRequest {
            method: "POST".into(),
            path: "/sms/smsSend".into(),
            authorization: None,
            content_type: None,
            body_len: 0,
            query: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            form: Vec::new(),
            query_content: None,
            query_mobile: None,
            content: None,
            mobile: None,
        }
    }

    #[test]
    fn only_sms_send_paths_are_this_backend() {
        assert!(serves("/sms/smsSend"));
        assert!(serves("/SMS/SMSSEND"));
        assert!(!serves("/chuangxin/dxjk"));
        assert!(!serves("/sms/smsSend/extra"));
    }

    #[test]
    fn both_parameter_styles_parse() {
        let expected = BTreeMap::from([
            ("code".to_owned(), "12345".to_owned()),
            ("minute".to_owned(), "5".to_owned()),
        ]);
        assert_eq!(
            parse_params("**code**:12345,**minute**:5"),
            Some(expected.clone())
        );
        assert_eq!(
            parse_params(r#"{"code":"12345","minute":"5"}"#),
            Some(expected)
        );
        assert_eq!(parse_params(""), Some(BTreeMap::new()));
    }

    #[test]
    fn malformed_parameters_do_not_parse() {
        for text in [
            "code:1234",
            "**code:1234",
            "****:1",
            "**code**:1,**code**:2",
            r#"{"code":1234}"#,
            "{broken",
        ] {
            assert_eq!(parse_params(text), None, "{text}");
        }
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let good = [
            ("mobile", "13800138000"),
            ("templateId", "T1"),
            ("param", "**code**:1234"),
        ];
        assert_eq!(refusal(&request(&good)), None);
        assert_eq!(refusal(&request(&good[1..])), Some(MOBILE_MISSING));
        assert_eq!(
            refusal(&request(&[("mobile", "12345"), good[1], good[2]])),
            Some(MOBILE_INVALID)
        );
        assert_eq!(
            refusal(&request(&[good[0], ("templateId", " "), good[2]])),
            Some(TEMPLATE_MISSING)
        );
        assert_eq!(
            refusal(&request(&[good[0], good[1], ("param", "code=1234")])),
            Some(PARAMS_INVALID)
        );
    }

    #[test]
    fn answers_are_in_gyytzs_shape() {
        let json: serde_json::Value = serde_json::from_slice(&accepted(13, 1).json).unwrap();
        assert_eq!(json["code"], "0");
        assert_eq!(json["msg"], "成功");
        assert_eq!(json["balance"], "13");
        assert_eq!(json["smsid"].as_str().unwrap().len(), 27);
        let refused = refused(MOBILE_INVALID, 13);
        let json: serde_json::Value = serde_json::from_slice(&refused.json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"msg": MOBILE_INVALID, "code": "1002"})
        );
        assert_eq!(refused.verdict, "1002");
        let injected: serde_json::Value =
            serde_json::from_slice(&super::refused("提交失败", 1).json).unwrap();
        assert_eq!(injected["code"], "1099");
    }
}
