//! The vendor's request fields as they travel: `application/x-www-form-urlencoded`, in a
//! query string or a form body. One decoder for everything that reads them (the drop-in
//! proxy, which serves the vendor's format, and the sandbox, which simulates the vendor
//! and, in `marketplace::sandbox`, the Market API's signed query).

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte, and
/// bytes that are not UTF-8 become U+FFFD. Pairs keep their order; a key may repeat.
pub fn decode_form(text: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_bytes() {
        assert_eq!(
            decode_form(b"content=%E3%80%90a%E3%80%91b+c&mobile=13800138000"),
            [
                ("content".to_owned(), "【a】b c".to_owned()),
                ("mobile".to_owned(), "13800138000".to_owned())
            ]
        );
    }

    #[test]
    fn nothing_decodes_to_no_pairs_and_a_hash_is_text() {
        assert!(decode_form(b"").is_empty());
        assert_eq!(
            decode_form(b"content=a#b"),
            [("content".to_owned(), "a#b".to_owned())]
        );
    }
}
