//! The AccessKey pair that signs Market API requests: an ID and a secret, both kept secret.

use crate::secret::Secret;

/// An Alibaba Cloud AccessKey pair (a RAM user's, ideally with read-only permissions).
/// Both halves are [`Secret`]s: the ID is not enough to sign a request, but it names the
/// account and is half of what an attacker needs, so it is never printed either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: Secret,
    pub secret: Secret,
}

/// An environment variable that should hold half of the AccessKey pair is unset or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {variable} (the marketplace {half}) is not set")]
pub struct MissingAccessKey {
    pub variable: String,
    /// `"AccessKey ID"` or `"AccessKey secret"`.
    pub half: &'static str,
}

impl AccessKey {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: Secret::new(id),
            secret: Secret::new(secret),
        }
    }

    /// Reads the pair from the environment variables the configuration names.
    pub fn from_env(
        id_variable: &str,
        secret_variable: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, MissingAccessKey> {
        let read = |variable: &str, half| {
            env(variable)
                .filter(|value| !value.is_empty())
                .map(Secret::new)
                .ok_or_else(|| MissingAccessKey {
                    variable: variable.to_owned(),
                    half,
                })
        };
        Ok(Self {
            id: read(id_variable, "AccessKey ID")?,
            secret: read(secret_variable, "AccessKey secret")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_half_of_the_pair_is_printed() {
        let key = AccessKey::new("LTAI5tQxExampleId", "wJalrXExampleSecret");
        let printed = format!("{key:?}");
        assert!(!printed.contains("LTAI5t"), "{printed}");
        assert!(!printed.contains("wJalrX"), "{printed}");
    }

    #[test]
    fn the_pair_is_read_from_the_named_variables() {
        let env = |name: &str| match name {
            "MY_ID" => Some("id-1".to_owned()),
            "MY_SECRET" => Some("secret-1".to_owned()),
            _ => None,
        };
        let key = AccessKey::from_env("MY_ID", "MY_SECRET", &env).unwrap();
        assert_eq!(key.id.expose(), "id-1");
        assert_eq!(key.secret.expose(), "secret-1");
    }

    #[test]
    fn an_unset_or_empty_variable_is_named_in_the_error() {
        let env = |name: &str| (name == "MY_ID").then(String::new);
        let err = AccessKey::from_env("MY_ID", "MY_SECRET", &env).unwrap_err();
        assert_eq!(err.variable, "MY_ID");
        assert_eq!(
            err.to_string(),
            "environment variable MY_ID (the marketplace AccessKey ID) is not set"
        );
        let env = |name: &str| (name == "MY_ID").then(|| "id".to_owned());
        let err = AccessKey::from_env("MY_ID", "MY_SECRET", &env).unwrap_err();
        assert_eq!(err.variable, "MY_SECRET");
    }
}
