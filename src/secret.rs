//! A wrapper for secrets (AppCodes, tokens, webhook keys) that cannot be printed by accident.

use std::fmt;

/// A secret string. `Debug` and `Display` print `[redacted]`; the value is reachable
/// only through [`Secret::expose`], so every place that uses it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites must not log or store what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("83359fd73fe94948385f570e3");
        assert!(!format!("{secret:?}").contains("83359"));
        assert!(!format!("{secret}").contains("83359"));
        assert_eq!(secret.expose(), "83359fd73fe94948385f570e3");
    }
}
