//! The `template` format: the vendor's own template id and parameters (gyytz and most
//! marketplace SMS vendors), and an answer whose configured field holds a success value.
//!
//! A gyytz call, for instance, is `mobile`, `templateId`, `param` =
//! `**code**:12345,**minute**:5` and `smsSignId` in the query, answered
//! `{"msg":"成功","smsid":"165957496829318315203372267","code":"0","balance":"13"}`.

use std::collections::BTreeMap;

use super::body::{field, first_text, integer, json_object, text, BodyFields};
use super::params::{ParamsIn, ParamsStyle};
use super::vendor_format::{RequestError, VendorRequest};
use crate::domain::VendorMethod;

/// Where the vendors put their message; the first present is recorded.
const MESSAGE_KEYS: [&str; 2] = ["msg", "message"];

/// Where the vendors put their id for the message; the first present is recorded as the
/// task id. Keys are matched ignoring case, so `smsId` and `BizId` are found too.
const TASK_ID_KEYS: [&str; 8] = [
    "smsid",
    "sms_id",
    "taskid",
    "task_id",
    "bizid",
    "biz_id",
    "messageid",
    "message_id",
];

/// A template-format channel's request and success rule: the keys of SPEC §13, checked
/// by the configuration (names non-empty and distinct, `success_values` not empty,
/// `params_in = "form"` only with POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFormat {
    /// The field that carries the 11-digit national number (`mobile`).
    pub mobile_param: String,
    /// The field that carries the vendor's template id (`templateId`).
    pub template_id_param: String,
    /// The field that carries the encoded parameters (`param`); `None` when the vendor
    /// takes none, and then no template of the channel may have variables.
    pub params_param: Option<String>,
    pub params_style: ParamsStyle,
    pub params_in: ParamsIn,
    /// Sent as they are with every call, after the other fields, in name order
    /// (`smsSignId`, the vendor's id of the approved signature).
    pub static_params: BTreeMap<String, String>,
    /// The answer's top-level JSON field that says whether the message was accepted
    /// (`code`); matched ignoring ASCII case when the exact spelling is absent.
    pub success_field: String,
    /// The values of `success_field` that mean accepted (`["0"]`), compared exactly
    /// after trimming; a JSON number compares by its text, so `0` matches `"0"`.
    pub success_values: Vec<String>,
    /// The answer's field with the vendor's own count of what is left (`balance`), a
    /// number or a string of digits.
    pub remaining_field: Option<String>,
}

