//! SMS length and rating: how many billed segments a text costs (SPEC §3).
//!
//! The length of an SMS is every UTF-16 code unit of the full text, signature with its
//! `【】` included: Chinese characters, ASCII and punctuation count 1, and characters
//! outside the Basic Multilingual Plane (most emoji) count 2, which is how carriers
//! encode them. Up to 70 units is one segment; a longer text is split into segments of
//! 67 (each carries a concatenation header); above 500 the text is refused.

use crate::domain::Units;

/// The longest text that is still sent (and billed) as one segment.
pub const SINGLE_SEGMENT_MAX: usize = 70;

/// How much text each segment of a multi-segment SMS carries.
pub const MULTI_SEGMENT_SIZE: usize = 67;

/// The longest SMS accepted, in UTF-16 code units.
pub const SMS_MAX_LEN: usize = 500;

/// Why a text cannot be sent as an SMS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("the message is empty")]
    Empty,
    #[error(
        "the message is {len} characters long (signature included; emoji count 2) and the \
         maximum is {max}"
    )]
    TooLong { len: usize, max: usize },
}

impl SmsError {
    /// The SPEC §5 error code.
    pub fn code(&self) -> &'static str {
        match self {
            SmsError::Empty => "content_empty",
            SmsError::TooLong { .. } => "content_too_long",
        }
    }
}

