//! The marketplace's code for a purchased API product, e.g. `cmapi00037415`.

use std::fmt;

use serde::Serialize;

/// A product code as the Alibaba Cloud Marketplace writes it (`cmapi` and digits for API
/// products). Checked only for shape, ASCII letters and digits, 1 to 64 characters, since
/// other product families use other prefixes; the marketplace itself says whether it
/// knows the code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProductCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("product code {0:?} must be 1-64 ASCII letters and digits, like \"cmapi00037415\"")]
pub struct ProductCodeError(pub String);

impl ProductCode {
    pub fn parse(raw: &str) -> Result<Self, ProductCodeError> {
        let valid =
            !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ProductCodeError(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn marketplace_api_product_codes_parse() {
        assert_eq!(
            ProductCode::parse("cmapi00037415").unwrap().as_str(),
            "cmapi00037415"
        );
    }

    #[test]
    fn codes_with_spaces_masks_or_punctuation_are_refused() {
        for raw in [
            "",
            " cmapi1",
            "cmapi0004****",
            "cmapi-1",
            "产品",
            &"a".repeat(65),
        ] {
            assert!(ProductCode::parse(raw).is_err(), "{raw:?}");
        }
    }

    proptest! {
        #[test]
        fn any_short_alphanumeric_text_is_a_code(raw in "[a-zA-Z0-9]{1,64}") {
            let code = ProductCode::parse(&raw).unwrap();
            prop_assert_eq!(code.as_str(), raw.as_str());
        }
    }
}