impl TemplateFormat {
    /// The request fields: number, template id, parameters, then the static parameters,
    /// in the query or the form body as `params_in` says.
    pub(super) fn request(
        &self,
        method: VendorMethod,
        mobile: &str,
        template_id: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<VendorRequest, RequestError> {
        if template_id.trim().is_empty() {
            return Err(RequestError::EmptyTemplateId);
        }
        let mut fields = vec![
            (self.mobile_param.clone(), mobile.to_owned()),
            (self.template_id_param.clone(), template_id.to_owned()),
        ];
        match &self.params_param {
            Some(name) => fields.push((name.clone(), self.params_style.encode(params)?)),
            None if !params.is_empty() => return Err(RequestError::ParamsWithoutField),
            None => {}
        }
        fields.extend(
            self.static_params
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        match (self.params_in, method) {
            (ParamsIn::Query, VendorMethod::Get) => Ok(VendorRequest {
                query: fields,
                form: None,
            }),
            (ParamsIn::Query, VendorMethod::Post) => Ok(VendorRequest {
                query: fields,
                form: Some(Vec::new()),
            }),
            (ParamsIn::Form, VendorMethod::Post) => Ok(VendorRequest {
                query: Vec::new(),
                form: Some(fields),
            }),
            (ParamsIn::Form, VendorMethod::Get) => Err(RequestError::FormOnGet),
        }
    }

    #[cfg(test)]
    pub(crate) fn example() -> Self {
        TemplateFormat {
            mobile_param: "mobile".into(),
            template_id_param: "templateId".into(),
            params_param: Some("param".into()),
            params_style: ParamsStyle::Pairs,
            params_in: ParamsIn::Query,
            static_params: [(
                "smsSignId".to_owned(),
                "2e65b1bb3d054466b82f0c9d125465e2".to_owned(),
            )]
            .into(),
            success_field: "code".into(),
            success_values: vec!["0".into()],
            remaining_field: Some("balance".into()),
        }
    }
}

/// Success by the configured field and values; the message from `msg`/`message`, the
/// task id from the first of [`TASK_ID_KEYS`] (`0` names none), what is left from
/// `remaining_field`. A body that is not a JSON object reads as not sent.
pub(super) fn read_body(format: &TemplateFormat, body: &[u8]) -> BodyFields {
    let Some(object) = json_object(body) else {
        return BodyFields::default();
    };
    let verdict = field(&object, &format.success_field).and_then(text);
    let mut fields = BodyFields {
        success: verdict.is_some_and(|value| {
            format
                .success_values
                .iter()
                .any(|accepted| accepted.trim() == value)
        }),
        message: first_text(&object, &MESSAGE_KEYS),
        task_id: first_text(&object, &TASK_ID_KEYS).filter(|id| id != "0"),
        remaining: None,
        package_remaining: None,
    };
    fields.remaining = format
        .remaining_field
        .as_deref()
        .and_then(|name| field(&object, name))
        .and_then(integer);
    fields.package_remaining = fields.remaining;
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOBILE: &str = "13800138000";
    const TEMPLATE_ID: &str = "908e94ccf08b4476ba6c876d13f084ad";
    const GYYTZ_SUCCESS: &str =
        r#"{"msg":"成功","smsid":"165957496829318315203372267","code":"0","balance":"13"}"#;

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn code_and_minute() -> BTreeMap<String, String> {
        params(&[("minute", "5"), ("code", "12345")])
    }

    #[test]
    fn the_configured_fields_carry_number_template_id_params_and_static_params() {
        let request = TemplateFormat::example()
            .request(VendorMethod::Post, MOBILE, TEMPLATE_ID, &code_and_minute())
            .unwrap();
        assert_eq!(
            request.query,
            [
                pair("mobile", MOBILE),
                pair("templateId", TEMPLATE_ID),
                pair("param", "**code**:12345,**minute**:5"),
                pair("smsSignId", "2e65b1bb3d054466b82f0c9d125465e2"),
            ]
        );
        assert_eq!(
            request.form,
            Some(Vec::new()),
            "a POST has an empty form body"
        );
    }

    #[test]
    fn other_field_names_are_used_as_configured() {
        let format = TemplateFormat {
            mobile_param: "phone_number".into(),
            template_id_param: "template_id".into(),
            params_param: Some("content".into()),
            static_params: BTreeMap::new(),
            ..TemplateFormat::example()
        };
        let request = format
            .request(
                VendorMethod::Get,
                MOBILE,
                "T-7",
                &params(&[("code", "1234")]),
            )
            .unwrap();
        assert_eq!(
            request.query,
            [
                pair("phone_number", MOBILE),
                pair("template_id", "T-7"),
                pair("content", "**code**:1234"),
            ]
        );
        assert_eq!(request.form, None, "a GET has no body");
    }

    #[test]
    fn json_params_carry_commas_colons_and_chinese_text() {
        let format = TemplateFormat {
            params_style: ParamsStyle::Json,
            ..TemplateFormat::example()
        };
        let request = format
            .request(
                VendorMethod::Post,
                MOBILE,
                TEMPLATE_ID,
                &params(&[("name", "张三"), ("time", "10:30, 周五")]),
            )
            .unwrap();
        assert_eq!(
            request.query[2],
            pair("param", r#"{"name":"张三","time":"10:30, 周五"}"#)
        );
    }

    #[test]
    fn a_pairs_value_the_list_cannot_carry_is_never_sent() {
        let result = TemplateFormat::example().request(
            VendorMethod::Post,
            MOBILE,
            TEMPLATE_ID,
            &params(&[("time", "10:30")]),
        );
        assert!(matches!(result, Err(RequestError::Params(_))), "{result:?}");
    }

    #[test]
    fn form_puts_every_field_in_the_body_and_nothing_in_the_query() {
        let format = TemplateFormat {
            params_in: ParamsIn::Form,
            ..TemplateFormat::example()
        };
        let request = format
            .request(VendorMethod::Post, MOBILE, TEMPLATE_ID, &code_and_minute())
            .unwrap();
        assert!(request.query.is_empty());
        let form = request.form.unwrap();
        assert_eq!(form[0], pair("mobile", MOBILE));
        assert_eq!(form[1], pair("templateId", TEMPLATE_ID));
        assert_eq!(form[2], pair("param", "**code**:12345,**minute**:5"));
        assert_eq!(form[3].0, "smsSignId");
        assert_eq!(
            format.request(VendorMethod::Get, MOBILE, TEMPLATE_ID, &code_and_minute()),
            Err(RequestError::FormOnGet)
        );
    }

    #[test]
    fn a_vendor_without_a_params_field_gets_no_params() {
        let format = TemplateFormat {
            params_param: None,
            ..TemplateFormat::example()
        };
        let request = format
            .request(VendorMethod::Get, MOBILE, TEMPLATE_ID, &BTreeMap::new())
            .unwrap();
        assert_eq!(request.query.len(), 3, "{request:?}");
        assert_eq!(
            format.request(VendorMethod::Get, MOBILE, TEMPLATE_ID, &code_and_minute()),
            Err(RequestError::ParamsWithoutField)
        );
    }

    #[test]
    fn an_empty_template_id_is_never_sent() {
        assert_eq!(
            TemplateFormat::example().request(VendorMethod::Get, MOBILE, " ", &BTreeMap::new()),
            Err(RequestError::EmptyTemplateId)
        );
    }

    #[test]
    fn the_gyytz_success_is_read_with_its_id_message_and_balance() {
        assert_eq!(
            read_body(&TemplateFormat::example(), GYYTZ_SUCCESS.as_bytes()),
            BodyFields {
                success: true,
                message: Some("成功".into()),
                task_id: Some("165957496829318315203372267".into()),
                remaining: Some(13),
                package_remaining: Some(13),
            }
        );
    }

    #[test]
    fn a_number_code_compares_by_its_text() {
        let fields = read_body(
            &TemplateFormat::example(),
            br#"{"code":0,"msg":"ok","balance":12}"#,
        );
        assert!(fields.success);
        assert_eq!(fields.remaining, Some(12));
    }

    #[test]
    fn another_code_or_no_code_is_not_success() {
        let format = TemplateFormat::example();
        let failure = read_body(
            &format,
            r#"{"code":"1001","msg":"手机号码格式错误"}"#.as_bytes(),
        );
        assert!(!failure.success);
        assert_eq!(failure.message.as_deref(), Some("手机号码格式错误"));
        assert_eq!(failure.task_id, None);
        assert_eq!(failure.remaining, None);
        assert!(
            !read_body(&format, br#"{"code":10}"#).success,
            "0 is not a prefix match"
        );
        assert!(!read_body(&format, br#"{"msg":"ok"}"#).success);
        assert!(!read_body(&format, br#"{"code":null}"#).success);
        assert!(!read_body(&format, b"<html>0</html>").success);
    }

    #[test]
    fn any_of_several_success_values_counts() {
        let format = TemplateFormat {
            success_field: "status".into(),
            success_values: vec!["OK".into(), "200".into()],
            remaining_field: None,
            ..TemplateFormat::example()
        };
        assert!(read_body(&format, br#"{"status":"OK","balance":"3"}"#).success);
        assert!(read_body(&format, br#"{"status":200}"#).success);
        assert!(
            !read_body(&format, br#"{"status":"ok"}"#).success,
            "values are exact"
        );
        let fields = read_body(&format, br#"{"status":"OK","balance":"3"}"#);
        assert_eq!(fields.remaining, None, "no remaining_field, nothing read");
    }

    #[test]
    fn message_and_task_id_come_from_the_usual_keys_in_any_case() {
        let fields = read_body(
            &TemplateFormat::example(),
            br#"{"Code":"0","Message":"OK","BizId":"900619746936498440^0"}"#,
        );
        assert!(fields.success);
        assert_eq!(fields.message.as_deref(), Some("OK"));
        assert_eq!(fields.task_id.as_deref(), Some("900619746936498440^0"));
    }

    #[test]
    fn a_remaining_count_that_is_not_a_number_is_not_recorded() {
        let fields = read_body(
            &TemplateFormat::example(),
            r#"{"code":"0","balance":"十三"}"#.as_bytes(),
        );
        assert_eq!(fields.remaining, None);
    }
}
