//! How configuration is checked, for tollgate and every notifier plugin alike: one
//! problem type, one collector that gathers every problem with the key it concerns, and
//! one duration grammar.
//!
//! The collector is scoped: tollgate checks `[[notifiers]]` entry 0 inside
//! `problems.scoped("notifiers[0]", …)`, the email plugin reports `smtp_url`, and the
//! problem is recorded as `notifiers[0].smtp_url`. So a plugin names only its own keys,
//! and `tollgate config check` still names every key in full.

use std::fmt::Display;
use std::time::Duration;

/// One thing wrong with the configuration, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigProblem {
    /// The full key, such as `notifiers[0].smtp_url` or `schedule.retention`.
    pub key: String,
    pub problem: String,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Collects every problem instead of stopping at the first, so that one run of
/// `tollgate config check` shows all of them. Checks take `&mut Problems`, record what
/// is wrong, and carry on with a default so that later keys are checked too.
#[derive(Debug, Default)]
pub struct Problems {
    /// The key of the table being checked (`""` at the top, `notifiers[0]` inside a
    /// notifier); every key given to [`Problems::add`] is relative to it.
    scope: String,
    found: Vec<ConfigProblem>,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `key`, relative to the current scope. An empty key names
    /// the scope itself (the whole table).
    pub fn add(&mut self, key: &str, problem: impl Into<String>) {
        let key = join(&self.scope, key);
        self.found.push(ConfigProblem::new(key, problem));
    }

    /// Runs `check` with keys scoped to `scope` (`"schedule"`, `"notifiers[0]"`), relative
    /// to the current scope.
    pub fn scoped<T>(&mut self, scope: &str, check: impl FnOnce(&mut Problems) -> T) -> T {
        let outer = std::mem::take(&mut self.scope);
        self.scope = join(&outer, scope);
        let result = check(self);
        self.scope = outer;
        result
    }

    /// The value of `result`, or `None` with its error recorded as the problem of `key`.
    pub fn check<T, E: Display>(&mut self, key: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(key, err.to_string());
                None
            }
        }
    }

    /// The trimmed value, or `None` with "is required" recorded if it is absent or blank.
    pub fn required<'a>(&mut self, key: &str, value: Option<&'a str>) -> Option<&'a str> {
        match value.map(str::trim) {
            Some(value) if !value.is_empty() => Some(value),
            _ => {
                self.add(key, "is required");
                None
            }
        }
    }

    /// A positive duration written in [`parse_duration`]'s grammar; `default` when absent
    /// or wrong (a wrong value is recorded).
    pub fn duration(&mut self, key: &str, raw: Option<&str>, default: Duration) -> Duration {
        self.optional_duration(key, raw).unwrap_or(default)
    }

    /// A positive duration when one is written; `None` when absent or wrong (recorded).
    pub fn optional_duration(&mut self, key: &str, raw: Option<&str>) -> Option<Duration> {
        let raw = raw?;
        let parsed = parse_positive_duration(raw);
        self.check(key, parsed)
    }

    /// Whether `url` is an `http://` or `https://` URL with a host; records it if not.
    pub fn http_url(&mut self, key: &str, url: &str) -> bool {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        let valid = matches!(rest, Some(rest) if !rest.is_empty() && !rest.starts_with('/'));
        if !valid {
            self.add(key, "must be an http:// or https:// URL");
        }
        valid
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigProblem> {
        self.found.iter()
    }

    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.found
    }
}

/// `scope` and `key` as one key: `notifiers[0]` + `smtp_url` is `notifiers[0].smtp_url`,
/// `notify` + `[2]` is `notify[2]`, and an empty part adds nothing.
fn join(scope: &str, key: &str) -> String {
    if scope.is_empty() {
        key.to_owned()
    } else if key.is_empty() {
        scope.to_owned()
    } else if key.starts_with('[') {
        format!("{scope}{key}")
    } else {
        format!("{scope}.{key}")
    }
}

/// The one duration grammar of the configuration (humantime's): a number and a unit,
/// repeated, such as `30s`, `500ms`, `24h`, `14d` or `1h30m`. The error is the problem
/// text, naming the value and examples.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim()).map_err(|err| {
        format!(
            "{raw:?} is not a duration such as \"30s\", \"500ms\", \"24h\", \"14d\" or \"1h30m\" ({err})"
        )
    })
}

/// As [`parse_duration`], refusing zero: for timeouts, intervals and ages.
pub fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        duration if duration.is_zero() => Err("must be longer than zero".to_owned()),
        duration => Ok(duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_grammar_reads_every_documented_form() {
        for (raw, seconds) in [
            ("30s", 30.0),
            ("500ms", 0.5),
            ("24h", 86_400.0),
            ("14d", 14.0 * 86_400.0),
            ("1h30m", 5_400.0),
            ("2m", 120.0),
            (" 10s ", 10.0),
        ] {
            assert_eq!(parse_duration(raw).unwrap().as_secs_f64(), seconds, "{raw}");
        }
    }

    #[test]
    fn a_wrong_duration_is_refused_with_examples_and_zero_only_where_positive() {
        let err = parse_duration("soon").unwrap_err();
        assert!(
            err.contains("\"soon\"") && err.contains("\"1h30m\""),
            "{err}"
        );
        assert!(parse_duration("10").is_err(), "a unit is required");
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_positive_duration("0s").unwrap_err(),
            "must be longer than zero"
        );
    }

    #[test]
    fn scoped_keys_are_joined_to_the_table_they_are_in() {
        let mut problems = Problems::new();
        problems.add("server.listen", "wrong");
        problems.scoped("notifiers[0]", |p| {
            p.add("smtp_url", "wrong");
            p.add("", "whole table");
            p.scoped("to", |p| p.add("[1]", "not an address"));
        });
        problems.scoped("schedule", |p| {
            p.duration("retention", Some("x"), Duration::ZERO)
        });
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "notifiers[0].smtp_url",
                "notifiers[0]",
                "notifiers[0].to[1]",
                "schedule.retention"
            ]
        );
        assert_eq!(
            problems.into_vec()[1].to_string(),
            "notifiers[0].smtp_url: wrong"
        );
    }

    #[test]
    fn every_problem_is_kept_not_only_the_first() {
        let mut problems = Problems::new();
        assert_eq!(problems.required("name", Some("  ")), None);
        assert_eq!(problems.required("kind", None), None);
        assert_eq!(
            problems.required("url", Some(" https://a ")),
            Some("https://a")
        );
        assert!(!problems.http_url("url", "ftp://a"));
        assert_eq!(
            problems.duration("timeout", Some("0s"), Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            problems
                .duration("absent", None, Duration::from_secs(3))
                .as_secs(),
            3
        );
        assert_eq!(problems.len(), 4);
    }
}
