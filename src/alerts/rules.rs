//! The rules the engine evaluates: the configured `[[alert_rules]]` and the built-in
//! ones (`quota.exhausted`, `provider.auth_failed`, and `ledger.drift` when the
//! marketplace's count is read or a vendor's answers carry a count), each deciding from a
//! channel's facts whether it holds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tollgate_notify::{local_time, unit_zh, EventKind, Severity, Status};

use super::forecast::Forecast;
use crate::config::alerts::{AlertRule, ChannelSelector, Condition};
use crate::config::marketplace::DEFAULT_DRIFT_ALERT_UNITS;
use crate::config::{ChannelSettings, Settings};
use crate::domain::ChannelName;
use crate::ledger::{MarketplaceRun, Package, QuotaView, RunOutcome};

/// What makes a rule hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    Condition(Condition),
    /// Built in: no unit left on a channel that has had a package.
    Exhausted,
    /// Built in: the vendor's last word on the AppCode was a refusal.
    AuthFailed,
    /// Built in with `[marketplace]` or a channel's `remaining_field`: the channel's
    /// latest marketplace run found the ledger this many units or more away from the
    /// marketplace's count, or the vendor's latest answer that carried a count is this
    /// far from the ledger's (beyond the sends under way), either way.
    Drift {
        units: u64,
    },
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
    /// The channel's latest marketplace run, when it has a product code and a run.
    pub marketplace: Option<MarketplaceRun>,
    /// The vendor's own count from its latest answer that carried one, beside the
    /// ledger's, when the channel has a `remaining_field` and that count is current.
    pub vendor: Option<VendorCount>,
    /// Its sends per hour lately, when a burst rule applies to it.
    pub traffic: Option<HourlyTraffic>,
}

/// A channel's recent traffic, for the burst rule (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourlyTraffic {
    /// Sends settled in the last hour: the larger of the trailing 60 minutes (estimated
    /// from hour buckets) and the last complete hour, so that a burst straddling an hour
    /// boundary is seen whole rather than split.
    pub last_hour: i64,
    /// Sends per hour over the 7 days before that hour.
    pub hourly_average: f64,
}

impl HourlyTraffic {
    /// From hour buckets (`(start, sends)`, oldest first) up to `now`: the trailing hour
    /// is the current bucket and the part of the one before that falls in it (shared by
    /// time, since a bucket does not say when in its hour its sends were); the last
    /// complete hour is that bucket whole.
    pub fn from_hours(hours: &[(DateTime<Utc>, i64)], now: DateTime<Utc>) -> HourlyTraffic {
        let hour = chrono::Duration::hours(1);
        let window_start = now - hour;
        let mut last_hour = 0.0;
        let mut last_complete_hour = 0;
        let mut before = 0.0;
        for &(start, sends) in hours {
            let end = start + hour;
            let sends = sends as f64;
            if start >= window_start {
                last_hour += sends;
            } else if end > window_start {
                // Straddles the start of the trailing hour: shared by share of time.
                let inside = (end - window_start).num_seconds() as f64 / 3_600.0;
                last_hour += sends * inside;
                before += sends * (1.0 - inside);
                last_complete_hour = sends as i64;
            } else {
                before += sends;
            }
        }
        HourlyTraffic {
            last_hour: (last_hour.round() as i64).max(last_complete_hour),
            hourly_average: before / (7.0 * 24.0),
        }
    }
}

/// The vendor's own count of what is left (`remaining_field`, SPEC §13) beside the
/// ledger's, as `ledger.drift` compares them (SPEC §14: "compared in the same way" as the
/// marketplace's count).
///
/// The two are not taken at the same moment: the vendor's count is as of its latest
/// answer that carried one, the ledger's is now. Two things move the ledger between
/// those moments without any unit being billed around tollgate, and the comparison
/// allows for both rather than raise a false alarm on a busy channel or after a purchase:
///
/// - *sends under way*: their units are held (`reserved`) and already off the ledger's
///   `remaining`, while the vendor may or may not have counted them when it answered.
///   The vendor's count agrees with the ledger anywhere from `remaining` to
///   `remaining + reserved`; only what lies outside that window is drift.
/// - *a package registered after the answer*: the vendor's count predates the purchase,
///   so it is not compared at all until the next answer brings it up to date
///   ([`VendorCount::current`] is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorCount {
    /// What the vendor said was left.
    pub vendor_remaining: i64,
    /// When it said so (the answer's settlement).
    pub answered_at: DateTime<Utc>,
    /// What the ledger has left now.
    pub ledger_remaining: i64,
    /// Units the ledger holds for sends under way now.
    pub ledger_reserved: i64,
}

impl VendorCount {
    /// The channel's vendor count from its quota view, when an answer carried one and no
    /// package was registered after it. `packages` are the channel's.
    pub fn current(quota: &QuotaView, packages: &[Package]) -> Option<VendorCount> {
        let vendor_remaining = quota.vendor_remaining?;
        let answered_at = quota.vendor_remaining_at?;
        if packages.iter().any(|p| p.purchased_at > answered_at) {
            return None;
        }
        Some(VendorCount {
            vendor_remaining,
            answered_at,
            ledger_remaining: quota.remaining,
            ledger_reserved: quota.reserved.max(0),
        })
    }

