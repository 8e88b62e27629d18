//! The daily sending window for marketing SMS, in the configured local timezone.
//!
//! Carriers and vendors only allow marketing messages during the day (SPEC §3: default
//! 09:00-20:00 local). A window is a start and an end time of day; the start is inclusive
//! and the end exclusive, so `09:00-20:00` allows 19:59:59 but not 20:00:00. A window
//! whose end is earlier than its start wraps midnight (`22:00-06:00`).

use std::fmt;

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A daily time-of-day window, start inclusive, end exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendingWindow {
    start: NaiveTime,
    end: NaiveTime,
}

/// Why a sending window from the configuration is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("sending window {0:?} must be written HH:MM-HH:MM in 24-hour time, e.g. 09:00-20:00")]
    Malformed(String),
    #[error(
        "sending window {0:?} starts and ends at the same time; give a start and an end that \
         differ, e.g. 09:00-20:00"
    )]
    StartEqualsEnd(String),
}

impl WindowError {
    /// The SPEC §5 error code: a bad window is a bad request (or a bad configuration).
    pub fn code(&self) -> &'static str {
        "invalid_request"
    }
}

impl SendingWindow {
    /// Parses `HH:MM-HH:MM` (24-hour, two digits each). Whitespace around the times is
    /// ignored, and the en dash that SPEC.md itself writes (`09:00–20:00`) is accepted as
    /// the separator too.
    pub fn parse(raw: &str) -> Result<SendingWindow, WindowError> {
        let malformed = || WindowError::Malformed(raw.chars().take(40).collect());
        let (start, end) = raw
            .split_once('-')
            .or_else(|| raw.split_once('–'))
            .ok_or_else(malformed)?;
        let start = parse_time_of_day(start.trim()).ok_or_else(malformed)?;
        let end = parse_time_of_day(end.trim()).ok_or_else(malformed)?;
        if start == end {
            return Err(WindowError::StartEqualsEnd(raw.trim().to_owned()));
        }
        Ok(SendingWindow { start, end })
    }

    /// The SPEC's default marketing window, 09:00-20:00.
    pub fn default_marketing() -> SendingWindow {
        SendingWindow {
            start: NaiveTime::from_hms_opt(9, 0, 0).expect("09:00 is a valid time"),
            end: NaiveTime::from_hms_opt(20, 0, 0).expect("20:00 is a valid time"),
        }
    }

    /// Whether `now`, read as local time in `tz`, falls inside the window.
    pub fn contains(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        let local = now.with_timezone(&tz).time();
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            // The window wraps midnight: it is the evening part or the morning part.
            self.start <= local || local < self.end
        }
    }
}

impl Default for SendingWindow {
    fn default() -> Self {
        Self::default_marketing()
    }
}

impl fmt::Display for SendingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

