//! `[[alert_rules]]`, `[[notifiers]]` and `[alerts]`: parsed and checked into
//! [`AlertSettings`], every problem named by its key.
//!
//! A notifier's table is handed, without its `name` and `type`, to the plugin that its
//! `type` selects in [`super::notifier_plugins::PLUGINS`]; the plugin refuses unknown
//! keys and checks its values in a pure `validate`, recording every problem. Secrets
//! are read later, when the server builds the notifiers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tollgate_notify::{BuildNotifier, Problems, Severity, DELIVERY_LEASE};

use super::notifier_plugins::{type_list, Plugin};
use super::settings::ChannelSettings;
use crate::domain::ChannelName;

/// The built-in rules' names; configured rules may not take them (`ledger.drift` is
/// built in only with `[marketplace]`, but its name is kept free either way).
pub const BUILTIN_RULES: [&str; 3] = ["quota.exhausted", "provider.auth_failed", "ledger.drift"];

/// Everything the alert engine and the outbox are configured with.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub rules: Vec<AlertRule>,
    pub notifiers: Vec<NotifierSettings>,
    pub delivery: DeliverySettings,
    /// `[alerts] suggest_days`: the days of use a reminder's purchase suggestion covers.
    pub suggest_days: u32,
}

/// The default of `[alerts] suggest_days`.
pub const DEFAULT_SUGGEST_DAYS: u32 = 30;

/// The fewest sends in the last hour that can count as a burst (SPEC §12).
pub const DEFAULT_MIN_HOURLY_SENDS: i64 = 20;

/// One `[[alert_rules]]` entry.
#[derive(Debug, Clone)]
pub struct AlertRule {
    pub name: String,
    pub channels: ChannelSelector,
    pub condition: Condition,
    pub severity: Severity,
    /// Notifier names, each one configured.
    pub notify: Vec<String>,
    pub repeat_every: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelSelector {
    All,
    Named(Vec<ChannelName>),
}

impl ChannelSelector {
    pub fn matches(&self, channel: &ChannelName) -> bool {
        match self {
            ChannelSelector::All => true,
            ChannelSelector::Named(names) => names.contains(channel),
        }
    }
}

/// The one condition a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    RemainingRatioBelow(f64),
    RemainingUnitsBelow(i64),
    /// Forecast from the trailing 7-day burn rate.
    DaysLeftBelow(f64),
    /// The earliest expiry of a live package is this close.
    ExpiresWithin(Duration),
    /// The last hour's sends exceed `factor` times the trailing 7-day hourly average,
    /// and number at least `min_hourly_sends`.
    BurstFactorAbove {
        factor: f64,
        min_hourly_sends: i64,
    },
    /// What is left is within the units kept for critical sends.
    ReserveEntered,
}

/// One `[[notifiers]]` entry, checked; [`BuildNotifier::build`] makes it a notifier.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub name: String,
    pub kind: &'static str,
    pub plugin: Arc<dyn BuildNotifier>,
}

/// How the outbox retries: after attempt n fails, it waits
/// `min(retry_initial · 2^(n-1), retry_max)`, and gives up after `max_attempts`.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_attempts: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 20,
        }
    }
}

/// `[[alert_rules]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlertRule {
    pub name: Option<String>,
    pub channels: Option<OneOrMany>,
    pub remaining_ratio_below: Option<f64>,
    pub remaining_units_below: Option<i64>,
    pub days_left_below: Option<f64>,
    pub expires_within: Option<String>,
    /// SPEC §12: the last hour's sends above this many times the trailing 7-day hourly
    /// average (`traffic.burst`), with at least `min_hourly_sends` in that hour.
    pub burst_factor_above: Option<f64>,
    pub min_hourly_sends: Option<i64>,
    /// SPEC §11: what is left has fallen into the units kept for critical sends.
    pub reserve_entered: Option<bool>,
    pub severity: Option<String>,
    pub notify: Option<OneOrMany>,
    pub repeat_every: Option<String>,
}

