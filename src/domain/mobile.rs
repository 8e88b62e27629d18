//! Mainland China mobile numbers, parsed once and only ever shown masked.
//!
//! A `Mobile` holds the 11 national digits. Its `Debug` and `Display` print the masked
//! form (`138****8000`) so that a number that slips into a log line, an error or a
//! metric label is already scrubbed; the full digits are only handed out by the
//! deliberately long-named `expose_national`, for the vendor call.

use std::fmt;

/// How many digits a mainland mobile number has once its country prefix is removed.
const NATIONAL_LENGTH: usize = 11;

/// A mainland China mobile number: `1`, then `3`-`9`, then nine more digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Mobile {
    national: String,
}

/// The input is not a mainland China mobile number.
///
/// The error deliberately carries nothing of the input, so that reporting it (to the API
/// client, in a log line) can never leak a number that was almost right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a mainland China mobile number (11 digits starting 13-19, optionally prefixed \
     +86, 86 or 0086; spaces and hyphens between digits are allowed)"
)]
pub struct MobileError;

impl MobileError {
    /// The SPEC §5 error code.
    pub fn code(&self) -> &'static str {
        "invalid_mobile"
    }
}

impl Mobile {
    /// Parses a number as people and systems write it: `13800138000`, `+8613800138000`,
    /// `86 138 0013 8000`, `0086-138-0013-8000`. Surrounding whitespace is ignored;
    /// ASCII spaces and hyphens may separate digits, but not lead or trail them.
    pub fn parse(raw: &str) -> Result<Mobile, MobileError> {
        let trimmed = raw.trim();
        // A '+' can only introduce the international form, which must then be +86.
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let starts_and_ends_with_digit = rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && rest.bytes().last().is_some_and(|b| b.is_ascii_digit());
        let only_digits_and_separators = rest
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-');
        if !starts_and_ends_with_digit || !only_digits_and_separators {
            return Err(MobileError);
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        let national = match (plus, digits.len()) {
            (false, 11) => digits.as_str(),
            (_, 13) => digits.strip_prefix("86").ok_or(MobileError)?,
            (false, 15) => digits.strip_prefix("0086").ok_or(MobileError)?,
            _ => return Err(MobileError),
        };
        if !is_national_mobile(national.as_bytes()) {
            return Err(MobileError);
        }
        Ok(Mobile {
            national: national.to_owned(),
        })
    }

    /// The full 11 national digits. Only the vendor call needs them; everything that is
    /// stored, logged or shown to a client uses [`Mobile::masked`].
    pub fn expose_national(&self) -> &str {
        &self.national
    }

    /// The number with its middle four digits hidden: `138****8000`.
    pub fn masked(&self) -> String {
        mask_national(&self.national)
    }
}

impl fmt::Debug for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Mobile").field(&self.masked()).finish()
    }
}

impl fmt::Display for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Replaces every mainland mobile number inside free text with its masked form.
///
/// A number is a run of exactly 11 ASCII digits matching `1[3-9]\d{9}` that is not part
/// of a longer run of digits, so order numbers and timestamps are left alone. Because
/// vendors and clients also write numbers with their country code, a run of 13 digits
/// `86` + number or 15 digits `0086` + number is masked too (the prefix is kept). Numbers
/// written with separators inside (`138 0013 8000`) are not recognised.
///
/// Used to scrub vendor messages and log lines before they are stored or shown.
pub fn mask_mobile_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut masked = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        let run_start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        // ASCII digits are single bytes in UTF-8 and never occur inside a multi-byte
        // character, so these byte offsets are always character boundaries.
        let run = &text[run_start..index];
        let prefix_len = match run.len() {
            11 => 0,
            13 if run.starts_with("86") => 2,
            15 if run.starts_with("0086") => 4,
            _ => continue,
        };
        let national = &run[prefix_len..];
        if is_national_mobile(national.as_bytes()) {
            masked.push_str(&text[copied_up_to..run_start + prefix_len]);
            masked.push_str(&mask_national(national));
            copied_up_to = index;
        }
    }
    masked.push_str(&text[copied_up_to..]);
    masked
}

/// A number as it was given, parsed or not, in the form that may be logged or recorded:
/// a mainland mobile number (with any prefix [`Mobile::parse`] accepts) as
/// [`Mobile::masked`], anything else as `****`, since its shape is unknown and it may
/// be a number that is almost right.
pub fn mask_mobile(raw: &str) -> String {
    match Mobile::parse(raw) {
        Ok(mobile) => mobile.masked(),
        Err(MobileError) => "****".to_owned(),
    }
}

