//! The zh-CN wording shared by the notifiers people read (email, chat robots): a title
//! that shows the severity at a glance, and the event's facts with times in the event's
//! `timezone` and units named as the channel counts them (SMS 条, voice calls 次).

use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;

use crate::{Event, EventKind, Severity, Status};

/// The tag a title starts with: `【严重】`, `【警告】`, `【提示】` by severity while firing,
/// `【已恢复】` once resolved, `【月报】` and `【测试】` for the report and the test event.
pub fn severity_tag(event: &Event) -> &'static str {
    match (event.event, event.status) {
        (EventKind::ReportMonthly, _) => "【月报】",
        (EventKind::Test, _) => "【测试】",
        (_, Status::Resolved) => "【已恢复】",
        (_, Status::Firing) => match event.severity {
            Severity::Critical => "【严重】",
            Severity::Warning => "【警告】",
            Severity::Info => "【提示】",
        },
    }
}

/// The severity as people read it: `警告 warning`.
pub fn severity_zh(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "严重 critical",
        Severity::Warning => "警告 warning",
        Severity::Info => "提示 info",
    }
}

/// A one-line title, the email subject: `【警告】tollgate：sms_code 套餐余量不足`. The
/// monthly report's is its summary (`【月报】tollgate 2026-11 月度费用报告：合计 ¥12.34`).
pub fn title_zh(event: &Event) -> String {
    if event.event == EventKind::ReportMonthly {
        return format!("{}{}", severity_tag(event), event.summary);
    }
    let what = match (event.event, event.status) {
        (EventKind::QuotaLow, _) => "套餐余量不足",
        (EventKind::QuotaExhausted, _) => "套餐已用完",
        (EventKind::QuotaRecovered, _) => "套餐余量已恢复",
        (EventKind::PackageExpiring, Status::Firing) => "套餐即将过期",
        (EventKind::PackageExpiring, Status::Resolved) => "套餐过期提醒已解除",
        (EventKind::ProviderAuthFailed, Status::Firing) => "AppCode 认证失败",
        (EventKind::ProviderAuthFailed, Status::Resolved) => "AppCode 认证已恢复",
        (EventKind::ReportMonthly, _) => "月度费用报告",
        (EventKind::LedgerDrift, Status::Firing) => "账本与云市场余量不一致",
        (EventKind::LedgerDrift, Status::Resolved) => "账本与云市场余量已一致",
        (EventKind::TrafficBurst, Status::Firing) => "发送量异常激增",
        (EventKind::TrafficBurst, Status::Resolved) => "发送量已恢复正常",
        (EventKind::Test, _) => "通知测试",
    };
    let tag = severity_tag(event);
    match &event.channel {
        Some(channel) => format!("{tag}tollgate：{channel} {what}"),
        None => format!("{tag}tollgate：{what}"),
    }
}

/// What a channel of `kind` counts: `次` for voice calls, `条` for SMS (and when the kind
/// is not known).
pub fn unit_zh(kind: Option<&str>) -> &'static str {
    match kind {
        Some(kind) if kind.starts_with("voice") => "次",
        _ => "条",
    }
}

/// `at` as a local time in `timezone`, to the minute, with its UTC offset:
/// `2026-12-01 16:30 (UTC+8)`.
pub fn local_time(at: DateTime<Utc>, timezone: Tz) -> String {
    let local = at.with_timezone(&timezone);
    format!(
        "{} ({})",
        local.format("%Y-%m-%d %H:%M"),
        utc_offset(local.offset().fix().local_minus_utc())
    )
}

/// `UTC+8`, `UTC+5:30`, `UTC-3`, `UTC`.
fn utc_offset(seconds: i32) -> String {
    if seconds == 0 {
        return "UTC".to_owned();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    match minutes % 60 {
        0 => format!("UTC{sign}{}", minutes / 60),
        rest => format!("UTC{sign}{}:{rest:02}", minutes / 60),
    }
}

/// The event's `timezone`, or UTC if it names none that is known.
pub fn event_timezone(event: &Event) -> Tz {
    event.timezone.parse().unwrap_or(Tz::UTC)
}

/// One fact of an event: its zh-CN label, the English one beside it where there is room
/// (the email's table), and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub label: &'static str,
    pub label_en: &'static str,
    pub value: String,
}

/// The facts of an event in reading order. Every notifier people read shows these, so
/// an email's text and HTML parts and the robots carry the same figures.
pub fn facts(event: &Event) -> Vec<Fact> {
    let timezone = event_timezone(event);
    let unit = unit_zh(event.channel_kind.as_deref());
    let mut facts = Vec::new();
    let mut fact = |label, label_en, value: String| {
        facts.push(Fact {
            label,
            label_en,
            value,
        })
    };
    if let Some(channel) = &event.channel {
        fact("渠道", "Channel", channel.clone());
    }
    if let Some(rule) = &event.rule {
        fact("规则", "Rule", rule.clone());
    }
    if !matches!(event.event, EventKind::ReportMonthly | EventKind::Test) {
        fact("级别", "Severity", severity_zh(event.severity).to_owned());
        let status = match event.status {
            Status::Firing => "告警中 firing",
            Status::Resolved => "已恢复 resolved",
        };
        fact("状态", "Status", status.to_owned());
    }
    if let (Some(remaining), Some(purchased)) = (event.remaining_units, event.purchased_units) {
        let ratio = event
            .remaining_ratio
            .map(|r| format!("（{:.1}%）", r * 100.0))
            .unwrap_or_default();
        fact(
            "剩余",
            "Remaining",
            format!("{remaining} / {purchased} {unit}{ratio}"),
        );
    }
    if let Some(rate) = event.burn_rate_per_day {
        fact(
            "近 7 天日均用量",
            "Daily use, last 7 days",
            format!("{} {unit}/天", one_decimal(rate)),
        );
    }
    if let Some(days) = event.days_left {
        fact("预计可用", "Days left", format!("{days:.1} 天"));
    }
    if let Some(at) = event.forecast_exhausted_at {
        fact("预计用完时间", "Runs out at", local_time(at, timezone));
    }
    if let Some(units) = event.suggested_units {
        fact("建议续购", "Suggested purchase", format!("{units} {unit}"));
    }
    if let Some(url) = &event.repurchase_url {
        fact("续购地址", "Buy more at", url.clone());
    }
    fact("时间", "Time", local_time(event.occurred_at, timezone));
    facts
}