impl Serialize for SendingWindow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Configuration files write windows as strings; deserializing parses them.
impl<'de> Deserialize<'de> for SendingWindow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Parses exactly `HH:MM`, hours 00-23 and minutes 00-59.
fn parse_time_of_day(raw: &str) -> Option<NaiveTime> {
    let bytes = raw.as_bytes();
    let well_formed = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !well_formed {
        return None;
    }
    let two_digits = |i: usize| u32::from(bytes[i] - b'0') * 10 + u32::from(bytes[i + 1] - b'0');
    NaiveTime::from_hms_opt(two_digits(0), two_digits(3), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};
    use proptest::prelude::*;

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    fn utc(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, hour, minute, second)
            .unwrap()
    }

    #[test]
    fn the_default_window_follows_shanghai_time() {
        let window = SendingWindow::default_marketing();
        // Asia/Shanghai is UTC+8 all year, so 09:00 local is 01:00 UTC.
        assert!(!window.contains(utc(0, 59, 59), SHANGHAI), "08:59:59");
        assert!(!window.contains(utc(0, 59, 0), SHANGHAI), "08:59");
        assert!(window.contains(utc(1, 0, 0), SHANGHAI), "09:00");
        assert!(window.contains(utc(11, 59, 0), SHANGHAI), "19:59");
        assert!(window.contains(utc(11, 59, 59), SHANGHAI), "19:59:59");
        assert!(!window.contains(utc(12, 0, 0), SHANGHAI), "20:00");
        assert!(!window.contains(utc(18, 0, 0), SHANGHAI), "02:00");
    }

    #[test]
    fn the_same_instant_differs_by_timezone() {
        let window = SendingWindow::default_marketing();
        // 01:30 UTC is 09:30 in Shanghai but 01:30 in London (winter time).
        assert!(window.contains(utc(1, 30, 0), SHANGHAI));
        assert!(!window.contains(utc(1, 30, 0), chrono_tz::Europe::London));
        assert!(!window.contains(utc(1, 30, 0), chrono_tz::UTC));
    }

    #[test]
    fn a_window_may_wrap_midnight() {
        let window = SendingWindow::parse("22:00-06:00").unwrap();
        assert!(window.contains(utc(14, 0, 0), SHANGHAI), "22:00");
        assert!(window.contains(utc(16, 0, 0), SHANGHAI), "00:00");
        assert!(window.contains(utc(21, 59, 0), SHANGHAI), "05:59");
        assert!(!window.contains(utc(22, 0, 0), SHANGHAI), "06:00");
        assert!(!window.contains(utc(13, 59, 0), SHANGHAI), "21:59");
    }

    #[test]
    fn windows_parse_and_print_as_written() {
        for raw in ["09:00-20:00", "22:00-06:00", "00:00-23:59", "08:30-21:45"] {
            assert_eq!(SendingWindow::parse(raw).unwrap().to_string(), raw);
        }
        assert_eq!(
            SendingWindow::parse(" 09:00 – 20:00 ").unwrap(),
            SendingWindow::default_marketing()
        );
        assert_eq!(SendingWindow::default().to_string(), "09:00-20:00");
    }

    #[test]
    fn malformed_windows_are_refused() {
        for raw in [
            "",
            "09:00",
            "9:00-20:00",
            "09:00-24:00",
            "09:60-20:00",
            "09-20",
            "09:00:00-20:00:00",
            "09:00-20:00-21:00",
            "09：00-20：00",
            "ab:cd-ef:gh",
        ] {
            let error = SendingWindow::parse(raw).unwrap_err();
            assert!(matches!(error, WindowError::Malformed(_)), "{raw:?}");
            assert_eq!(error.code(), "invalid_request");
        }
    }

    #[test]
    fn an_empty_window_is_refused() {
        let error = SendingWindow::parse("09:00-09:00").unwrap_err();
        assert_eq!(error, WindowError::StartEqualsEnd("09:00-09:00".to_owned()));
        assert_eq!(error.code(), "invalid_request");
    }

    #[test]
    fn windows_serialize_as_strings() {
        let window: SendingWindow = serde_json::from_str("\"08:00-22:00\"").unwrap();
        assert_eq!(serde_json::to_string(&window).unwrap(), "\"08:00-22:00\"");
        assert!(serde_json::from_str::<SendingWindow>("\"8-22\"").is_err());
    }

    fn time_of_day() -> impl Strategy<Value = (u32, u32)> {
        (0u32..24, 0u32..60)
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip((sh, sm) in time_of_day(), (eh, em) in time_of_day()) {
            prop_assume!((sh, sm) != (eh, em));
            let raw = format!("{sh:02}:{sm:02}-{eh:02}:{em:02}");
            prop_assert_eq!(SendingWindow::parse(&raw).unwrap().to_string(), raw);
        }

        #[test]
        fn a_window_and_its_reverse_split_the_day(
            (sh, sm) in time_of_day(),
            (eh, em) in time_of_day(),
            seconds_since_epoch in 1_600_000_000i64..1_900_000_000,
        ) {
            prop_assume!((sh, sm) != (eh, em));
            let window = SendingWindow::parse(&format!("{sh:02}:{sm:02}-{eh:02}:{em:02}")).unwrap();
            let reverse = SendingWindow::parse(&format!("{eh:02}:{em:02}-{sh:02}:{sm:02}")).unwrap();
            let now = DateTime::from_timestamp(seconds_since_epoch, 0).unwrap();
            prop_assert_ne!(window.contains(now, SHANGHAI), reverse.contains(now, SHANGHAI));
        }

        #[test]
        fn a_daytime_window_contains_exactly_its_times(
            seconds_since_epoch in 1_600_000_000i64..1_900_000_000,
        ) {
            let now = DateTime::from_timestamp(seconds_since_epoch, 0).unwrap();
            let local_hour = now.with_timezone(&SHANGHAI).hour();
            prop_assert_eq!(
                SendingWindow::default_marketing().contains(now, SHANGHAI),
                (9..20).contains(&local_hour)
            );
        }
    }
}
