//! `[schedule]`: when the scheduled jobs run, as written and as validated.

use std::time::Duration;

use serde::Deserialize;
use tollgate_notify::Problems;

use crate::domain::CronExpr;

/// Raw send rows younger than this are always kept, so that `GET /v1/messages/{id}` and
/// a retried request's idempotency key find the last month's sends. No figure needs
/// them: quota views, burn rates and reports read the usage buckets (`ledger::views`).
pub const MINIMUM_RETENTION: Duration = Duration::from_secs(31 * 86_400);

/// The `[schedule]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    pub quota_check: Option<String>,
    pub monthly_report: Option<String>,
    pub report_notify: Vec<String>,
    pub rollup: Option<String>,
    pub retention: Option<String>,
    pub marketplace_sync: Option<String>,
}

/// When each scheduled job runs, in `[server] timezone`.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Alert evaluation for time-based rules and package expiry (default every 5 minutes).
    pub quota_check: CronExpr,
    /// Last month's cost report, sent to `report_notify` (default 09:00 on the 1st).
    pub monthly_report: CronExpr,
    /// Notifier names the monthly report is sent through.
    pub report_notify: Vec<String>,
    /// Ledger housekeeping: hour buckets past `HOUR_BUCKETS_KEPT`, then retention, then
    /// spent traffic-limit counts (default hourly, at minute 7).
    pub rollup: CronExpr,
    /// Settled send rows (and their charge entries) older than this are deleted; the
    /// usage buckets written with them keep every figure. Off unless set; at least
    /// [`MINIMUM_RETENTION`].
    pub retention: Option<Duration>,
    /// Reading the marketplace's own count (SPEC §14; default on the hour). Scheduled
    /// only when `[marketplace]` is configured and a channel has a `product_code`.
    pub marketplace_sync: CronExpr,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            quota_check: CronExpr::parse(DEFAULT_QUOTA_CHECK).expect("valid default"),
            monthly_report: CronExpr::parse(DEFAULT_MONTHLY_REPORT).expect("valid default"),
            report_notify: Vec::new(),
            rollup: CronExpr::parse(DEFAULT_ROLLUP).expect("valid default"),
            retention: None,
            marketplace_sync: CronExpr::parse(DEFAULT_MARKETPLACE_SYNC).expect("valid default"),
        }
    }
}

pub const DEFAULT_QUOTA_CHECK: &str = "*/5 * * * *";
pub const DEFAULT_MONTHLY_REPORT: &str = "0 9 1 * *";
pub const DEFAULT_ROLLUP: &str = "7 * * * *";
pub const DEFAULT_MARKETPLACE_SYNC: &str = "0 * * * *";

/// Validates `[schedule]`, recording every problem with its key inside the table
/// (`quota_check`; the caller scopes it to `schedule`).
pub fn check_schedule(raw: &RawSchedule, p: &mut Problems) -> ScheduleSettings {
    let mut cron = |key: &str, value: &Option<String>, default: &str| -> CronExpr {
        let fallback = || CronExpr::parse(default).expect("valid default");
        match value {
            None => fallback(),
            Some(value) => p
                .check(key, CronExpr::parse(value))
                .unwrap_or_else(fallback),
        }
    };
    let quota_check = cron("quota_check", &raw.quota_check, DEFAULT_QUOTA_CHECK);
    let monthly_report = cron(
        "monthly_report",
        &raw.monthly_report,
        DEFAULT_MONTHLY_REPORT,
    );
    let rollup = cron("rollup", &raw.rollup, DEFAULT_ROLLUP);
    let marketplace_sync = cron(
        "marketplace_sync",
        &raw.marketplace_sync,
        DEFAULT_MARKETPLACE_SYNC,
    );

    let retention = p
        .optional_duration("retention", raw.retention.as_deref())
        .filter(|retention| {
            let long_enough = *retention >= MINIMUM_RETENTION;
            if !long_enough {
                p.add(
                    "retention",
                    "must be at least 31d: message look-ups and idempotent retries read the last month's sends",
                );
            }
            long_enough
        });
    for (i, name) in raw.report_notify.iter().enumerate() {
        if name.trim().is_empty() {
            p.add(&format!("report_notify[{i}]"), "must name a notifier");
        }
    }
    ScheduleSettings {
        quota_check,
        monthly_report,
        report_notify: raw.report_notify.clone(),
        rollup,
        retention,
        marketplace_sync,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `raw` as the `[schedule]` table: the settings, and the keys of the problems.
    fn check(raw: &RawSchedule) -> (ScheduleSettings, Vec<String>) {
        let mut problems = Problems::new();
        let settings = problems.scoped("schedule", |p| check_schedule(raw, p));
        let keys = problems.into_vec().into_iter().map(|p| p.key).collect();
        (settings, keys)
    }

    #[test]
    fn an_empty_table_gives_the_defaults() {
        let (settings, problems) = check(&RawSchedule::default());
        assert!(problems.is_empty());
        assert_eq!(settings.quota_check.as_str(), "*/5 * * * *");
        assert_eq!(settings.monthly_report.as_str(), "0 9 1 * *");
        assert_eq!(settings.retention, None);
        assert_eq!(settings.marketplace_sync.as_str(), "0 * * * *");
    }

    #[test]
    fn every_bad_value_is_named_by_its_key() {
        let raw = RawSchedule {
            quota_check: Some("every five minutes".into()),
            monthly_report: Some("0 9 32 * *".into()),
            report_notify: vec![" ".into()],
            rollup: Some("* *".into()),
            retention: Some("1d".into()),
            marketplace_sync: Some("hourly".into()),
        };
        let (_, keys) = check(&raw);
        assert_eq!(
            keys,
            [
                "schedule.quota_check",
                "schedule.monthly_report",
                "schedule.rollup",
                "schedule.marketplace_sync",
                "schedule.retention",
                "schedule.report_notify[0]"
            ]
        );
    }
}