/// `60` for 60.0, `12.5` for 12.5.
fn one_decimal(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// Plain text: the title, the summary, the facts, the event id.
pub fn plain_zh(event: &Event) -> String {
    let mut text = format!("{}\n\n{}\n\n", title_zh(event), event.summary);
    for fact in facts(event) {
        text.push_str(&format!("{}：{}\n", fact.label, fact.value));
    }
    text.push_str(&format!("\n事件 ID：{}\n", event.id));
    text
}

/// Markdown for the chat robots.
pub fn markdown_zh(event: &Event) -> String {
    let mut text = format!("### {}\n\n{}\n\n", title_zh(event), event.summary);
    for fact in facts(event) {
        text.push_str(&format!("- **{}**：{}\n", fact.label, fact.value));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn low_quota_on_a_voice_channel() -> Event {
        Event {
            event: EventKind::QuotaLow,
            rule: Some("quota-low".into()),
            severity: Severity::Critical,
            channel: Some("voice_notice".into()),
            channel_kind: Some("voice_notice".into()),
            remaining_units: Some(40),
            purchased_units: Some(1000),
            remaining_ratio: Some(0.04),
            burn_rate_per_day: Some(20.0),
            days_left: Some(2.0),
            forecast_exhausted_at: Some(at("2026-12-03T08:30:00Z")),
            suggested_units: Some(1000),
            summary: "渠道 voice_notice 套餐余量不足。".into(),
            ..Event::test("evt_1".into(), at("2026-12-01T08:30:00Z"), "Asia/Shanghai")
        }
    }

    #[test]
    fn a_test_event_reads_as_a_test() {
        let event = Event::test("evt_1".into(), Utc::now(), "Asia/Shanghai");
        assert!(title_zh(&event).starts_with("【测试】tollgate：通知测试"));
        assert!(plain_zh(&event).contains("evt_1"));
        assert!(markdown_zh(&event).starts_with("### 【测试】"));
    }

    #[test]
    fn times_are_local_to_the_configured_zone() {
        let text = plain_zh(&low_quota_on_a_voice_channel());
        assert!(text.contains("时间：2026-12-01 16:30 (UTC+8)"), "{text}");
        assert!(
            text.contains("预计用完时间：2026-12-03 16:30 (UTC+8)"),
            "{text}"
        );
        assert!(!text.contains('Z'), "no UTC instant: {text}");
        assert_eq!(
            local_time(
                at("2026-07-01T12:00:00Z"),
                "America/St_Johns".parse().unwrap()
            ),
            "2026-07-01 09:30 (UTC-2:30)"
        );
        assert_eq!(
            local_time(at("2026-07-01T12:00:00Z"), Tz::UTC),
            "2026-07-01 12:00 (UTC)"
        );
    }

    #[test]
    fn voice_units_are_calls_and_sms_units_are_messages() {
        let voice = low_quota_on_a_voice_channel();
        let text = plain_zh(&voice);
        assert!(text.contains("剩余：40 / 1000 次（4.0%）"), "{text}");
        assert!(text.contains("近 7 天日均用量：20 次/天"), "{text}");
        assert!(text.contains("建议续购：1000 次"), "{text}");
        let sms = Event {
            channel_kind: Some("sms_code".into()),
            ..voice
        };
        assert!(plain_zh(&sms).contains("剩余：40 / 1000 条"));
    }

    #[test]
    fn the_title_shows_the_severity_at_a_glance() {
        let mut event = low_quota_on_a_voice_channel();
        assert_eq!(
            title_zh(&event),
            "【严重】tollgate：voice_notice 套餐余量不足"
        );
        event.severity = Severity::Warning;
        assert!(title_zh(&event).starts_with("【警告】"));
        event.severity = Severity::Info;
        assert!(title_zh(&event).starts_with("【提示】"));
        event.status = Status::Resolved;
        event.event = EventKind::QuotaRecovered;
        assert_eq!(
            title_zh(&event),
            "【已恢复】tollgate：voice_notice 套餐余量已恢复"
        );
    }

    #[test]
    fn a_drift_from_the_marketplace_is_a_warning_until_the_counts_agree() {
        let mut event = Event {
            event: EventKind::LedgerDrift,
            severity: Severity::Warning,
            ..low_quota_on_a_voice_channel()
        };
        assert_eq!(
            title_zh(&event),
            "【警告】tollgate：voice_notice 账本与云市场余量不一致"
        );
        event.status = Status::Resolved;
        assert_eq!(
            title_zh(&event),
            "【已恢复】tollgate：voice_notice 账本与云市场余量已一致"
        );
    }
}