/// `channels = "*"`, `["*"]` or `["a", "b"]`: which channels a rule or limit covers
/// (every one when absent), each name a configured channel.
pub(super) fn channel_selector(
    raw: Option<OneOrMany>,
    channels: &[ChannelSettings],
    p: &mut Problems,
) -> ChannelSelector {
    match raw.map(OneOrMany::into_vec) {
        None => ChannelSelector::All,
        Some(names) if names.iter().any(|n| n == "*") => {
            if names.len() > 1 {
                p.add("channels", "\"*\" already means every channel");
            }
            ChannelSelector::All
        }
        Some(names) if names.is_empty() => {
            p.add(
                "channels",
                "names no channel (use [\"*\"] for every channel)",
            );
            ChannelSelector::All
        }
        Some(names) => {
            let mut found = Vec::new();
            for name in names {
                match channels.iter().find(|c| c.name.as_str() == name) {
                    Some(channel) => found.push(channel.name.clone()),
                    None => p.add("channels", format!("no channel is named {name:?}")),
                }
            }
            ChannelSelector::Named(found)
        }
    }
}

/// `"*"` or `["a", "b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// `[alerts]` as written: delivery tuning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlerts {
    pub retry_initial: Option<String>,
    pub retry_max: Option<String>,
    pub max_attempts: Option<u32>,
    pub suggest_days: Option<u32>,
}

/// Checks the alert sections against the configured `channels`, recording every
/// problem (`alerts.…`, `notifiers[i].…`, `alert_rules[i].…`).
pub fn check(
    raw_alerts: &RawAlerts,
    raw_rules: &[RawAlertRule],
    raw_notifiers: &[toml::Table],
    channels: &[ChannelSettings],
    p: &mut Problems,
) -> AlertSettings {
    let delivery = p.scoped("alerts", |p| delivery(raw_alerts, p));
    let suggest_days = match raw_alerts.suggest_days {
        None => DEFAULT_SUGGEST_DAYS,
        Some(days @ 1..=366) => days,
        Some(_) => {
            p.add("alerts.suggest_days", "must be from 1 to 366 days");
            DEFAULT_SUGGEST_DAYS
        }
    };
    let mut notifiers = Vec::new();
    let mut notifier_names = BTreeSet::new();
    for (i, table) in raw_notifiers.iter().enumerate() {
        let notifier = p.scoped(&format!("notifiers[{i}]"), |p| {
            notifier(table, &mut notifier_names, p)
        });
        notifiers.extend(notifier);
    }
    let mut rules = Vec::new();
    let mut rule_names = BTreeSet::new();
    for (i, raw) in raw_rules.iter().enumerate() {
        let rule = p.scoped(&format!("alert_rules[{i}]"), |p| {
            rule(raw, channels, &notifier_names, &mut rule_names, p)
        });
        rules.extend(rule);
    }
    AlertSettings {
        rules,
        notifiers,
        delivery,
        suggest_days,
    }
}

/// `[alerts]`.
fn delivery(raw: &RawAlerts, p: &mut Problems) -> DeliverySettings {
    let defaults = DeliverySettings::default();
    let mut delivery = DeliverySettings {
        retry_initial: p.duration(
            "retry_initial",
            raw.retry_initial.as_deref(),
            defaults.retry_initial,
        ),
        retry_max: p.duration("retry_max", raw.retry_max.as_deref(), defaults.retry_max),
        max_attempts: raw.max_attempts.unwrap_or(defaults.max_attempts),
    };
    if delivery.max_attempts == 0 {
        p.add("max_attempts", "must be at least 1");
        delivery.max_attempts = 1;
    }
    delivery
}

