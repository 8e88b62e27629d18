//! Voice content: the digits of a voice verification code, and the voice notice length limit.

use std::fmt;

/// The longest voice notice accepted, counted like SMS: UTF-16 code units.
pub const VOICE_NOTICE_MAX_LEN: usize = 500;

/// The digits a voice verification call reads out: 4 to 6 ASCII digits, nothing else.
///
/// `Debug` hides the digits: a verification code is a short-lived secret and has no
/// business in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct VoiceCode(String);

/// The content of a voice verification call is not 4 to 6 ASCII digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a voice verification code is 4 to 6 ASCII digits (0-9) and nothing else: no spaces, \
     letters or full-width digits"
)]
pub struct VoiceCodeError;

impl VoiceCodeError {
    /// The SPEC §5 error code.
    pub fn code(&self) -> &'static str {
        "invalid_voice_code"
    }
}

impl VoiceCode {
    /// Accepts exactly 4 to 6 ASCII digits. Nothing is trimmed: the vendor reads out
    /// whatever it is given, so the code must already be clean.
    pub fn parse(raw: &str) -> Result<VoiceCode, VoiceCodeError> {
        // ASCII digits are one byte each, so the byte length is the digit count.
        let valid = (4..=6).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(VoiceCode(raw.to_owned()))
        } else {
            Err(VoiceCodeError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VoiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VoiceCode({} digits)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn four_to_six_ascii_digits_are_a_code() {
        for raw in ["0000", "1234", "48291", "482913"] {
            assert_eq!(VoiceCode::parse(raw).unwrap().as_str(), raw);
        }
    }

    #[test]
    fn anything_else_is_refused_with_its_code() {
        for raw in [
            "",
            "123",
            "1234567",
            " 1234",
            "1234 ",
            "12 34",
            "12a4",
            "１２３４",
            "-1234",
            "+1234",
            "١٢٣٤",
        ] {
            let error = VoiceCode::parse(raw).unwrap_err();
            assert_eq!(error.code(), "invalid_voice_code", "{raw:?}");
        }
        assert!(VoiceCodeError.to_string().contains("4 to 6 ASCII digits"));
    }

    #[test]
    fn debug_does_not_print_the_digits() {
        let code = VoiceCode::parse("482913").unwrap();
        assert_eq!(format!("{code:?}"), "VoiceCode(6 digits)");
    }

    proptest! {
        #[test]
        fn every_string_of_4_to_6_digits_parses(raw in "[0-9]{4,6}") {
            let code = VoiceCode::parse(&raw).unwrap();
            prop_assert_eq!(code.as_str(), raw.as_str());
        }

        #[test]
        fn a_code_is_always_4_to_6_ascii_digits(raw in "\\PC{0,8}") {
            if let Ok(code) = VoiceCode::parse(&raw) {
                prop_assert!((4..=6).contains(&code.as_str().len()));
                prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
