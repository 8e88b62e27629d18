//! `[metrics]`: who may scrape `/metrics`, as written and as validated.

use serde::Deserialize;
use tollgate_notify::Problems;

/// The `[metrics]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The environment variable holding the token a scrape must present
    /// (`Authorization: Bearer <token>`); `/metrics` is open when `None`.
    pub token_env: Option<String>,
}

/// Validates `[metrics]`, recording problems with keys inside the table (the caller
/// scopes it to `metrics`). The token itself is read from the environment at start.
pub fn check_metrics(raw: &RawMetrics, p: &mut Problems) -> MetricsSettings {
    let token_env = match raw.token_env.as_deref().map(str::trim) {
        None => None,
        Some(name) if is_env_name(name) => Some(name.to_owned()),
        Some(_) => {
            // The value is not repeated: it may be the token itself, written by mistake.
            p.add(
                "token_env",
                "is not an environment variable name (letters, digits and _): name the \
                 variable that holds the token, not the token",
            );
            None
        }
    };
    MetricsSettings { token_env }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(token_env: Option<&str>) -> (MetricsSettings, Vec<String>) {
        let mut p = Problems::new();
        let raw = RawMetrics {
            token_env: token_env.map(str::to_owned),
        };
        let settings = p.scoped("metrics", |p| check_metrics(&raw, p));
        let keys = p
            .into_vec()
            .into_iter()
            .map(|problem| problem.key)
            .collect();
        (settings, keys)
    }

    #[test]
    fn metrics_are_open_unless_a_token_variable_is_named() {
        assert_eq!(check(None), (MetricsSettings::default(), vec![]));
        assert_eq!(
            check(Some("TOLLGATE_METRICS_TOKEN")).0.token_env.as_deref(),
            Some("TOLLGATE_METRICS_TOKEN")
        );
    }

    #[test]
    fn a_token_written_where_its_variable_belongs_is_refused_by_key() {
        assert_eq!(check(Some("s3cr3t-token!")).1, vec!["metrics.token_env"]);
        assert_eq!(check(Some("")).1, vec!["metrics.token_env"]);
    }
}
