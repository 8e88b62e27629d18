//! What tollgate records from a vendor's JSON answer, and how its values are read.

use serde_json::{Map, Value};

/// The fields of a vendor's answer that a format found, already read by its rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFields {
    /// Whether the body says the message was accepted, by the format's success rule.
    /// Only consulted for a 2xx answer: the gateway's refusals have no such body.
    pub success: bool,
    /// The vendor's message (`Message`, `msg`, …), as written; masked and cut later.
    pub message: Option<String>,
    /// The vendor's id for the message (`TaskID`, `smsid`, …).
    pub task_id: Option<String>,
    /// A count of what is left the body reports (`RemainPoint`, a `remaining_field`),
    /// recorded on the send as reported.
    pub remaining: Option<i64>,
    /// The vendor's count of the buyer's own package: only a configured
    /// `remaining_field` says that. kapool's `RemainPoint` is not taken for it: public
    /// answers show figures such as 420842, far above any package, so it reads as the
    /// vendor platform's own balance.
    pub package_remaining: Option<i64>,
}

/// The body as a JSON object, or `None` for anything else (HTML, empty, an array):
/// such a body yields no fields, and a 2xx without fields is not a success.
pub(super) fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The value under `key`, preferring the exact spelling and else ignoring ASCII case:
/// deployments of one vendor send both `ReturnStatus` and `returnstatus`.
pub(super) fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

/// The first of `keys` that is present with a usable text.
pub(super) fn first_text(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|key| field(object, key).and_then(text))
}

/// Strings as they are (trimmed), numbers and booleans as written; empty strings count
/// as absent. This is also how a success value is compared: `"code":0` and `"code":"0"`
/// both read `0`.
pub(super) fn text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// An integer given as a JSON number or as a string of digits.
pub(super) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_strings_read_as_the_same_text() {
        assert_eq!(text(&json!(0)), Some("0".to_owned()));
        assert_eq!(text(&json!(" 0 ")), Some("0".to_owned()));
        assert_eq!(text(&json!(true)), Some("true".to_owned()));
        assert_eq!(text(&json!("")), None);
        assert_eq!(text(&json!(null)), None);
        assert_eq!(text(&json!({"a": 1})), None);
    }

    #[test]
    fn integers_come_as_numbers_or_digit_strings() {
        assert_eq!(integer(&json!(13)), Some(13));
        assert_eq!(integer(&json!("13")), Some(13));
        assert_eq!(integer(&json!("13 条")), None);
        assert_eq!(integer(&json!(1.5)), None);
    }

    #[test]
    fn keys_prefer_the_exact_spelling_then_ignore_case() {
        let object = json_object(br#"{"Code":"1","code":"0","MSG":"x"}"#).unwrap();
        assert_eq!(field(&object, "code"), Some(&json!("0")));
        assert_eq!(field(&object, "msg"), Some(&json!("x")));
        assert_eq!(field(&object, "absent"), None);
    }

    #[test]
    fn only_a_json_object_has_fields() {
        assert!(json_object(b"[1]").is_none());
        assert!(json_object(b"<html>").is_none());
        assert!(json_object(b"").is_none());
    }
}