    /// The vendor's count minus the ledger's beyond the sends under way: positive when
    /// the vendor has more left than the ledger even with every send under way counted
    /// as not yet made, negative when it has less even with all of them counted as
    /// made, 0 in between. The sign is that of `tollgate_ledger_drift_units`.
    pub fn drift(&self) -> i64 {
        let upper = self.ledger_remaining + self.ledger_reserved;
        if self.vendor_remaining > upper {
            self.vendor_remaining - upper
        } else if self.vendor_remaining < self.ledger_remaining {
            self.vendor_remaining - self.ledger_remaining
        } else {
            0
        }
    }

    /// The size of the drift, either way.
    pub fn drift_units(&self) -> u64 {
        self.drift().unsigned_abs()
    }
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(24 * 3600);

impl RuleSpec {
    /// The configured rules followed by the built-in ones, which notify every
    /// configured notifier. `ledger.drift` is built in only when a count other than the
    /// ledger's is read: the marketplace's (`[marketplace]`, for the channels with a
    /// `product_code`) or the vendor's own (for the channels with a `remaining_field`).
    /// Its threshold is `[marketplace] drift_alert_units`, or that key's default without
    /// a `[marketplace]` section.
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
        let compared_channels: Vec<ChannelName> = settings
            .channels
            .iter()
            .filter(|c| {
                (settings.marketplace.is_some() && c.product_code.is_some())
                    || c.carries_vendor_count()
            })
            .map(|c| c.name.clone())
            .collect();
        if !compared_channels.is_empty() {
            let units = settings
                .marketplace
                .as_ref()
                .map_or(DEFAULT_DRIFT_ALERT_UNITS, |m| m.drift_alert_units);
            rules.push(RuleSpec {
                name: "ledger.drift".to_owned(),
                channels: ChannelSelector::Named(compared_channels),
                trigger: Trigger::Drift { units },
                severity: Severity::Warning,
                notify: everyone,
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
            Trigger::Drift { units } => {
                facts
                    .marketplace
                    .as_ref()
                    .is_some_and(|run| run.drift_units() >= units)
                    || facts
                        .vendor
                        .is_some_and(|count| count.drift_units() >= units)
            }
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
            Trigger::Condition(Condition::ReserveEntered) => {
                bought && quota.reserve_units > 0 && quota.remaining <= quota.reserve_units
            }
            Trigger::Condition(Condition::BurstFactorAbove {
                factor,
                min_hourly_sends,
            }) => facts.traffic.is_some_and(|t| {
                t.last_hour >= min_hourly_sends && t.last_hour as f64 > factor * t.hourly_average
            }),
        }
    }

    /// The event name of a notification of this rule.
    pub fn event_kind(&self, status: Status) -> EventKind {
        match (self.trigger, status) {
            (Trigger::AuthFailed, _) => EventKind::ProviderAuthFailed,
            (Trigger::Drift { .. }, _) => EventKind::LedgerDrift,
            (Trigger::Condition(Condition::ExpiresWithin(_)), _) => EventKind::PackageExpiring,
            (Trigger::Condition(Condition::BurstFactorAbove { .. }), _) => EventKind::TrafficBurst,
            (_, Status::Resolved) => EventKind::QuotaRecovered,
            (Trigger::Exhausted, Status::Firing) => EventKind::QuotaExhausted,
            (Trigger::Condition(_), Status::Firing) => EventKind::QuotaLow,
        }
    }

    /// The event's `summary` in zh-CN: what happened, the figures, and for quota
    /// reminders how much to buy and why. Times are local to `timezone`; units are the
    /// channel's (条 or 次).
    pub fn summary(
        &self,
        channel: &ChannelSettings,
        facts: &ChannelFacts,
        status: Status,
        timezone: Tz,
    ) -> String {
        let name = &channel.name;
        let unit = unit_zh(Some(channel.kind.as_str()));
        let quota = &facts.quota;
        let left = format!(
            "剩余 {} / {} {unit}（{:.1}%）",
            quota.remaining,
            quota.pool_units,
            quota.remaining_ratio * 100.0
        );
        let forecast = match quota.days_left {
            Some(days) => format!("，预计约 {days:.1} 天后用完"),
            None => String::new(),
        };
        let suggestion = facts
            .forecast
            .suggestion
            .as_ref()
            .map(|s| format!("{}。", s.explain_zh(unit)))
            .unwrap_or_default();
        match (self.trigger, status) {
            (Trigger::AuthFailed, Status::Firing) => format!(
                "渠道 {name} 调用供应商时 AppCode 认证失败，发送全部失败；请检查 AppCode 是否正确、服务是否已授权。"
            ),
            (Trigger::AuthFailed, Status::Resolved) => {
                format!("渠道 {name} 的 AppCode 认证已恢复正常。")
            }
            (Trigger::Drift { units }, status) => {
                let compared = Compared {
                    marketplace: facts.marketplace.as_ref(),
                    vendor: facts.vendor,
                };
                drift_summary(name, unit, units, compared, status, timezone)
            }
            (Trigger::Exhausted, Status::Firing) => {
                format!("渠道 {name} 的套餐已用完，发送将被拒绝。{suggestion}")
            }
            (Trigger::Condition(Condition::ExpiresWithin(_)), Status::Firing) => {
                let expiry = quota
                    .next_expiry
                    .map(|at| local_time(at, timezone))
                    .unwrap_or_default();
                format!(
                    "渠道 {name} 有套餐将于 {expiry} 过期，未用完的{unit}数将作废；{left}。"
                )
            }
            (Trigger::Condition(Condition::ExpiresWithin(_)), Status::Resolved) => {
                format!("渠道 {name} 已无即将过期的套餐；{left}。")
            }
            (Trigger::Condition(Condition::BurstFactorAbove { factor, .. }), status) => {
                burst_summary(name, factor, facts.traffic, status)
            }
            (Trigger::Condition(Condition::ReserveEntered), Status::Firing) => format!(
                "渠道 {name} 的余量已进入为验证码保留的 {} {unit}：现在只有验证码（critical）还能发送，通知和营销短信会被拒绝；{left}。{suggestion}",
                quota.reserve_units
            ),
            (Trigger::Condition(_), Status::Firing) => {
                format!("渠道 {name} 套餐余量不足：{left}{forecast}。{suggestion}")
            }
            (_, Status::Resolved) => format!("渠道 {name} 套餐余量已恢复：{left}。"),
        }
    }
}

/// `traffic.burst`'s summary: the figures, and what to look at.
fn burst_summary(
    name: &ChannelName,
    factor: f64,
    traffic: Option<HourlyTraffic>,
    status: Status,
) -> String {
    let Some(t) = traffic else {
        return format!("渠道 {name} 暂无流量数据。");
    };
    match status {
        Status::Firing => format!(
            "渠道 {name} 最近一小时发送 {} 次，约为过去 7 天每小时平均 {:.1} 次的 {:.0} 倍（阈值 {factor} 倍）。\
             请检查是否有人在刷验证码接口（短信轰炸）、短信拉量（SMS pumping）或有失控的批量任务：\
             查看这段时间的调用方与号码分布，必要时收紧 [[limits]] 或停用相关客户端。",
            t.last_hour,
            t.hourly_average,
            if t.hourly_average > 0.0 {
                t.last_hour as f64 / t.hourly_average
            } else {
                factor
            }
        ),
        Status::Resolved => format!(
            "渠道 {name} 的发送量已恢复：最近一小时 {} 次，过去 7 天每小时平均 {:.1} 次。",
            t.last_hour, t.hourly_average
        ),
    }
}

/// The counts `ledger.drift` compares the ledger's with on one channel.
struct Compared<'a> {
    marketplace: Option<&'a MarketplaceRun>,
    vendor: Option<VendorCount>,
}

/// `ledger.drift`'s summary, one part per count: when firing, each count that is the
/// threshold or more away from the ledger's (the marketplace's, the vendor's answer's,
/// or both), naming which; when resolved, each count there is.
fn drift_summary(
    name: &ChannelName,
    unit: &str,
    threshold: u64,
    compared: Compared<'_>,
    status: Status,
    timezone: Tz,
) -> String {
    let shown = |drift_units: u64| status == Status::Resolved || drift_units >= threshold;
    let mut parts = Vec::new();
    if let Some(run) = compared.marketplace.filter(|run| shown(run.drift_units())) {
        parts.push(marketplace_drift_summary(
            name, unit, threshold, run, status,
        ));
    }
    if let Some(count) = compared.vendor.filter(|count| shown(count.drift_units())) {
        parts.push(vendor_drift_summary(
            name, unit, threshold, &count, status, timezone,
        ));
    }
    if parts.is_empty() {
        return format!("渠道 {name} 尚无云市场或供应商应答的余量记录。");
    }
    parts.join(" ")
}

/// The part of `ledger.drift`'s summary about the vendor's own count: in zh-CN, then in
/// English (the field is a vendor's own and is read by whoever set it up), both figures,
/// the difference, and where to look. Nothing is adjusted from a vendor's count: it is
/// one answer's figure, read from a field the configuration names.
fn vendor_drift_summary(
    name: &ChannelName,
    unit: &str,
    threshold: u64,
    count: &VendorCount,
    status: Status,
    timezone: Tz,
) -> String {
    let at = local_time(count.answered_at, timezone);
    let (vendor, ledger, reserved) = (
        count.vendor_remaining,
        count.ledger_remaining,
        count.ledger_reserved,
    );
    let under_way_zh = if reserved > 0 {
        format!("，另有 {reserved} {unit}在途未结算")
    } else {
        String::new()
    };
    let under_way_en = if reserved > 0 {
        format!(", {reserved} more held by sends under way")
    } else {
        String::new()
    };
    match status {
        Status::Firing => format!(
            "渠道 {name} 的账本与供应商应答中的余量相差 {drift} {unit}（供应商 {at} 的应答剩余 {vendor} {unit}，账本剩余 {ledger} {unit}{under_way_zh}；告警阈值 {threshold} {unit}），未自动调整。\
             请检查是否有绕过 tollgate 的调用（供应商或云市场的调试控制台、使用同一 AppCode 的其他应用）、结果为 uncertain 的发送，\
             以及 remaining_field 所指的字段是否就是这个套餐的剩余量；核对无误后可用 tollgate reconcile 记录。\
             Channel {name}: the vendor's own count (remaining_field, its answer at {at}) is {vendor}, the ledger's {ledger}{under_way_en}: \
             {drift} units apart (threshold {threshold}); nothing was adjusted. \
             Check for calls made around tollgate (the vendor's or the marketplace's debug console, another application with the same AppCode), \
             for uncertain sends, and that remaining_field is this package's count; once checked, record it with tollgate reconcile.",
            drift = count.drift_units(),
        ),
        Status::Resolved => format!(
            "渠道 {name} 的账本与供应商应答中的余量差异已回到告警阈值 {threshold} {unit} 以内：供应商 {at} 的应答剩余 {vendor} {unit}，账本剩余 {ledger} {unit}{under_way_zh}。\
             Channel {name}: the vendor's own count ({vendor}, its answer at {at}) and the ledger's ({ledger}{under_way_en}) are back within {threshold} units."
        ),
    }
}

/// The part of `ledger.drift`'s summary about the marketplace's count: both counts, the
/// difference, what was done about it, and where to look for units billed around
/// tollgate.
fn marketplace_drift_summary(
    name: &ChannelName,
    unit: &str,
    threshold: u64,
    run: &MarketplaceRun,
    status: Status,
) -> String {
    let counts = format!(
        "云市场剩余 {} {unit}，账本剩余 {} {unit}",
        run.marketplace_remaining, run.ledger_remaining
    );
    match status {
        Status::Firing => {
            let done = match run.outcome {
                RunOutcome::Reconciled => format!(
                    "已按云市场的余量自动对账（调整 {} {unit}）",
                    run.adjusted_units
                ),
                RunOutcome::Recorded | RunOutcome::Agreed => {
                    "未自动调整（[marketplace] apply = false）；核对无误后可用 tollgate reconcile 记录"
                        .to_owned()
                }
            };
            format!(
                "渠道 {name} 的账本与云市场的余量相差 {} {unit}（{counts}；告警阈值 {threshold} {unit}），{done}。\
                 请检查是否有绕过 tollgate 的调用（云市场的调试控制台、使用同一 AppCode 的其他应用）以及结果为 uncertain 的发送。",
                run.drift_units()
            )
        }
        Status::Resolved => format!(
            "渠道 {name} 的账本与云市场的余量差异已回到告警阈值 {threshold} {unit} 以内：{counts}。"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::forecast::{Suggestion, SuggestionPlan};
    use crate::config::load_str;

    fn voice_channel() -> ChannelSettings {
        let settings = load_str(
            "t",
            "[[channels]]\nname = \"voice_notice\"\nkind = \"voice_notice\"\nurl = \"https://a\"\n",
            &|_| None,
        )
        .unwrap();
        settings.channels[0].clone()
    }

    fn facts(remaining: i64, per_day: f64, next_expiry: Option<DateTime<Utc>>) -> ChannelFacts {
        let plan = SuggestionPlan {
            days: 30,
            package_sizes: vec![1000, 5000],
        };
        let suggestion = Suggestion::compute(per_day, Some(1000), &plan);
        // Only the figures a summary reads are set.
        let mut quota = QuotaView::compute(
            "voice_notice",
            &crate::ledger::TotalsRow::default(),
            &[],
            None,
            0,
            Utc::now(),
        );
        quota.purchased = 1000;
        quota.pool_units = 1000;
        quota.remaining = remaining;
        quota.remaining_ratio = remaining as f64 / 1000.0;
        quota.burn_rate_per_day = per_day;
        quota.days_left = (per_day > 0.0).then(|| remaining as f64 / per_day);
        quota.next_expiry = next_expiry;
        ChannelFacts {
            quota,
            forecast: Forecast {
                exhausted_at: None,
                suggested_units: suggestion.as_ref().map(|s| s.units),
                suggestion,
            },
            has_packages: true,
            auth_failing: false,
            marketplace: None,
            vendor: None,
            traffic: None,
        }
    }

    fn run(
        marketplace_remaining: i64,
        ledger_remaining: i64,
        outcome: RunOutcome,
    ) -> MarketplaceRun {
        MarketplaceRun {
            id: 1,
            channel: "voice_notice".into(),
            product_code: "cmapi00037415".into(),
            observed_at: Utc::now(),
            rows: 1,
            total_quota: marketplace_remaining,
            total_usage: 100 - marketplace_remaining,
            total_capacity: Some(100),
            marketplace_remaining,
            confirmed: true,
            ledger_remaining,
            drift: marketplace_remaining - ledger_remaining,
            outcome,
            applied: outcome == RunOutcome::Reconciled,
            reconciliation_id: (outcome == RunOutcome::Reconciled).then_some(7),
            adjusted_units: if outcome == RunOutcome::Reconciled {
                ledger_remaining - marketplace_remaining
            } else {
                0
            },
            request_ids: vec![],
        }
    }

    fn drift_rule() -> RuleSpec {
        RuleSpec {
            name: "ledger.drift".into(),
            channels: ChannelSelector::All,
            trigger: Trigger::Drift { units: 10 },
            severity: Severity::Warning,
            notify: vec![],
            repeat_every: DEFAULT_REPEAT,
        }
    }

    #[test]
    fn a_drift_holds_from_the_threshold_on_either_way_and_not_without_a_run() {
        let rule = drift_rule();
        let mut facts = facts(100, 0.0, None);
        let now = Utc::now();
        assert!(!rule.holds(&facts, now), "no run yet");
        for (marketplace, ledger, holds) in [
            (85, 100, true),
            (110, 100, true),
            (91, 100, false),
            (90, 100, true),
            (100, 100, false),
        ] {
            facts.marketplace = Some(run(marketplace, ledger, RunOutcome::Recorded));
            assert_eq!(rule.holds(&facts, now), holds, "{marketplace} vs {ledger}");
        }
        assert_eq!(rule.event_kind(Status::Firing), EventKind::LedgerDrift);
        assert_eq!(rule.event_kind(Status::Resolved), EventKind::LedgerDrift);
    }

    #[test]
    fn a_drift_summary_gives_both_counts_what_was_done_and_what_to_check() {
        let rule = drift_rule();
        let mut facts = facts(85, 0.0, None);
        facts.marketplace = Some(run(85, 100, RunOutcome::Reconciled));
        let firing = rule.summary(
            &voice_channel(),
            &facts,
            Status::Firing,
            chrono_tz::Asia::Shanghai,
        );
        assert_eq!(
            firing,
            "渠道 voice_notice 的账本与云市场的余量相差 15 次（云市场剩余 85 次，账本剩余 100 次；告警阈值 10 次），\
             已按云市场的余量自动对账（调整 15 次）。\
             请检查是否有绕过 tollgate 的调用（云市场的调试控制台、使用同一 AppCode 的其他应用）以及结果为 uncertain 的发送。"
        );
        facts.marketplace = Some(run(85, 100, RunOutcome::Recorded));
        let recorded = rule.summary(
            &voice_channel(),
            &facts,
            Status::Firing,
            chrono_tz::Asia::Shanghai,
        );
        assert!(
            recorded.contains("未自动调整（[marketplace] apply = false）"),
            "{recorded}"
        );
        facts.marketplace = Some(run(85, 85, RunOutcome::Agreed));
        let resolved = rule.summary(
            &voice_channel(),
            &facts,
            Status::Resolved,
            chrono_tz::Asia::Shanghai,
        );
        assert_eq!(
            resolved,
            "渠道 voice_notice 的账本与云市场的余量差异已回到告警阈值 10 次 以内：云市场剩余 85 次，账本剩余 85 次。"
        );
    }

    #[test]
    fn ledger_drift_is_built_in_only_with_the_marketplace_and_only_for_its_channels() {
        let channels = "[[channels]]\nname = \"voice_notice\"\nkind = \"voice_notice\"\nurl = \"https://a\"\nproduct_code = \"cmapi00037415\"\n\
            [[channels]]\nname = \"sms_code\"\nkind = \"sms_code\"\nurl = \"https://b\"\nsignature = \"【卡池】\"\n\
            [[notifiers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n";
        let names = |text: &str| -> Vec<String> {
            let settings = load_str("t", text, &|_| None).unwrap();
            RuleSpec::all(&settings)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(channels), ["quota.exhausted", "provider.auth_failed"]);

        let text = format!("{channels}[marketplace]\ndrift_alert_units = 25\n");
        let settings = load_str("t", &text, &|_| None).unwrap();
        let rules = RuleSpec::all(&settings);
        let drift = rules.iter().find(|r| r.name == "ledger.drift").unwrap();
        assert_eq!(drift.trigger, Trigger::Drift { units: 25 });
        assert_eq!(drift.severity, Severity::Warning);
        assert_eq!(drift.notify, ["hook"], "the built-in alerts' notifiers");
        assert!(drift.applies_to(&ChannelName::parse("voice_notice").unwrap()));
        assert!(!drift.applies_to(&ChannelName::parse("sms_code").unwrap()));
    }

    fn vendor_count(vendor: i64, ledger: i64, reserved: i64) -> VendorCount {
        VendorCount {
            vendor_remaining: vendor,
            answered_at: DateTime::parse_from_rfc3339("2026-12-01T02:30:00Z")
                .unwrap()
                .into(),
            ledger_remaining: ledger,
            ledger_reserved: reserved,
        }
    }

    #[test]
    fn a_vendor_count_drift_holds_from_the_threshold_either_way() {
        let rule = drift_rule();
        let mut facts = facts(100, 0.0, None);
        let now = Utc::now();
        for (vendor, ledger, holds) in [
            (90, 100, true),
            (91, 100, false),
            (110, 100, true),
            (109, 100, false),
            (100, 100, false),
            (85, 100, true),
        ] {
            facts.vendor = Some(vendor_count(vendor, ledger, 0));
            assert_eq!(rule.holds(&facts, now), holds, "{vendor} vs {ledger}");
            assert_eq!(facts.vendor.unwrap().drift(), vendor - ledger);
        }
        // Either count is enough: the marketplace's in line, the vendor's not.
        facts.marketplace = Some(run(100, 100, RunOutcome::Agreed));
        facts.vendor = Some(vendor_count(88, 100, 0));
        assert!(rule.holds(&facts, now));
        facts.vendor = Some(vendor_count(95, 100, 0));
        assert!(!rule.holds(&facts, now));
    }

    #[test]
    fn sends_under_way_are_not_drift() {
        let rule = drift_rule();
        let mut facts = facts(100, 0.0, None);
        let now = Utc::now();
        // 30 units held by sends under way: the vendor may have counted any of them.
        for (vendor, drift) in [(100, 0), (115, 0), (130, 0), (140, 10), (139, 9), (90, -10)] {
            let count = vendor_count(vendor, 100, 30);
            assert_eq!(count.drift(), drift, "vendor {vendor}");
            facts.vendor = Some(count);
            assert_eq!(
                rule.holds(&facts, now),
                drift.abs() >= 10,
                "vendor {vendor}"
            );
        }
    }

    #[test]
    fn a_vendor_count_older_than_a_package_is_not_compared() {
        let answered: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-12-01T02:30:00Z")
            .unwrap()
            .into();
        let mut quota = facts(1100, 0.0, None).quota;
        quota.vendor_remaining = Some(100);
        quota.vendor_remaining_at = Some(answered);
        let package = |purchased_at| Package {
            id: 1,
            channel: "voice_notice".into(),
            units: 1000,
            price: crate::domain::Yuan::ZERO,
            unit_price: rust_decimal::Decimal::ZERO,
            purchased_at,
            expires_at: None,
            order_id: None,
            note: None,
            used: 0,
            reserved: 0,
            remaining: 1000,
            expired_units: 0,
            status: crate::ledger::PackageStatus::Active,
        };
        let before = package(answered - chrono::Duration::hours(1));
        let count = VendorCount::current(&quota, std::slice::from_ref(&before)).unwrap();
        assert_eq!(count.drift(), -1000);
        let after = package(answered + chrono::Duration::minutes(1));
        assert_eq!(VendorCount::current(&quota, &[before, after]), None);
        quota.vendor_remaining = None;
        assert_eq!(
            VendorCount::current(&quota, &[]),
            None,
            "no answer carried one"
        );
    }

    #[test]
    fn a_vendor_drift_summary_names_the_vendors_count_both_figures_and_what_to_check() {
        let rule = drift_rule();
        let mut facts = facts(100, 0.0, None);
        facts.vendor = Some(vendor_count(85, 100, 0));
        let summary = |facts: &ChannelFacts, status| {
            rule.summary(&voice_channel(), facts, status, chrono_tz::Asia::Shanghai)
        };
        assert_eq!(
            summary(&facts, Status::Firing),
            "渠道 voice_notice 的账本与供应商应答中的余量相差 15 次（供应商 2026-12-01 10:30 (UTC+8) 的应答剩余 85 次，账本剩余 100 次；告警阈值 10 次），未自动调整。\
             请检查是否有绕过 tollgate 的调用（供应商或云市场的调试控制台、使用同一 AppCode 的其他应用）、结果为 uncertain 的发送，\
             以及 remaining_field 所指的字段是否就是这个套餐的剩余量；核对无误后可用 tollgate reconcile 记录。\
             Channel voice_notice: the vendor's own count (remaining_field, its answer at 2026-12-01 10:30 (UTC+8)) is 85, the ledger's 100: \
             15 units apart (threshold 10); nothing was adjusted. \
             Check for calls made around tollgate (the vendor's or the marketplace's debug console, another application with the same AppCode), \
             for uncertain sends, and that remaining_field is this package's count; once checked, record it with tollgate reconcile."
        );
        // Only the count that differs is named when firing; both when resolved.
        facts.marketplace = Some(run(100, 100, RunOutcome::Agreed));
        let firing = summary(&facts, Status::Firing);
        assert!(!firing.contains("云市场剩余"), "{firing}");
        facts.vendor = Some(vendor_count(97, 100, 2));
        let resolved = summary(&facts, Status::Resolved);
        assert!(
            resolved.contains("账本与云市场的余量差异已回到告警阈值 10 次 以内"),
            "{resolved}"
        );
        assert!(
            resolved.contains(
                "账本与供应商应答中的余量差异已回到告警阈值 10 次 以内：供应商 2026-12-01 10:30 (UTC+8) 的应答剩余 97 次，账本剩余 100 次，另有 2 次在途未结算。"
            ),
            "{resolved}"
        );
        assert!(resolved.contains("are back within 10 units"), "{resolved}");
    }

    #[test]
    fn ledger_drift_is_built_in_for_a_channel_with_a_remaining_field_without_the_marketplace() {
        let channels = "[[channels]]\nname = \"voice_notice\"\nkind = \"voice_notice\"\nurl = \"https://a\"\nproduct_code = \"cmapi00037415\"\n\
            [[channels]]\nname = \"tpl_sms\"\nkind = \"sms_code\"\nformat = \"template\"\nurl = \"https://b\"\n\
            mobile_param = \"mobile\"\ntemplate_id_param = \"templateId\"\nparams_param = \"param\"\n\
            success_field = \"code\"\nsuccess_values = [\"0\"]\nremaining_field = \"balance\"\n";
        let drift = |text: &str| {
            let settings = load_str("t", text, &|_| None).unwrap();
            RuleSpec::all(&settings)
                .into_iter()
                .find(|r| r.name == "ledger.drift")
                .unwrap()
        };
        let tpl = ChannelName::parse("tpl_sms").unwrap();
        let voice = ChannelName::parse("voice_notice").unwrap();
        // Without [marketplace]: the vendor's count only, at drift_alert_units' default.
        let alone = drift(channels);
        assert_eq!(alone.trigger, Trigger::Drift { units: 10 });
        assert!(alone.applies_to(&tpl));
        assert!(
            !alone.applies_to(&voice),
            "the marketplace's count is not read"
        );
        // With it: both channels, at its threshold.
        let both = drift(&format!(
            "{channels}[marketplace]\ndrift_alert_units = 25\n"
        ));
        assert_eq!(both.trigger, Trigger::Drift { units: 25 });
        assert!(both.applies_to(&tpl) && both.applies_to(&voice));
    }

    fn rule(condition: Condition) -> RuleSpec {
        RuleSpec {
            name: "r".into(),
            channels: ChannelSelector::All,
            trigger: Trigger::Condition(condition),
            severity: Severity::Warning,
            notify: vec![],
            repeat_every: DEFAULT_REPEAT,
        }
    }

    #[test]
    fn a_low_quota_reminder_counts_calls_and_says_how_much_to_buy_and_why() {
        let summary = rule(Condition::RemainingRatioBelow(0.2)).summary(
            &voice_channel(),
            &facts(100, 60.0, None),
            Status::Firing,
            chrono_tz::Asia::Shanghai,
        );
        assert_eq!(
            summary,
            "渠道 voice_notice 套餐余量不足：剩余 100 / 1000 次（10.0%），预计约 1.7 天后用完。\
             按近 7 天日均 60 次 × 30 天 = 1800 次，建议购买 5000 次套餐（能覆盖用量的最小套餐）。"
        );
    }

    #[test]
    fn an_expiry_reminder_gives_the_local_date() {
        let expiry = DateTime::parse_from_rfc3339("2026-12-31T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let summary = rule(Condition::ExpiresWithin(Duration::from_secs(86_400))).summary(
            &voice_channel(),
            &facts(500, 0.0, Some(expiry)),
            Status::Firing,
            chrono_tz::Asia::Shanghai,
        );
        assert!(
            summary.contains("将于 2027-01-01 00:30 (UTC+8) 过期，未用完的次数将作废"),
            "{summary}"
        );
    }

    /// README.md's example email, rendered by the code that writes reminders: the
    /// README cannot drift from what people receive.
    #[test]
    fn the_readme_example_email_is_what_a_reminder_reads() {
        let at = |raw: &str| {
            DateTime::parse_from_rfc3339(raw)
                .unwrap()
                .with_timezone(&Utc)
        };
        let settings = load_str(
            "t",
            "[[channels]]\nname = \"sms_code\"\nkind = \"sms_code\"\nurl = \"https://a\"\n\
             signature = \"【卡池】\"\npackage_sizes = [1000, 5000, 10000]\n\
             repurchase_url = \"https://market.aliyun.com/\"\n",
            &|_| None,
        )
        .unwrap();
        let channel = &settings.channels[0];
        let plan = SuggestionPlan {
            days: settings.alerts.suggest_days,
            package_sizes: channel.package_sizes.clone(),
        };
        let mut facts = facts(180, 60.0, None);
        facts.forecast.suggestion = Suggestion::compute(60.0, Some(1000), &plan);
        facts.forecast.suggested_units = facts.forecast.suggestion.as_ref().map(|s| s.units);
        let rule = rule(Condition::RemainingRatioBelow(0.2));
        let event = tollgate_notify::Event {
            event: EventKind::QuotaLow,
            rule: Some("quota-low".into()),
            severity: Severity::Warning,
            channel: Some("sms_code".into()),
            channel_kind: Some("sms_code".into()),
            remaining_units: Some(180),
            purchased_units: Some(1000),
            remaining_ratio: Some(0.18),
            burn_rate_per_day: Some(60.0),
            days_left: facts.quota.days_left,
            forecast_exhausted_at: Some(at("2026-12-04T08:00:00Z")),
            repurchase_url: channel.repurchase_url.clone(),
            suggested_units: facts.forecast.suggested_units,
            summary: rule.summary(channel, &facts, Status::Firing, chrono_tz::Asia::Shanghai),
            ..tollgate_notify::Event::test(
                "evt_01938c5e".into(),
                at("2026-12-01T08:00:00Z"),
                "Asia/Shanghai",
            )
        };
        let written = format!(
            "Subject: {}\n\n{}",
            tollgate_notify::title_zh(&event),
            tollgate_notify::plain_zh(&event)
        );
        let readme = include_str!("../../README.md");
        let start = readme
            .find("Subject: 【")
            .expect("README shows an example email");
        let example = &readme[start..start + readme[start..].find("```").unwrap()];
        assert_eq!(example, written);
    }

    #[test]
    fn the_trailing_hour_takes_its_share_of_the_bucket_it_starts_in() {
        let at = |raw: &str| -> DateTime<Utc> { DateTime::parse_from_rfc3339(raw).unwrap().into() };
        let now = at("2026-12-01T10:15:00Z");
        let hours = [
            (at("2026-11-28T10:00:00Z"), 168),
            (at("2026-12-01T09:00:00Z"), 40),
            (at("2026-12-01T10:00:00Z"), 30),
        ];
        let traffic = HourlyTraffic::from_hours(&hours, now);
        // 30 this hour and three quarters of the 40 of 09:00-10:00.
        assert_eq!(traffic.last_hour, 60);
        assert!((traffic.hourly_average - (168.0 + 10.0) / 168.0).abs() < 1e-9);
    }

    #[test]
    fn a_burst_just_before_the_hour_is_seen_whole_after_it() {
        let at = |raw: &str| -> DateTime<Utc> { DateTime::parse_from_rfc3339(raw).unwrap().into() };
        // 40 sends in 09:20-09:59; at 10:10 only a sixth of their bucket is in the
        // trailing 60 minutes, but the last complete hour holds all of them.
        let hours = [(at("2026-12-01T09:00:00Z"), 40)];
        let traffic = HourlyTraffic::from_hours(&hours, at("2026-12-01T10:10:00Z"));
        assert_eq!(traffic.last_hour, 40);
        // Once that hour is more than an hour ago, it is history.
        let later = HourlyTraffic::from_hours(&hours, at("2026-12-01T11:00:00Z"));
        assert_eq!(later.last_hour, 0);
    }

    #[test]
    fn the_reserve_is_entered_once_no_more_than_it_is_left() {
        let rule = rule(Condition::ReserveEntered);
        let now = Utc::now();
        let with = |remaining: i64, reserve: i64| {
            let mut facts = facts(remaining, 0.0, None);
            facts.quota.reserve_units = reserve;
            facts
        };
        assert!(
            !rule.holds(&with(101, 100), now),
            "one unit above the reserve"
        );
        assert!(rule.holds(&with(100, 100), now), "only the reserve is left");
        assert!(rule.holds(&with(0, 100), now));
        assert!(!rule.holds(&with(0, 0), now), "a channel keeps no reserve");
        let mut never_bought = with(50, 100);
        never_bought.has_packages = false;
        assert!(!rule.holds(&never_bought, now), "no package yet");
        let summary = rule.summary(
            &voice_channel(),
            &with(100, 100),
            Status::Firing,
            chrono_tz::Asia::Shanghai,
        );
        assert!(summary.contains("为验证码保留的 100 次"), "{summary}");
    }

    #[test]
    fn a_burst_needs_both_the_factor_and_the_floor() {
        let rule = rule(Condition::BurstFactorAbove {
            factor: 10.0,
            min_hourly_sends: 20,
        });
        let mut facts = facts(500, 10.0, None);
        let holds = |facts: &ChannelFacts| rule.holds(facts, Utc::now());
        facts.traffic = Some(HourlyTraffic {
            last_hour: 200,
            hourly_average: 2.0,
        });
        assert!(holds(&facts));
        facts.traffic = Some(HourlyTraffic {
            last_hour: 15,
            hourly_average: 1.0,
        });
        assert!(!holds(&facts), "below min_hourly_sends");
        facts.traffic = Some(HourlyTraffic {
            last_hour: 200,
            hourly_average: 30.0,
        });
        assert!(!holds(&facts), "within 10x");
        assert_eq!(rule.event_kind(Status::Firing), EventKind::TrafficBurst);
    }
}
