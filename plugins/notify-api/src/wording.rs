//! The zh-CN wording shared by the notifiers people read (email, chat robots).

use crate::{Event, EventKind, Status};

/// A one-line title: `【tollgate】[告警] sms_code 套餐余量不足`.
pub fn title_zh(event: &Event) -> String {
    let what = match (event.event, event.status) {
        (EventKind::QuotaLow, _) => "套餐余量不足",
        (EventKind::QuotaExhausted, _) => "套餐已用完",
        (EventKind::QuotaRecovered, _) => "套餐余量已恢复",
        (EventKind::PackageExpiring, Status::Firing) => "套餐即将过期",
        (EventKind::PackageExpiring, Status::Resolved) => "套餐过期提醒已解除",
        (EventKind::ProviderAuthFailed, Status::Firing) => "AppCode 认证失败",
        (EventKind::ProviderAuthFailed, Status::Resolved) => "AppCode 认证已恢复",
        (EventKind::ReportMonthly, _) => "月度费用报告",
        (EventKind::Test, _) => "通知测试",
    };
    let tag = match event.status {
        Status::Resolved => "[已恢复]",
        Status::Firing => match event.severity {
            crate::Severity::Critical => "[严重]",
            crate::Severity::Warning => "[告警]",
            crate::Severity::Info => "[通知]",
        },
    };
    match &event.channel {
        Some(channel) => format!("【tollgate】{tag} {channel} {what}"),
        None => format!("【tollgate】{tag} {what}"),
    }
}

/// The facts of an event as `label：value` lines, in reading order.
fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if let Some(channel) = &event.channel {
        lines.push(("渠道", channel.clone()));
    }
    if let Some(rule) = &event.rule {
        lines.push(("规则", rule.clone()));
    }
    lines.push(("级别", event.severity.as_str().to_owned()));
    if let (Some(remaining), Some(purchased)) = (event.remaining_units, event.purchased_units) {
        let ratio = event
            .remaining_ratio
            .map(|r| format!("（{:.1}%）", r * 100.0))
            .unwrap_or_default();
        lines.push(("剩余", format!("{remaining} / {purchased} 条{ratio}")));
    }
    if let Some(rate) = event.burn_rate_per_day {
        lines.push(("近 7 天日均用量", format!("{rate:.1} 条")));
    }
    if let Some(days) = event.days_left {
        lines.push(("预计可用", format!("{days:.1} 天")));
    }
    if let Some(at) = event.forecast_exhausted_at {
        lines.push((
            "预计用完时间",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ));
    }
    if let Some(units) = event.suggested_units {
        lines.push(("建议续购", format!("{units} 条")));
    }
    if let Some(url) = &event.repurchase_url {
        lines.push(("续购地址", url.clone()));
    }
    lines.push((
        "时间",
        event
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ));
    lines
}

/// Plain text: the title, the summary, then the facts.
pub fn plain_zh(event: &Event) -> String {
    let mut text = format!("{}\n\n{}\n\n", title_zh(event), event.summary);
    for (label, value) in facts(event) {
        text.push_str(&format!("{label}：{value}\n"));
    }
    text.push_str(&format!("\n事件 ID：{}\n", event.id));
    text
}

/// Markdown for the chat robots.
pub fn markdown_zh(event: &Event) -> String {
    let mut text = format!("### {}\n\n{}\n\n", title_zh(event), event.summary);
    for (label, value) in facts(event) {
        text.push_str(&format!("- **{label}**：{value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_event_reads_as_a_test() {
        let event = Event::test("evt_1".into(), chrono::Utc::now());
        assert!(title_zh(&event).contains("通知测试"));
        assert!(plain_zh(&event).contains("evt_1"));
        assert!(markdown_zh(&event).starts_with("### 【tollgate】"));
    }
}
