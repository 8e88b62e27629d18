//! Masking of mobile numbers in what the upstream module logs and records.
//!
//! `domain::mobile` owns the product's masking; this module keeps its own small copy so
//! that the vendor client does not depend on the domain layer's parsing rules.

/// How much of a vendor message is kept: enough to diagnose, bounded for the database.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

/// `13800138000` → `138****8000`. Anything that is not a plain ASCII string of at
/// least 7 characters is hidden entirely, since its shape is unknown.
pub(crate) fn mask_mobile(mobile: &str) -> String {
    let len = mobile.len();
    if !mobile.is_ascii() || len < 7 {
        return "****".to_owned();
    }
    format!("{}****{}", &mobile[..3], &mobile[len - 4..])
}

/// Masks every mainland mobile number (`1[3-9]` + 9 digits, optionally prefixed with
/// `86` or `0086`) that stands alone as a run of digits in `text`. Longer digit runs
/// (task ids, order numbers) are left alone: they are not phone numbers.
pub(crate) fn mask_mobile_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let digits = &rest[start..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        let run = &digits[..end];
        let national = match run.len() {
            11 => Some(("", run)),
            13 if run.starts_with("86") => Some(run.split_at(2)),
            15 if run.starts_with("0086") => Some(run.split_at(4)),
            _ => None,
        };
        match national {
            Some((prefix, number)) if is_mainland_mobile(number) => {
                out.push_str(prefix);
                out.push_str(&mask_mobile(number));
            }
            _ => out.push_str(run),
        }
        rest = &digits[end..];
    }
    out.push_str(rest);
    out
}

/// A vendor-supplied message made safe to store: numbers masked, then cut to
/// [`MAX_MESSAGE_CHARS`] characters (masking first, so a cut never exposes digits that a
/// whole number would have had masked).
pub(crate) fn sanitize_message(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let masked = mask_mobile_numbers(text);
    Some(match masked.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => masked[..cut].to_owned(),
        None => masked,
    })
}

/// `1[3-9]` followed by nine digits: a mainland mobile number without prefix.
pub(crate) fn is_mainland_mobile(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    bytes.len() == 11
        && bytes[0] == b'1'
        && (b'3'..=b'9').contains(&bytes[1])
        && bytes.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mobile_keeps_its_first_three_and_last_four_digits() {
        assert_eq!(mask_mobile("13800138000"), "138****8000");
        assert_eq!(mask_mobile("123"), "****");
        assert_eq!(mask_mobile("一二三四五六七八"), "****");
    }

    #[test]
    fn numbers_inside_text_are_masked() {
        assert_eq!(
            mask_mobile_numbers("手机号码13800138000格式错误"),
            "手机号码138****8000格式错误"
        );
        assert_eq!(
            mask_mobile_numbers("to 8615051885736 and 008613912345678."),
            "to 86150****5736 and 0086139****5678."
        );
    }

    #[test]
    fn other_digit_runs_are_left_alone() {
        assert_eq!(
            mask_mobile_numbers("TaskID 18424321, order 12345678901234"),
            "TaskID 18424321, order 12345678901234"
        );
        // 11 digits, but not a mobile prefix.
        assert_eq!(mask_mobile_numbers("id 10000000000"), "id 10000000000");
    }

    #[test]
    fn messages_are_masked_then_truncated() {
        let long = format!("{}13800138000", "短".repeat(195));
        let clean = sanitize_message(&long).unwrap();
        assert_eq!(clean.chars().count(), MAX_MESSAGE_CHARS);
        assert!(clean.ends_with("138**"));
        assert_eq!(sanitize_message("  "), None);
    }
}
