//! Instants given by people: RFC 3339, or a plain date read in the configured timezone.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Accepts RFC 3339 (`2026-11-28T09:00:00+08:00`) or a plain date (`2026-11-28`), which
/// means midnight at the start of that day in the configured timezone.
pub fn parse_instant(raw: &str, timezone: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        format!("{raw:?} is neither a date (2026-11-28) nor an RFC 3339 time (2026-11-28T09:00:00+08:00)")
    })?;
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    timezone
        .from_local_datetime(&midnight)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| format!("{raw} has no midnight in {timezone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_date_is_local_midnight() {
        let at = parse_instant("2026-12-01", chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-30T16:00:00+00:00");
    }

    #[test]
    fn rfc3339_keeps_its_offset() {
        let at = parse_instant("2026-12-01T09:00:00+08:00", chrono_tz::UTC).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T01:00:00+00:00");
        assert!(parse_instant("tomorrow", chrono_tz::UTC).is_err());
    }
}
