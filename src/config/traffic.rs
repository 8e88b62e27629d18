//! `[traffic]` and `[[limits]]` (SPEC §12): the traffic limits checked before a send is
//! charged, as written and as validated.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::alerts::{channel_selector, ChannelSelector, OneOrMany};
use super::settings::ChannelSettings;
use super::Problems;
use crate::domain::{SendClass, Yuan};

/// The longest window a limit may count over: its counts are kept per window in slots
/// of a sixtieth of it.
pub const LONGEST_WINDOW: Duration = Duration::from_secs(31 * 86_400);
/// Names the built-in limits take; configured limits may not start with it.
pub const BUILTIN_PREFIX: &str = "default.";

/// `[traffic]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTraffic {
    pub default_limits: Option<bool>,
}

/// One `[[limits]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimit {
    pub name: Option<String>,
    pub scope: Option<String>,
    pub classes: Option<OneOrMany>,
    pub channels: Option<OneOrMany>,
    pub window: Option<String>,
    pub max_sends: Option<i64>,
    pub max_units: Option<i64>,
    /// CNY, as a string (`"50.00"`) or a number.
    pub max_cost: Option<toml::Value>,
}

/// What a limit counts per: a mobile number (kept as a keyed hash) or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Mobile,
    Client,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Mobile => "mobile",
            LimitScope::Client => "client",
        }
    }
}

/// How much a limit allows in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMax {
    Sends(u64),
    Units(u64),
    /// Client scope only: what the client's sends were charged.
    Cost(Yuan),
}

/// One limit, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    pub name: String,
    pub scope: LimitScope,
    /// The classes it counts; every class when empty.
    pub classes: Vec<SendClass>,
    pub channels: ChannelSelector,
    pub window: Duration,
    pub max: LimitMax,
}

/// A window as a configuration file writes it (`90s`, `1m`, `1h`, `1d`).
pub fn window_text(window: Duration) -> String {
    match window.as_secs() {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl std::fmt::Display for LimitSettings {
    /// `default.critical_per_number_1m: at most 1 send per mobile number per 1m
    /// (critical sends, every channel)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.rule())
    }
}

impl LimitSettings {
    /// What the limit allows, in words: `at most 1 send per mobile number per 1m
    /// (critical sends, every channel)`.
    pub fn rule(&self) -> String {
        let max = match self.max {
            LimitMax::Sends(1) => "1 send".to_owned(),
            LimitMax::Sends(n) => format!("{n} sends"),
            LimitMax::Units(n) => format!("{n} units"),
            LimitMax::Cost(cost) => format!("{} yuan of charges", cost.to_display_string()),
        };
        let per = match self.scope {
            LimitScope::Mobile => "mobile number",
            LimitScope::Client => "client",
        };
        let classes = if self.classes.is_empty() {
            "every class".to_owned()
        } else {
            let names: Vec<&str> = self.classes.iter().map(|c| c.as_str()).collect();
            format!("{} sends", names.join(", "))
        };
        let channels = match &self.channels {
            ChannelSelector::All => "every channel".to_owned(),
            ChannelSelector::Named(names) => {
                let names: Vec<&str> = names.iter().map(|c| c.as_str()).collect();
                names.join(", ")
            }
        };
        format!(
            "at most {max} per {per} per {} ({classes}, {channels})",
            window_text(self.window)
        )
    }

    /// Whether a send of `class` to `channel` counts against this limit.
    pub fn covers(&self, channel: &crate::domain::ChannelName, class: SendClass) -> bool {
        self.channels.matches(channel) && (self.classes.is_empty() || self.classes.contains(&class))
    }
}

/// `[traffic]` and `[[limits]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSettings {
    /// SPEC §12's built-in per-number limits for critical sends (on unless turned off).
    pub default_limits: bool,
    pub limits: Vec<LimitSettings>,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        Self {
            default_limits: true,
            limits: Vec::new(),
        }
    }
}

impl TrafficSettings {
    /// The configured limits and, unless turned off, the built-in ones: for critical
    /// sends per mobile number, 1 per minute, 5 per hour, 10 per day (the vendors' own
    /// flow control, enforced before the charge).
    pub fn effective(&self) -> Vec<LimitSettings> {
        let mut limits = self.limits.clone();
        if self.default_limits {
            for (name, window, max) in [
                ("default.critical_per_number_1m", 60, 1),
                ("default.critical_per_number_1h", 3_600, 5),
                ("default.critical_per_number_1d", 86_400, 10),
            ] {
                limits.push(LimitSettings {
                    name: name.to_owned(),
                    scope: LimitScope::Mobile,
                    classes: vec![SendClass::Critical],
                    channels: ChannelSelector::All,
                    window: Duration::from_secs(window),
                    max: LimitMax::Sends(max),
                });
            }
        }
        limits
    }
}

/// Checks `[traffic]` (under its own scope) and each `[[limits]]` entry (`limits[i]`).
pub fn check_traffic(
    raw: &RawTraffic,
    raw_limits: &[RawLimit],
    channels: &[ChannelSettings],
    p: &mut Problems,
) -> TrafficSettings {
    let mut names = BTreeSet::new();
    let limits = raw_limits
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| {
            p.scoped(&format!("limits[{i}]"), |p| {
                limit(raw, channels, &mut names, p)
            })
        })
        .collect();
    TrafficSettings {
        default_limits: raw.default_limits.unwrap_or(true),
        limits,
    }
}