/// The length of `text` as carriers count it: UTF-16 code units.
pub fn sms_length(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The number of billed segments of the full text (signature included).
pub fn rate_sms(text: &str) -> Result<Units, SmsError> {
    if text.trim().is_empty() {
        return Err(SmsError::Empty);
    }
    let len = sms_length(text);
    if len > SMS_MAX_LEN {
        return Err(SmsError::TooLong {
            len,
            max: SMS_MAX_LEN,
        });
    }
    let segments = if len <= SINGLE_SEGMENT_MAX {
        1
    } else {
        len.div_ceil(MULTI_SEGMENT_SIZE)
    };
    // A text of 1..=500 units is 1..=8 segments, so neither conversion can fail.
    let units = u32::try_from(segments)
        .ok()
        .and_then(Units::new)
        .expect("an SMS of 1 to 500 units is rated 1 to 8 segments");
    Ok(units)
}

/// The `【…】` signature at the start or, failing that, at the end of `text`, brackets
/// included. The inside must be non-empty and hold no other bracket; anything else,
/// including a signature in the middle of the text, is no signature.
pub fn signature_of(text: &str) -> Option<&str> {
    leading_signature(text).or_else(|| trailing_signature(text))
}

fn leading_signature(text: &str) -> Option<&str> {
    let inner_and_rest = text.strip_prefix('【')?;
    let close = inner_and_rest.find('】')?;
    let inner = &inner_and_rest[..close];
    if inner.is_empty() || inner.contains('【') {
        return None;
    }
    let end = '【'.len_utf8() + close + '】'.len_utf8();
    Some(&text[..end])
}

fn trailing_signature(text: &str) -> Option<&str> {
    let rest_and_inner = text.strip_suffix('】')?;
    let open = rest_and_inner.rfind('【')?;
    let inner = &rest_and_inner[open + '【'.len_utf8()..];
    if inner.is_empty() || inner.contains('】') {
        return None;
    }
    Some(&text[open..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units_of_length(len: usize) -> Result<u32, SmsError> {
        rate_sms(&"字".repeat(len)).map(Units::get)
    }

    #[test]
    fn the_worked_examples_are_rated_as_published() {
        assert_eq!(units_of_length(1), Ok(1));
        assert_eq!(units_of_length(68), Ok(1));
        assert_eq!(units_of_length(70), Ok(1));
        assert_eq!(units_of_length(71), Ok(2));
        assert_eq!(units_of_length(134), Ok(2));
        assert_eq!(units_of_length(135), Ok(3));
        assert_eq!(units_of_length(160), Ok(3));
        assert_eq!(units_of_length(500), Ok(8));
    }

    #[test]
    fn a_text_above_500_is_refused() {
        let error = rate_sms(&"字".repeat(501)).unwrap_err();
        assert_eq!(error, SmsError::TooLong { len: 501, max: 500 });
        assert_eq!(error.code(), "content_too_long");
        assert!(error.to_string().contains("501"));
    }

    #[test]
    fn an_empty_or_blank_text_is_refused() {
        for text in ["", " ", "\n\t", "\u{3000}"] {
            let error = rate_sms(text).unwrap_err();
            assert_eq!(error, SmsError::Empty);
            assert_eq!(error.code(), "content_empty");
        }
    }

    #[test]
    fn every_character_counts_one_and_emoji_count_two() {
        assert_eq!(sms_length("【卡池】"), 4);
        assert_eq!(sms_length("abc，。!"), 6);
        assert_eq!(sms_length("😀"), 2);
        assert_eq!(sms_length("a😀b"), 4);
        // 69 characters and one emoji is 71 units: two segments.
        let text = format!("{}😀", "字".repeat(69));
        assert_eq!(rate_sms(&text).map(Units::get), Ok(2));
    }

    #[test]
    fn the_signature_counts_towards_the_length() {
        let body = "字".repeat(66);
        assert_eq!(rate_sms(&body).map(Units::get), Ok(1));
        assert_eq!(rate_sms(&format!("【卡池】{body}")).map(Units::get), Ok(1));
        assert_eq!(
            rate_sms(&format!("【卡池】{body}字")).map(Units::get),
            Ok(2)
        );
    }

    #[test]
    fn a_leading_or_trailing_signature_is_found() {
        assert_eq!(signature_of("【卡池】你的验证码是1234"), Some("【卡池】"));
        assert_eq!(signature_of("你的验证码是1234【卡池】"), Some("【卡池】"));
        assert_eq!(signature_of("【卡池】"), Some("【卡池】"));
        assert_eq!(signature_of("【A】text【B】"), Some("【A】"));
    }

    #[test]
    fn anything_else_is_no_signature() {
        for text in [
            "",
            "你的验证码是1234",
            "你的【卡池】验证码",
            "【】你的验证码",
            "你的验证码【】",
            "【卡池你的验证码",
            "你的验证码卡池】",
            "【卡【池】你的验证码",
            "你的验证码【卡】池】",
            " 【卡池】你的验证码",
            "[卡池]你的验证码",
        ] {
            assert_eq!(signature_of(text), None, "{text}");
        }
    }

    fn expected_units(len: usize) -> u32 {
        if len <= 70 {
            1
        } else {
            u32::try_from(len.div_ceil(67)).unwrap()
        }
    }

    proptest! {
        #[test]
        fn rating_follows_the_formula_and_grows_with_length(
            shorter in 1usize..=SMS_MAX_LEN,
            longer in 1usize..=SMS_MAX_LEN,
        ) {
            let (shorter, longer) = (shorter.min(longer), shorter.max(longer));
            let shorter_units = units_of_length(shorter).unwrap();
            let longer_units = units_of_length(longer).unwrap();
            prop_assert_eq!(shorter_units, expected_units(shorter));
            prop_assert_eq!(longer_units, expected_units(longer));
            prop_assert!(shorter_units <= longer_units);
        }

        #[test]
        fn every_length_above_the_maximum_is_refused(len in (SMS_MAX_LEN + 1)..2000usize) {
            prop_assert_eq!(
                units_of_length(len),
                Err(SmsError::TooLong { len, max: SMS_MAX_LEN })
            );
        }

        #[test]
        fn length_is_utf16_units_of_any_text(text in "\\PC{0,50}") {
            let expected: usize = text.chars().map(char::len_utf16).sum();
            prop_assert_eq!(sms_length(&text), expected);
        }

        #[test]
        fn a_signature_added_in_front_is_found(
            name in "[^【】]{1,10}",
            body in "[^【】]{0,30}",
        ) {
            let signature = format!("【{name}】");
            let leading = format!("{signature}{body}");
            let trailing = format!("{body}{signature}");
            prop_assert_eq!(signature_of(&leading), Some(signature.as_str()));
            prop_assert_eq!(signature_of(&trailing), Some(signature.as_str()));
            prop_assert_eq!(signature_of(&body), None);
        }
    }
}
