//! Instants given by people (RFC 3339, or a plain date read in the configured timezone),
//! and the local boundaries (midnights, hours) of the configured timezone in UTC.

use chrono::{DateTime, LocalResult, NaiveDate, Offset, TimeZone, Utc};
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
    Ok(local_midnight(date, timezone))
}

/// The first instant of `day` in `timezone`, as UTC. Where local midnight does not exist
/// (a daylight-saving gap at midnight), the first local time after it that does.
pub fn local_midnight(day: NaiveDate, timezone: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    match timezone.from_local_datetime(&midnight) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => (1..=180)
            .find_map(|minutes| {
                timezone
                    .from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                    .earliest()
            })
            .expect("a gap in local time lasts less than three hours")
            .with_timezone(&Utc),
    }
}

/// The local midnight that begins the local day of `at`.
pub fn local_day_start(at: DateTime<Utc>, timezone: Tz) -> DateTime<Utc> {
    local_midnight(at.with_timezone(&timezone).date_naive(), timezone)
}

/// The start of the local hour that holds `at`: whole hours of local time, which in a
/// zone offset by a fraction of an hour (+05:45) do not start on a UTC hour. A local day
/// is made of whole local hours, so hour buckets add up to day buckets exactly.
pub fn local_hour_start(at: DateTime<Utc>, timezone: Tz) -> DateTime<Utc> {
    let offset = i64::from(
        timezone
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let local = at.timestamp() + offset;
    let start = local - local.rem_euclid(3600) - offset;
    DateTime::from_timestamp(start, 0).expect("an hour start is within chrono's range")
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
    fn local_hours_follow_the_zone_offset() {
        let at = parse_instant("2026-12-01T09:20:00+05:45", chrono_tz::UTC).unwrap();
        let start = local_hour_start(at, chrono_tz::Asia::Kathmandu);
        assert_eq!(start.to_rfc3339(), "2026-12-01T03:15:00+00:00");
        let shanghai = local_hour_start(at, chrono_tz::Asia::Shanghai);
        assert_eq!(shanghai.to_rfc3339(), "2026-12-01T03:00:00+00:00");
        let day = local_day_start(at, chrono_tz::Asia::Shanghai);
        assert_eq!(day.to_rfc3339(), "2026-11-30T16:00:00+00:00");
    }

    #[test]
    fn rfc3339_keeps_its_offset() {
        let at = parse_instant("2026-12-01T09:00:00+08:00", chrono_tz::UTC).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T01:00:00+00:00");
        assert!(parse_instant("tomorrow", chrono_tz::UTC).is_err());
    }
}
