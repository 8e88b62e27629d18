//! `[schedule]`: when the scheduled jobs run, as written and as validated.

use std::time::Duration;

use serde::Deserialize;

use super::load::ConfigProblem;
use crate::domain::CronExpr;

/// Raw rows younger than this are always kept: the quota views' 7-day burn rate and
/// `GET /v1/messages/{id}` for the last month read them.
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
    /// Ledger housekeeping: daily roll-ups, then retention (default hourly, at minute 7).
    pub rollup: CronExpr,
    /// Raw send rows (and their charge entries) older than this are deleted once their
    /// day is rolled up. Off unless set; at least [`MINIMUM_RETENTION`].
    pub retention: Option<Duration>,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            quota_check: CronExpr::parse(DEFAULT_QUOTA_CHECK).expect("valid default"),
            monthly_report: CronExpr::parse(DEFAULT_MONTHLY_REPORT).expect("valid default"),
            report_notify: Vec::new(),
            rollup: CronExpr::parse(DEFAULT_ROLLUP).expect("valid default"),
            retention: None,
        }
    }
}

pub const DEFAULT_QUOTA_CHECK: &str = "*/5 * * * *";
pub const DEFAULT_MONTHLY_REPORT: &str = "0 9 1 * *";
pub const DEFAULT_ROLLUP: &str = "7 * * * *";

/// Validates `[schedule]`, returning the settings and every problem found (each naming
/// its key, such as `schedule.quota_check`).
pub fn check_schedule(raw: &RawSchedule) -> (ScheduleSettings, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    let mut cron = |key: &str, value: &Option<String>, default: &str| -> CronExpr {
        let fallback = || CronExpr::parse(default).expect("valid default");
        let Some(value) = value else {
            return fallback();
        };
        CronExpr::parse(value).unwrap_or_else(|err| {
            problems.push(ConfigProblem {
                key: format!("schedule.{key}"),
                problem: err.to_string(),
            });
            fallback()
        })
    };
    let quota_check = cron("quota_check", &raw.quota_check, DEFAULT_QUOTA_CHECK);
    let monthly_report = cron(
        "monthly_report",
        &raw.monthly_report,
        DEFAULT_MONTHLY_REPORT,
    );
    let rollup = cron("rollup", &raw.rollup, DEFAULT_ROLLUP);

    let retention = raw.retention.as_deref().and_then(|value| {
        match humantime::parse_duration(value) {
            Ok(duration) if duration >= MINIMUM_RETENTION => Some(duration),
            Ok(_) => {
                problems.push(ConfigProblem {
                    key: "schedule.retention".into(),
                    problem: "must be at least 31d: the quota views and message look-ups read the last month's rows".into(),
                });
                None
            }
            Err(err) => {
                problems.push(ConfigProblem {
                    key: "schedule.retention".into(),
                    problem: format!("{value:?} is not a duration like \"90d\" ({err})"),
                });
                None
            }
        }
    });
    for (i, name) in raw.report_notify.iter().enumerate() {
        if name.trim().is_empty() {
            problems.push(ConfigProblem {
                key: format!("schedule.report_notify[{i}]"),
                problem: "must name a notifier".into(),
            });
        }
    }
    let settings = ScheduleSettings {
        quota_check,
        monthly_report,
        report_notify: raw.report_notify.clone(),
        rollup,
        retention,
    };
    (settings, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_defaults() {
        let (settings, problems) = check_schedule(&RawSchedule::default());
        assert!(problems.is_empty());
        assert_eq!(settings.quota_check.as_str(), "*/5 * * * *");
        assert_eq!(settings.monthly_report.as_str(), "0 9 1 * *");
        assert_eq!(settings.retention, None);
    }

    #[test]
    fn every_bad_value_is_named_by_its_key() {
        let raw = RawSchedule {
            quota_check: Some("every five minutes".into()),
            monthly_report: Some("0 9 32 * *".into()),
            report_notify: vec![" ".into()],
            rollup: Some("* *".into()),
            retention: Some("1d".into()),
        };
        let (_, problems) = check_schedule(&raw);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "schedule.quota_check",
                "schedule.monthly_report",
                "schedule.rollup",
                "schedule.retention",
                "schedule.report_notify[0]"
            ]
        );
    }
}
