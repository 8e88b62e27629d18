//! Vendor messages made safe to store: mobile numbers masked (with the domain's one
//! masking), then cut to a bounded length.

use crate::domain::mobile::mask_mobile_numbers;

/// How much of a vendor message is kept: enough to diagnose, bounded for the database.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_masked_then_truncated() {
        let long = format!("{}13800138000", "短".repeat(195));
        let clean = sanitize_message(&long).unwrap();
        assert_eq!(clean.chars().count(), MAX_MESSAGE_CHARS);
        assert!(clean.ends_with("138**"));
        assert_eq!(sanitize_message("  "), None);
    }
}
