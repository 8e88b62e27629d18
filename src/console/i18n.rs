//! The console's words and numbers as people read them: zh-CN first with the English
//! beside it, times and dates in `[server] timezone`, units as each channel counts them.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use crate::domain::{ChannelKind, Yuan};

/// A label in both languages: `剩余 Remaining`, the English smaller and greyed.
pub fn bi(zh: &str, en: &str) -> Markup {
    html! {
        span lang="zh-CN" { (zh) }
        " "
        span.en lang="en" { (en) }
    }
}

/// What a channel of `kind` is, in both languages.
pub fn kind_names(kind: ChannelKind) -> (&'static str, &'static str) {
    match kind {
        ChannelKind::SmsCode => ("短信验证码", "SMS codes"),
        ChannelKind::SmsNotice => ("短信通知", "SMS notices"),
        ChannelKind::SmsMarketing => ("营销短信", "Marketing SMS"),
        ChannelKind::VoiceCode => ("语音验证码", "Voice codes"),
        ChannelKind::VoiceNotice => ("语音通知", "Voice notices"),
    }
}

/// `1200 条` for SMS, `1200 次` for calls.
pub fn units(count: i64, kind: Option<ChannelKind>) -> String {
    format!(
        "{count} {}",
        tollgate_notify::unit_zh(kind.map(ChannelKind::as_str))
    )
}

/// `2026-12-01 16:30 (UTC+8)`.
pub fn time(at: DateTime<Utc>, timezone: Tz) -> String {
    tollgate_notify::local_time(at, timezone)
}

/// `2026-12-01`, the local date.
pub fn date(at: DateTime<Utc>, timezone: Tz) -> String {
    at.with_timezone(&timezone).format("%Y-%m-%d").to_string()
}

/// `¥45.00`.
pub fn money(amount: Yuan) -> String {
    format!("¥{amount}")
}

/// `37%`, `0.5%` below one percent (but not zero), never more than one decimal.
pub fn percent(ratio: f64) -> String {
    let value = (ratio * 100.0).clamp(0.0, 100.0);
    if value > 0.0 && value < 1.0 {
        format!("{value:.1}%")
    } else {
        format!("{value:.0}%")
    }
}

/// `12.5`, `3`: days (and other counts with a fraction) as people write them.
pub fn days(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(percent(0.7), "70%");
        assert_eq!(percent(0.004), "0.4%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(1.3), "100%");
        assert_eq!(days(12.0), "12");
        assert_eq!(days(2.46), "2.5");
        assert_eq!(units(5, Some(ChannelKind::VoiceNotice)), "5 次");
        assert_eq!(units(5, Some(ChannelKind::SmsCode)), "5 条");
    }

    #[test]
    fn dates_are_local() {
        let at: DateTime<Utc> = "2026-11-30T17:00:00Z".parse().unwrap();
        assert_eq!(date(at, chrono_tz::Asia::Shanghai), "2026-12-01");
        assert_eq!(
            time(at, chrono_tz::Asia::Shanghai),
            "2026-12-01 01:00 (UTC+8)"
        );
    }
}
