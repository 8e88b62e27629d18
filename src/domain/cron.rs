//! `CronExpr`: a crontab expression, parsed once, evaluated in a time zone.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;

/// A crontab expression: the standard 5 fields (`minute hour day-of-month month
/// day-of-week`), or 6 with seconds first. The `cron` crate reads 6 or 7 fields with
/// seconds first, so a 5-field expression is given to it as `0 <expr>` (at second 0).
///
/// Weekdays are numbered as crontab numbers them (0 or 7 = Sunday, 1 = Monday … 6 =
/// Saturday); the crate counts 1 = Sunday … 7 = Saturday, so numbers in that field are
/// translated before it sees them. Names (`MON`, `Sun`) mean the same to both. One
/// difference stays: when both day-of-month and weekday are restricted, crontab fires
/// on either, the crate only on days matching both.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    schedule: ::cron::Schedule,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronExprError {
    #[error(
        "{0:?} has {1} fields; write 5 (minute hour day month weekday), or 6 with seconds first"
    )]
    FieldCount(String, usize),
    #[error("{0:?} is not a crontab expression ({1})")]
    Invalid(String, String),
}

impl CronExpr {
    pub fn parse(raw: &str) -> Result<Self, CronExprError> {
        let source = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = source.split(' ').filter(|f| !f.is_empty()).count();
        let mut parts: Vec<String> = match fields {
            5 => std::iter::once("0")
                .chain(source.split(' '))
                .map(str::to_owned)
                .collect(),
            6 => source.split(' ').map(str::to_owned).collect(),
            n => return Err(CronExprError::FieldCount(raw.to_owned(), n)),
        };
        parts[5] = crontab_weekdays_for_the_crate(&parts[5])
            .ok_or_else(|| CronExprError::Invalid(raw.to_owned(), "weekdays are 0-7".into()))?;
        let for_the_crate = parts.join(" ");
        let schedule = ::cron::Schedule::from_str(&for_the_crate)
            .map_err(|err| CronExprError::Invalid(raw.to_owned(), err.to_string()))?;
        // An expression that can never fire (such as 30 February) is a mistake.
        if schedule.upcoming(Utc).next().is_none() {
            return Err(CronExprError::Invalid(
                raw.to_owned(),
                "it never comes due".to_owned(),
            ));
        }
        Ok(Self { source, schedule })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The latest due time at or before `now`, read on the clocks of `timezone`.
    pub fn latest_due_at_or_before(
        &self,
        now: DateTime<Utc>,
        timezone: Tz,
    ) -> Option<DateTime<Utc>> {
        // The crate looks strictly before a whole second, so start one second after
        // `now` (cut to the second) to include a due time equal to `now`.
        let from = now.duration_trunc(Duration::seconds(1)).unwrap_or(now) + Duration::seconds(1);
        self.schedule
            .after(&from.with_timezone(&timezone))
            .next_back()
            .map(|due| due.with_timezone(&Utc))
    }

    /// The first due time strictly after `now`.
    pub fn next_due_after(&self, now: DateTime<Utc>, timezone: Tz) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&now.with_timezone(&timezone))
            .next()
            .map(|due| due.with_timezone(&Utc))
    }
}

/// Rewrites crontab weekday numbers (0-7, Sunday = 0 or 7) into the crate's (1-7,
/// Sunday = 1). Steps stay as written; names pass through. `None` for a number above 7.
fn crontab_weekdays_for_the_crate(field: &str) -> Option<String> {
    let shift = |number: &str| -> Option<String> {
        match number.parse::<u32>() {
            Ok(7) => Some("1".to_owned()),
            Ok(n) if n < 7 => Some((n + 1).to_string()),
            Ok(_) => None,
            Err(_) => Some(number.to_owned()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let step = step.map(|s| format!("/{s}")).unwrap_or_default();
        match base.split_once('-') {
            // A range ending on Sunday-as-7 becomes the range up to Saturday plus Sunday.
            Some((from, "7")) if step.is_empty() => {
                items.push(format!("{}-7", shift(from)?));
                items.push("1".to_owned());
            }
            Some((from, to)) => items.push(format!("{}-{}{step}", shift(from)?, shift(to)?)),
            None => items.push(format!("{}{step}", shift(base)?)),
        }
    }
    Some(items.join(","))
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.source)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw).unwrap().into()
    }

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn five_fields_fire_at_second_zero_in_the_configured_zone() {
        let monthly = CronExpr::parse("0 9 1 * *").unwrap();
        // 09:00 on 1 December in Shanghai is 01:00 UTC.
        assert_eq!(
            monthly.next_due_after(utc("2026-11-15T00:00:00Z"), SHANGHAI),
            Some(utc("2026-12-01T01:00:00Z"))
        );
        assert_eq!(
            monthly.latest_due_at_or_before(utc("2026-11-15T00:00:00Z"), SHANGHAI),
            Some(utc("2026-11-01T01:00:00Z"))
        );
    }

    #[test]
    fn a_due_time_equal_to_now_counts_as_due() {
        let every_five = CronExpr::parse("*/5 * * * *").unwrap();
        let now = utc("2026-11-15T10:05:00Z");
        assert_eq!(every_five.latest_due_at_or_before(now, SHANGHAI), Some(now));
        assert_eq!(
            every_five.latest_due_at_or_before(now + Duration::milliseconds(999), SHANGHAI),
            Some(now)
        );
        assert_eq!(
            every_five.next_due_after(now, SHANGHAI),
            Some(utc("2026-11-15T10:10:00Z"))
        );
    }

    #[test]
    fn six_fields_take_seconds_first() {
        let expr = CronExpr::parse("30 0 * * * *").unwrap();
        assert_eq!(
            expr.next_due_after(utc("2026-11-15T10:00:00Z"), SHANGHAI),
            Some(utc("2026-11-15T10:00:30Z"))
        );
    }

    #[test]
    fn weekdays_are_numbered_as_in_crontab() {
        // 1 = Monday in crontab: 16 November 2026 is a Monday.
        let mondays = CronExpr::parse("0 9 * * 1").unwrap();
        assert_eq!(
            mondays.next_due_after(utc("2026-11-14T00:00:00Z"), SHANGHAI),
            Some(utc("2026-11-16T01:00:00Z"))
        );
        for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
            assert_eq!(
                CronExpr::parse(sunday)
                    .unwrap()
                    .next_due_after(utc("2026-11-14T00:00:00Z"), SHANGHAI),
                Some(utc("2026-11-15T01:00:00Z")),
                "{sunday}"
            );
        }
        let weekend = CronExpr::parse("0 9 * * 6-7").unwrap();
        assert_eq!(
            weekend.next_due_after(utc("2026-11-14T02:00:00Z"), SHANGHAI),
            Some(utc("2026-11-15T01:00:00Z"))
        );
        assert!(CronExpr::parse("0 9 * * 8").is_err());
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(matches!(
            CronExpr::parse("* * *"),
            Err(CronExprError::FieldCount(_, 3))
        ));
        assert!(matches!(
            CronExpr::parse("61 * * * *"),
            Err(CronExprError::Invalid(..))
        ));
        assert!(matches!(
            CronExpr::parse("0 0 30 2 *"),
            Err(CronExprError::Invalid(..))
        ));
        assert!(CronExpr::parse("").is_err());
    }
}
