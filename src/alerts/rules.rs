//! The rules the engine evaluates: the configured `[[alert_rules]]` and the two built-in
//! critical rules, each deciding from a channel's facts whether it holds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tollgate_notify::{EventKind, Severity, Status};

use super::forecast::Forecast;
use crate::config::alerts::{AlertRule, ChannelSelector, Condition};
use crate::config::Settings;
use crate::domain::ChannelName;
use crate::ledger::QuotaView;

/// What makes a rule hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    Condition(Condition),
    /// Built in: no unit left on a channel that has had a package.
    Exhausted,
    /// Built in: the vendor's last word on the AppCode was a refusal.
    AuthFailed,
}

/// One rule as the engine runs it.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub channels: ChannelSelector,
    pub trigger: Trigger,
    pub severity: Severity,
    pub notify: Vec<String>,
    pub repeat_every: Duration,
}

/// What the engine knows of one channel when it evaluates the rules.
#[derive(Debug, Clone)]
pub struct ChannelFacts {
    pub quota: QuotaView,
    pub forecast: Forecast,
    /// Whether the channel has ever had a package.
    pub has_packages: bool,
    pub auth_failing: bool,
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(24 * 3600);

impl RuleSpec {
    /// The configured rules followed by the built-in ones, which notify every
    /// configured notifier.
    pub fn all(settings: &Settings) -> Vec<RuleSpec> {
        let everyone: Vec<String> = settings
            .alerts
            .notifiers
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let mut rules: Vec<RuleSpec> = settings
            .alerts
            .rules
            .iter()
            .map(RuleSpec::configured)
            .collect();
        for (name, trigger) in [
            ("quota.exhausted", Trigger::Exhausted),
            ("provider.auth_failed", Trigger::AuthFailed),
        ] {
            rules.push(RuleSpec {
                name: name.to_owned(),
                channels: ChannelSelector::All,
                trigger,
                severity: Severity::Critical,
                notify: everyone.clone(),
                repeat_every: DEFAULT_REPEAT,
            });
        }
        rules
    }

    fn configured(rule: &AlertRule) -> RuleSpec {
        RuleSpec {
            name: rule.name.clone(),
            channels: rule.channels.clone(),
            trigger: Trigger::Condition(rule.condition),
            severity: rule.severity,
            notify: rule.notify.clone(),
            repeat_every: rule.repeat_every,
        }
    }

    pub fn applies_to(&self, channel: &ChannelName) -> bool {
        self.channels.matches(channel)
    }

    /// Whether the rule's condition holds for the channel now.
    pub fn holds(&self, facts: &ChannelFacts, now: DateTime<Utc>) -> bool {
        let quota = &facts.quota;
        // Quota rules say nothing about a channel that never had a package: that one
        // is named at start and by `config check` instead.
        let bought = facts.has_packages && quota.purchased > 0;
        match self.trigger {
            Trigger::Exhausted => facts.has_packages && quota.remaining <= 0,
            Trigger::AuthFailed => facts.auth_failing,
            Trigger::Condition(Condition::RemainingRatioBelow(ratio)) => {
                bought && quota.remaining_ratio < ratio
            }
            Trigger::Condition(Condition::RemainingUnitsBelow(units)) => {
                bought && quota.remaining < units
            }
            Trigger::Condition(Condition::DaysLeftBelow(days)) => {
                bought && quota.days_left.is_some_and(|left| left < days)
            }
            Trigger::Condition(Condition::ExpiresWithin(within)) => {
                let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
                quota
                    .next_expiry
                    .is_some_and(|expiry| expiry > now && expiry - now <= within)
            }
        }
    }

    /// The event name of a notification of this rule.
    pub fn event_kind(&self, status: Status) -> EventKind {
        match (self.trigger, status) {
            (Trigger::AuthFailed, _) => EventKind::ProviderAuthFailed,
            (Trigger::Condition(Condition::ExpiresWithin(_)), _) => EventKind::PackageExpiring,
            (_, Status::Resolved) => EventKind::QuotaRecovered,
            (Trigger::Exhausted, Status::Firing) => EventKind::QuotaExhausted,
            (Trigger::Condition(_), Status::Firing) => EventKind::QuotaLow,
        }
    }

    /// One sentence in zh-CN for the event's `summary`.
    pub fn summary(&self, channel: &ChannelName, facts: &ChannelFacts, status: Status) -> String {
        let quota = &facts.quota;
        let left = format!(
            "剩余 {} / {} 条（{:.1}%）",
            quota.remaining,
            quota.purchased,
            quota.remaining_ratio * 100.0
        );
        let forecast = match quota.days_left {
            Some(days) => format!(
                "，按近 7 天日均 {:.1} 条约 {days:.1} 天后用完",
                quota.burn_rate_per_day
            ),
            None => String::new(),
        };
        let suggestion = facts
            .forecast
            .suggested_units
            .map(|units| format!("，建议续购约 {units} 条"))
            .unwrap_or_default();
        match (self.trigger, status) {
            (Trigger::AuthFailed, Status::Firing) => format!(
                "渠道 {channel} 调用供应商时 AppCode 认证失败，发送全部失败；请检查 AppCode 是否正确、服务是否已授权。"
            ),
            (Trigger::AuthFailed, Status::Resolved) => {
                format!("渠道 {channel} 的 AppCode 认证已恢复正常。")
            }
            (Trigger::Exhausted, Status::Firing) => format!(
                "渠道 {channel} 的套餐已用完，发送将被拒绝{suggestion}。"
            ),
            (Trigger::Condition(Condition::ExpiresWithin(_)), Status::Firing) => {
                let expiry = quota
                    .next_expiry
                    .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                format!("渠道 {channel} 有套餐将于 {expiry} 过期，未用完的条数将作废；{left}。")
            }
            (Trigger::Condition(Condition::ExpiresWithin(_)), Status::Resolved) => {
                format!("渠道 {channel} 已无即将过期的套餐；{left}。")
            }
            (Trigger::Condition(_), Status::Firing) => {
                format!("渠道 {channel} 套餐余量不足：{left}{forecast}{suggestion}。")
            }
            (_, Status::Resolved) => format!("渠道 {channel} 套餐余量已恢复：{left}。"),
        }
    }
}
