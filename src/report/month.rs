//! `Month`: a calendar month, whose boundaries are cut in the configured time zone.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::domain::instant::local_midnight;

/// A calendar month such as 2026-11. Its first and last instants depend on the time
/// zone: November in Asia/Shanghai starts at 2026-10-31T16:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a month written YYYY-MM")]
pub struct MonthError(pub String);

impl Month {
    /// Parses `YYYY-MM` (years 2000-9999).
    pub fn parse(raw: &str) -> Result<Self, MonthError> {
        let error = || MonthError(raw.chars().take(20).collect());
        let (year, month) = raw.trim().split_once('-').ok_or_else(error)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(error());
        }
        let year: i32 = year.parse().map_err(|_| error())?;
        let month: u32 = month.parse().map_err(|_| error())?;
        if !(2000..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(error());
        }
        Ok(Self { year, month })
    }

    /// The month that `at` falls in, on the clocks of `timezone`.
    pub fn containing(at: DateTime<Utc>, timezone: Tz) -> Self {
        let local = at.with_timezone(&timezone);
        Self {
            year: local.year(),
            month: local.month(),
        }
    }

    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a parsed month has a first day")
    }

    pub fn days(self) -> u32 {
        (self.next().first_day() - self.first_day()).num_days() as u32
    }

    /// The first instant of the month in `timezone`, as UTC.
    pub fn start(self, timezone: Tz) -> DateTime<Utc> {
        local_midnight(self.first_day(), timezone)
    }

    /// The first instant after the month (the next month's start), as UTC.
    pub fn end(self, timezone: Tz) -> DateTime<Utc> {
        self.next().start(timezone)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl serde::Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw).unwrap().into()
    }

    #[test]
    fn boundaries_are_local_midnights() {
        let november = Month::parse("2026-11").unwrap();
        let shanghai = chrono_tz::Asia::Shanghai;
        assert_eq!(november.start(shanghai), utc("2026-10-31T16:00:00Z"));
        assert_eq!(november.end(shanghai), utc("2026-11-30T16:00:00Z"));
        assert_eq!(november.days(), 30);
        // 23:30 on 30 November in Shanghai is still November there.
        assert_eq!(
            Month::containing(utc("2026-11-30T15:30:00Z"), shanghai),
            november
        );
        assert_eq!(
            Month::containing(utc("2026-11-30T16:00:00Z"), shanghai),
            november.next()
        );
    }

    #[test]
    fn months_wrap_around_the_year() {
        let january = Month::parse("2027-01").unwrap();
        assert_eq!(january.previous().to_string(), "2026-12");
        assert_eq!(january.previous().next(), january);
        assert_eq!(Month::parse("2028-02").unwrap().days(), 29);
    }

    #[test]
    fn only_yyyy_mm_is_a_month() {
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "abcd-ef",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_day_without_midnight_starts_when_the_clock_resumes() {
        // Chile skips from 00:00 to 01:00 on its spring-forward day.
        let santiago = chrono_tz::America::Santiago;
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = local_midnight(day, santiago);
        assert_eq!(start.with_timezone(&santiago).date_naive(), day);
    }
}