/// Whether `digits` is exactly `1[3-9]\d{9}`: a mainland number without prefix or
/// separators, as a vendor's API takes it.
pub fn is_mainland_mobile(digits: &str) -> bool {
    is_national_mobile(digits.as_bytes())
}

/// Whether `digits` is exactly `1[3-9]\d{9}`.
fn is_national_mobile(digits: &[u8]) -> bool {
    digits.len() == NATIONAL_LENGTH
        && digits[0] == b'1'
        && (b'3'..=b'9').contains(&digits[1])
        && digits.iter().all(u8::is_ascii_digit)
}

/// Masks 11 national digits as first three, four asterisks, last four.
fn mask_national(national: &str) -> String {
    format!("{}****{}", &national[..3], &national[7..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_number_as_given_is_masked_whole_unless_it_parses() {
        assert_eq!(mask_mobile("13800138000"), "138****8000");
        assert_eq!(mask_mobile("+86 138 0013 8000"), "138****8000");
        assert_eq!(mask_mobile("1380013800"), "****");
        assert_eq!(mask_mobile("一二三四五六七八"), "****");
    }

    #[test]
    fn a_vendor_takes_the_bare_national_digits_only() {
        assert!(is_mainland_mobile("13800138000"));
        assert!(!is_mainland_mobile("+8613800138000"));
        assert!(!is_mainland_mobile("138 0013 8000"));
        assert!(!is_mainland_mobile("12800138000"));
    }

    #[test]
    fn a_plain_national_number_parses() {
        let mobile = Mobile::parse("13800138000").unwrap();
        assert_eq!(mobile.expose_national(), "13800138000");
    }

    #[test]
    fn every_country_prefix_is_accepted() {
        for raw in [
            "+8613800138000",
            "8613800138000",
            "008613800138000",
            "  13800138000\n",
        ] {
            assert_eq!(
                Mobile::parse(raw).unwrap().expose_national(),
                "13800138000",
                "{raw}"
            );
        }
    }

    #[test]
    fn spaces_and_hyphens_between_digits_are_accepted() {
        for raw in [
            "138 0013 8000",
            "+86-138-0013-8000",
            "+86 138 0013 8000",
            "0086 13800138000",
            "138-0013-8000",
        ] {
            assert_eq!(
                Mobile::parse(raw).unwrap().expose_national(),
                "13800138000",
                "{raw}"
            );
        }
    }

    #[test]
    fn every_second_digit_from_3_to_9_is_a_mobile() {
        for second in 3..=9 {
            let raw = format!("1{second}800138000");
            assert!(Mobile::parse(&raw).is_ok(), "{raw}");
        }
        assert!(Mobile::parse("12800138000").is_err());
        assert!(Mobile::parse("10800138000").is_err());
        assert!(Mobile::parse("23800138000").is_err());
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for raw in [
            "",
            "   ",
            "1380013800",             // 10 digits
            "138001380001",           // 12 digits
            "+13800138000",           // '+' without 86
            "+008613800138000",       // '+' with 00
            "8713800138000",          // another country code
            "0013800138000",          // 00 without 86
            "138001380O0",            // letter O
            "１３８００１３８０００", // full-width digits
            "-13800138000",           // leading separator
            "13800138000-",           // trailing separator
            "138_0013_8000",          // other separator
            "+ 8613800138000",        // separator after '+'
            "138.0013.8000",
            "tel:13800138000",
            "8612800138000", // 86 + non-mobile
        ] {
            assert_eq!(Mobile::parse(raw), Err(MobileError), "{raw:?}");
        }
    }

    #[test]
    fn masked_form_hides_the_middle_four_digits() {
        let mobile = Mobile::parse("+86 138 1234 8000").unwrap();
        assert_eq!(mobile.masked(), "138****8000");
    }

    #[test]
    fn debug_and_display_never_print_the_full_number() {
        let mobile = Mobile::parse("13812345678").unwrap();
        assert_eq!(mobile.to_string(), "138****5678");
        assert_eq!(format!("{mobile:?}"), "Mobile(\"138****5678\")");
        assert!(!format!("{mobile:?} {mobile} {mobile:#?}").contains("13812345678"));
    }

    #[test]
    fn equal_numbers_written_differently_are_equal() {
        assert_eq!(
            Mobile::parse("+86-138-0013-8000").unwrap(),
            Mobile::parse("13800138000").unwrap()
        );
    }

    #[test]
    fn the_error_has_its_code_and_does_not_echo_the_input() {
        let error = Mobile::parse("1380013800").unwrap_err();
        assert_eq!(error.code(), "invalid_mobile");
        let message = error.to_string();
        assert!(!message.contains("1380013800"));
        assert!(message.contains("mainland China mobile number"));
    }

    #[test]
    fn numbers_inside_text_are_masked() {
        assert_eq!(
            mask_mobile_numbers("手机号13800138000发送失败"),
            "手机号138****8000发送失败"
        );
        assert_eq!(
            mask_mobile_numbers("a 13800138000,15912345678."),
            "a 138****8000,159****5678."
        );
        assert_eq!(mask_mobile_numbers("13800138000"), "138****8000");
    }

    #[test]
    fn numbers_with_a_country_code_inside_text_are_masked() {
        assert_eq!(
            mask_mobile_numbers("to +8613800138000 and 008613912345678"),
            "to +86138****8000 and 0086139****5678"
        );
    }

    #[test]
    fn other_digit_runs_are_left_alone() {
        for text in [
            "order 138001380001",      // 12 digits
            "task 1380013800",         // 10 digits
            "id 12800138000",          // 11 digits but not a mobile
            "RemainPoint 420842",      // short
            "ts 20240101138001380001", // long run containing a mobile
            "8713800138000",           // 13 digits, other country code
        ] {
            assert_eq!(mask_mobile_numbers(text), text);
        }
    }

    /// Any valid national number: `1`, `3`-`9`, nine digits.
    fn national_number() -> impl Strategy<Value = String> {
        "1[3-9][0-9]{9}"
    }

    /// Each way the same number may be written.
    fn written_forms(national: &str) -> Vec<String> {
        let grouped = format!("{} {} {}", &national[..3], &national[3..7], &national[7..]);
        let hyphenated = format!("{}-{}-{}", &national[..3], &national[3..7], &national[7..]);
        let mut forms = Vec::new();
        for prefix in ["", "+86", "86", "0086", "+86 ", "+86-", "0086 "] {
            for body in [national, grouped.as_str(), hyphenated.as_str()] {
                forms.push(format!("{prefix}{body}"));
                forms.push(format!("  {prefix}{body}\t"));
            }
        }
        forms
    }

    /// Free text without digits, so that the only digit runs are the ones placed.
    fn digitless_text() -> impl Strategy<Value = String> {
        "[a-z 。，：【】手机号码:+-]{1,8}"
    }

    proptest! {
        #[test]
        fn every_written_form_parses_to_the_same_digits(national in national_number()) {
            for form in written_forms(&national) {
                let parsed = Mobile::parse(&form);
                prop_assert_eq!(
                    parsed.as_ref().map(Mobile::expose_national),
                    Ok(national.as_str()),
                    "form {:?}",
                    form
                );
            }
        }

        #[test]
        fn the_masked_form_never_reveals_the_middle_digits(
            national in national_number(),
            other_middle in "[0-9]{4}",
        ) {
            let masked = Mobile::parse(&national).unwrap().masked();
            // The middle digits may coincide with the visible ones (13812341234), so the
            // property is that the masked form does not depend on them at all.
            let sibling = format!("{}{}{}", &national[..3], other_middle, &national[7..]);
            prop_assert_eq!(&Mobile::parse(&sibling).unwrap().masked(), &masked);
            prop_assert_eq!(&masked[3..7], "****");
            prop_assert_eq!(&masked[..3], &national[..3]);
            prop_assert_eq!(&masked[7..], &national[7..]);
            prop_assert!(!masked.contains(&national));
        }

        #[test]
        fn masking_text_leaves_no_number_from_the_input(
            pieces in proptest::collection::vec(
                (digitless_text(), national_number(), prop::sample::select(vec!["", "86", "0086", "+86"])),
                0..6,
            ),
            tail in digitless_text(),
        ) {
            let mut text = String::new();
            for (filler, national, prefix) in &pieces {
                text.push_str(filler);
                text.push_str(prefix);
                text.push_str(national);
            }
            text.push_str(&tail);
            let masked = mask_mobile_numbers(&text);
            for (_, national, _) in &pieces {
                prop_assert!(!masked.contains(national.as_str()), "{:?} -> {:?}", text, masked);
            }
            // Masking swaps digits for asterisks one for one, and is idempotent.
            prop_assert_eq!(masked.chars().count(), text.chars().count());
            prop_assert_eq!(mask_mobile_numbers(&masked), masked);
        }

        #[test]
        fn masking_text_without_numbers_changes_nothing(text in "[^0-9]{0,40}") {
            prop_assert_eq!(mask_mobile_numbers(&text), text);
        }
    }
}