/// One `[[notifiers]]` table: `name` and `type` are tollgate's, the rest goes to the
/// plugin that `type` selects.
fn notifier(
    table: &toml::Table,
    names: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<NotifierSettings> {
    let mut table = table.clone();
    let name = match table.remove("name") {
        Some(toml::Value::String(name)) if is_label_safe(&name) => Some(name),
        Some(toml::Value::String(_)) => {
            p.add(
                "name",
                "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
            );
            None
        }
        Some(_) => {
            p.add("name", "must be a string");
            None
        }
        None => {
            p.add("name", "is required");
            None
        }
    };
    if let Some(name) = &name {
        if !names.insert(name.clone()) {
            p.add("name", format!("notifier {name} is defined twice"));
        }
    }
    let plugin = match table.remove("type") {
        Some(toml::Value::String(kind)) => match Plugin::find(&kind) {
            Some(plugin) => Some(plugin),
            None => {
                p.add(
                    "type",
                    format!(
                        "{kind:?} is not a notifier type; the types are {}",
                        type_list()
                    ),
                );
                None
            }
        },
        Some(_) => {
            p.add("type", format!("must be a string: one of {}", type_list()));
            None
        }
        None => {
            p.add("type", format!("is required: one of {}", type_list()));
            None
        }
    }?;
    let checked = plugin.check(table, p)?;
    if checked.timeout() >= DELIVERY_LEASE {
        p.add(
            "timeout",
            format!(
                "must be below {}: the outbox hands a delivery that takes longer to another worker, which would deliver it twice",
                as_config_duration(DELIVERY_LEASE)
            ),
        );
        return None;
    }
    Some(NotifierSettings {
        name: name?,
        kind: plugin.kind,
        plugin: checked,
    })
}

/// One `[[alert_rules]]` entry.
fn rule(
    raw: &RawAlertRule,
    channels: &[ChannelSettings],
    notifier_names: &BTreeSet<String>,
    rule_names: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<AlertRule> {
    let name = match raw.name.as_deref().map(str::trim) {
        Some(name) if BUILTIN_RULES.contains(&name) => {
            p.add("name", format!("{name} is a built-in rule"));
            None
        }
        Some(name) if is_label_safe(name) => Some(name.to_owned()),
        Some(_) => {
            p.add(
                "name",
                "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
            );
            None
        }
        None => {
            p.add("name", "is required");
            None
        }
    };
    if let Some(name) = &name {
        if !rule_names.insert(name.clone()) {
            p.add("name", format!("rule {name} is defined twice"));
        }
    }
    let selector = channel_selector(raw.channels.clone(), channels, p);
    let mut conditions = Vec::new();
    if let Some(ratio) = raw.remaining_ratio_below {
        if !(ratio > 0.0 && ratio <= 1.0) {
            p.add(
                "remaining_ratio_below",
                "must be a fraction above 0 and at most 1, such as 0.2",
            );
        }
        conditions.push(Condition::RemainingRatioBelow(ratio));
    }
    if let Some(units) = raw.remaining_units_below {
        if units <= 0 {
            p.add("remaining_units_below", "must be above 0");
        }
        conditions.push(Condition::RemainingUnitsBelow(units));
    }
    if let Some(days) = raw.days_left_below {
        if !(days > 0.0 && days.is_finite()) {
            p.add("days_left_below", "must be above 0");
        }
        conditions.push(Condition::DaysLeftBelow(days));
    }
    if let Some(within) = &raw.expires_within {
        let within = p.duration("expires_within", Some(within), Duration::ZERO);
        conditions.push(Condition::ExpiresWithin(within));
    }
    if let Some(factor) = raw.burst_factor_above {
        if !(factor > 1.0 && factor.is_finite()) {
            p.add("burst_factor_above", "must be a factor above 1, such as 10");
        }
        let min_hourly_sends = raw.min_hourly_sends.unwrap_or(DEFAULT_MIN_HOURLY_SENDS);
        if min_hourly_sends < 1 {
            p.add("min_hourly_sends", "must be at least 1");
        }
        conditions.push(Condition::BurstFactorAbove {
            factor,
            min_hourly_sends,
        });
    } else if raw.min_hourly_sends.is_some() {
        p.add("min_hourly_sends", "goes with burst_factor_above");
    }
    match raw.reserve_entered {
        Some(true) => conditions.push(Condition::ReserveEntered),
        Some(false) => p.add(
            "reserve_entered",
            "can only be true (leave it out for no such condition)",
        ),
        None => {}
    }
    let condition = match conditions.as_slice() {
        [one] => Some(*one),
        [] => {
            p.add(
                "remaining_ratio_below",
                "a rule needs one condition: remaining_ratio_below, remaining_units_below, days_left_below, expires_within, burst_factor_above or reserve_entered",
            );
            None
        }
        _ => {
            p.add(
                "",
                "has more than one condition; write one rule per condition",
            );
            None
        }
    };
    let severity = match raw.severity.as_deref() {
        None => Severity::Warning,
        Some(raw) => Severity::parse(raw).unwrap_or_else(|| {
            p.add(
                "severity",
                format!("{raw:?} is not \"info\", \"warning\" or \"critical\""),
            );
            Severity::Warning
        }),
    };
    let notify = raw
        .notify
        .clone()
        .map(OneOrMany::into_vec)
        .unwrap_or_default();
    for (j, notifier) in notify.iter().enumerate() {
        if !notifier_names.contains(notifier) {
            p.add(
                &format!("notify[{j}]"),
                format!("no notifier is named {notifier:?}"),
            );
        }
    }
    let repeat_every = p.duration(
        "repeat_every",
        raw.repeat_every.as_deref(),
        Duration::from_secs(24 * 3600),
    );
    Some(AlertRule {
        name: name?,
        channels: selector,
        condition: condition?,
        severity,
        notify,
        repeat_every,
    })
}

/// `300s` as `5m`, as the configuration would write it.
fn as_config_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Rule and notifier names become metric labels: a short, plain alphabet.
fn is_label_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, LoadError};

    fn problems(text: &str) -> Vec<(String, String)> {
        match load_str("test.toml", text, &|_| None) {
            Err(LoadError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| (p.key, p.problem)).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    const CHANNEL: &str = r#"
        [[channels]]
        name = "sms_code"
        kind = "sms_code"
        url = "https://a"
        signature = "【卡池】"
    "#;

    #[test]
    fn the_spec_example_rules_and_notifiers_load() {
        let text = include_str!("../../tests/fixtures/spec-example.toml");
        let settings = load_str("spec", text, &|_| None).unwrap();
        let alerts = &settings.alerts;
        assert_eq!(alerts.rules.len(), 1);
        assert_eq!(
            alerts.rules[0].condition,
            super::Condition::RemainingRatioBelow(0.2)
        );
        assert_eq!(alerts.rules[0].repeat_every.as_secs(), 24 * 3600);
        let kinds: Vec<_> = alerts.notifiers.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, ["email", "webhook"]);
    }

    #[test]
    fn every_problem_names_its_key() {
        let found = problems(&format!(
            r#"{CHANNEL}
            [[alert_rules]]
            name = "low"
            channels = ["sms_code", "fax"]
            remaining_ratio_below = 1.5
            severity = "panic"
            notify = ["nobody"]
            repeat_every = "often"

            [[alert_rules]]
            name = "two"
            remaining_units_below = 10
            days_left_below = 3.0

            [[alert_rules]]
            name = "quota.exhausted"
            remaining_units_below = 1

            [[notifiers]]
            name = "mail"
            type = "email"
            smtp_url = "http://mail"
            from = "a@example.com"
            to = ["b@example.com"]

            [[notifiers]]
            name = "hook"
            type = "webhook"
            url = "https://a"
            secret = "inline"

            [[notifiers]]
            name = "pager"
            type = "pager"
            "#
        ));
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "alert_rules[0].channels",
            "alert_rules[0].remaining_ratio_below",
            "alert_rules[0].severity",
            "alert_rules[0].notify[0]",
            "alert_rules[0].repeat_every",
            "alert_rules[1]",
            "alert_rules[2].name",
            "notifiers[0].smtp_url",
            "notifiers[1]",
            "notifiers[2].type",
        ] {
            assert!(keys.contains(&key), "{key} missing from {found:?}");
        }
        let unknown = found.iter().find(|(k, _)| k == "notifiers[1]").unwrap();
        assert!(unknown.1.contains("secret"), "{unknown:?}");
    }

    #[test]
    fn a_rule_needs_a_condition() {
        let found = problems("[[alert_rules]]\nname = \"x\"\n");
        assert_eq!(found[0].0, "alert_rules[0].remaining_ratio_below");
    }

    #[test]
    fn no_configured_rule_may_take_a_built_in_name() {
        for name in ["quota.exhausted", "provider.auth_failed", "ledger.drift"] {
            let found = problems(&format!(
                "{CHANNEL}\n[[alert_rules]]\nname = \"{name}\"\nremaining_units_below = 1\n"
            ));
            assert_eq!(
                found,
                [(
                    "alert_rules[0].name".to_owned(),
                    format!("{name} is a built-in rule")
                )]
            );
        }
    }
}