fn limit(
    raw: &RawLimit,
    channels: &[ChannelSettings],
    names: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<LimitSettings> {
    let name = p.required("name", raw.name.as_deref()).and_then(|name| {
        let safe = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !safe {
            p.add(
                "name",
                "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
            );
            return None;
        }
        if name.starts_with(BUILTIN_PREFIX) {
            p.add(
                "name",
                format!("names starting with {BUILTIN_PREFIX:?} are the built-in limits'"),
            );
            return None;
        }
        if !names.insert(name.to_owned()) {
            p.add("name", format!("limit {name} is defined twice"));
        }
        Some(name.to_owned())
    });
    let scope = match p.required("scope", raw.scope.as_deref()) {
        Some("mobile") => Some(LimitScope::Mobile),
        Some("client") => Some(LimitScope::Client),
        Some(other) => {
            p.add(
                "scope",
                format!("{other:?} is neither \"mobile\" nor \"client\""),
            );
            None
        }
        None => None,
    };
    let classes: Vec<SendClass> = match raw.classes.clone() {
        None => Vec::new(),
        Some(classes) => classes
            .into_vec()
            .iter()
            .enumerate()
            .filter_map(|(i, class)| p.check(&format!("classes[{i}]"), class.parse()))
            .collect(),
    };
    let channels = channel_selector(raw.channels.clone(), channels, p);
    let window = p.required("window", raw.window.as_deref()).and_then(|w| {
        let window = p.check("window", super::parse_duration(w))?;
        if window < Duration::from_secs(1) {
            p.add("window", "must be at least 1s");
            None
        } else if window > LONGEST_WINDOW {
            p.add("window", "must be at most 31d");
            None
        } else {
            Some(window)
        }
    });
    let mut maxima = Vec::new();
    let positive = |p: &mut Problems, key: &str, value: i64| {
        if value < 1 {
            p.add(key, "must be at least 1");
            None
        } else {
            Some(value as u64)
        }
    };
    if let Some(sends) = raw.max_sends {
        maxima.extend(positive(p, "max_sends", sends).map(LimitMax::Sends));
    }
    if let Some(units) = raw.max_units {
        maxima.extend(positive(p, "max_units", units).map(LimitMax::Units));
    }
    if let Some(cost) = &raw.max_cost {
        let text = match cost {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if let Some(cost) = p.check("max_cost", Yuan::parse(&text)) {
            if cost.micros() <= 0 {
                p.add("max_cost", "must be above 0");
            } else {
                maxima.push(LimitMax::Cost(cost));
            }
        }
        if scope == Some(LimitScope::Mobile) {
            p.add(
                "max_cost",
                "is for scope = \"client\" (a budget per calling application)",
            );
        }
    }
    let declared = [
        raw.max_sends.is_some(),
        raw.max_units.is_some(),
        raw.max_cost.is_some(),
    ]
    .iter()
    .filter(|d| **d)
    .count();
    let max = match declared {
        1 => maxima.pop(),
        0 => {
            p.add(
                "max_sends",
                "a limit needs one of max_sends, max_units or max_cost",
            );
            None
        }
        _ => {
            p.add(
                "",
                "has more than one of max_sends, max_units and max_cost; write one limit each",
            );
            None
        }
    };
    Some(LimitSettings {
        name: name?,
        scope: scope?,
        classes,
        channels,
        window: window?,
        max: max?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{load_str, LoadError};

    fn keys(text: &str) -> Vec<String> {
        match load_str("test.toml", text, &|_| None) {
            Err(LoadError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.key).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_limit_reads_as_a_sentence() {
        let settings = load_str(
            "test.toml",
            r#"
            [[limits]]
            name = "shop-budget"
            scope = "client"
            window = "1d"
            max_cost = "50.00"
            "#,
            &|_| None,
        )
        .unwrap();
        let described: Vec<String> = settings
            .traffic
            .effective()
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(
            described,
            [
                "shop-budget: at most 50.00 yuan of charges per client per 1d (every class, every channel)",
                "default.critical_per_number_1m: at most 1 send per mobile number per 1m (critical sends, every channel)",
                "default.critical_per_number_1h: at most 5 sends per mobile number per 1h (critical sends, every channel)",
                "default.critical_per_number_1d: at most 10 sends per mobile number per 1d (critical sends, every channel)",
            ]
        );
        assert_eq!(super::window_text(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn every_bad_limit_is_named_by_its_key() {
        let found = keys(
            r#"
            [[channels]]
            name = "sms"
            kind = "sms_code"
            url = "https://a"
            signature = "【卡池】"

            [[limits]]
            name = "a"
            scope = "device"
            classes = ["urgent"]
            channels = ["fax"]
            window = "soon"
            max_sends = 0

            [[limits]]
            name = "default.mine"
            scope = "mobile"
            window = "1h"
            max_cost = "5.00"

            [[limits]]
            name = "b"
            scope = "client"
            window = "40d"
            max_sends = 3
            max_units = 4
            "#,
        );
        for key in [
            "limits[0].scope",
            "limits[0].classes[0]",
            "limits[0].channels",
            "limits[0].window",
            "limits[0].max_sends",
            "limits[1].name",
            "limits[1].max_cost",
            "limits[2].window",
            "limits[2]",
        ] {
            assert!(keys_contain(&found, key), "{key} missing from {found:?}");
        }
    }

    fn keys_contain(found: &[String], key: &str) -> bool {
        found.iter().any(|k| k == key)
    }

    #[test]
    fn the_built_in_limits_are_on_unless_turned_off() {
        let settings = load_str("t", "", &|_| None).unwrap();
        assert_eq!(settings.traffic.effective().len(), 3);
        let off = load_str("t", "[traffic]\ndefault_limits = false\n", &|_| None).unwrap();
        assert!(off.traffic.effective().is_empty());
    }
}
