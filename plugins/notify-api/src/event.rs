//! The event JSON of SPEC §7: the webhook body, the exec program's stdin, and what
//! every other notifier renders.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The `version` of the event format.
pub const EVENT_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "quota.low")]
    QuotaLow,
    #[serde(rename = "quota.exhausted")]
    QuotaExhausted,
    #[serde(rename = "quota.recovered")]
    QuotaRecovered,
    #[serde(rename = "package.expiring")]
    PackageExpiring,
    #[serde(rename = "provider.auth_failed")]
    ProviderAuthFailed,
    #[serde(rename = "report.monthly")]
    ReportMonthly,
    /// The ledger's count and the marketplace's differ by `drift_alert_units` or more.
    #[serde(rename = "ledger.drift")]
    LedgerDrift,
    /// A channel's last hour of sends is many times its usual hourly traffic (SMS
    /// bombing, SMS pumping, a runaway job).
    #[serde(rename = "traffic.burst")]
    TrafficBurst,
    #[serde(rename = "test")]
    Test,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::QuotaLow => "quota.low",
            EventKind::QuotaExhausted => "quota.exhausted",
            EventKind::QuotaRecovered => "quota.recovered",
            EventKind::PackageExpiring => "package.expiring",
            EventKind::ProviderAuthFailed => "provider.auth_failed",
            EventKind::ReportMonthly => "report.monthly",
            EventKind::LedgerDrift => "ledger.drift",
            EventKind::TrafficBurst => "traffic.burst",
            EventKind::Test => "test",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(raw: &str) -> Option<Severity> {
        match raw {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One notification's content. Every field of SPEC §7 is always present in the JSON;
/// figures that do not apply (a test event has no channel) are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub version: String,
    /// Stable across retries: receivers deduplicate on it.
    pub id: String,
    pub event: EventKind,
    pub status: Status,
    pub rule: Option<String>,
    pub severity: Severity,
    pub channel: Option<String>,
    /// The channel's kind (`sms_code`, `voice_notice`, …): what its units are (SMS are
    /// counted in 条, voice calls in 次).
    #[serde(default)]
    pub channel_kind: Option<String>,
    pub remaining_units: Option<i64>,
    pub purchased_units: Option<i64>,
    pub remaining_ratio: Option<f64>,
    pub burn_rate_per_day: Option<f64>,
    pub days_left: Option<f64>,
    #[serde(with = "rfc3339_option")]
    pub forecast_exhausted_at: Option<DateTime<Utc>>,
    pub repurchase_url: Option<String>,
    pub suggested_units: Option<i64>,
    pub summary: String,
    #[serde(with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// `[server] timezone`, an IANA name such as `Asia/Shanghai`: the zone that text for
    /// people shows times in. Times in the JSON stay UTC. Events queued by a version
    /// without this field read as `UTC`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// `traffic.burst` only: the channel's sends in the last hour, and its average per
    /// hour over the trailing 7 days. Absent from the JSON of every other event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hour_sends: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_average_sends: Option<f64>,
    /// `report.monthly` only: the report as HTML (the email body). Absent from the JSON
    /// of every other event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_html: Option<String>,
    /// `report.monthly` only: the same report as plain text (the email's text part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_text: Option<String>,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// A monthly report rendered for people: the event's one-line summary, and the whole
/// report as plain text and as HTML (the email's two parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReport {
    pub summary: String,
    pub text: String,
    pub html: String,
}

impl Event {
    /// The event `tollgate notify test` sends: no channel, no figures. `timezone` is
    /// `[server] timezone`.
    pub fn test(id: String, occurred_at: DateTime<Utc>, timezone: &str) -> Event {
        Event {
            version: EVENT_VERSION.to_owned(),
            id,
            event: EventKind::Test,
            status: Status::Firing,
            rule: None,
            severity: Severity::Info,
            channel: None,
            channel_kind: None,
            remaining_units: None,
            purchased_units: None,
            remaining_ratio: None,
            burn_rate_per_day: None,
            days_left: None,
            forecast_exhausted_at: None,
            repurchase_url: None,
            suggested_units: None,
            summary: "tollgate 通知测试：收到这条消息说明该通知渠道配置正确。".to_owned(),
            occurred_at,
            timezone: timezone.to_owned(),
            last_hour_sends: None,
            hourly_average_sends: None,
            report_html: None,
            report_text: None,
        }
    }

    /// The monthly cost report: `summary` is its one-line total, the email carries the
    /// text and HTML renderings.
    pub fn monthly_report(
        id: String,
        report: RenderedReport,
        occurred_at: DateTime<Utc>,
        timezone: &str,
    ) -> Event {
        Event {
            event: EventKind::ReportMonthly,
            summary: report.summary,
            report_html: Some(report.html),
            report_text: Some(report.text),
            ..Event::test(id, occurred_at, timezone)
        }
    }

    /// The JSON body, exactly as webhooks and exec programs receive it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serializes")
    }
}

/// Times are written as RFC 3339 in UTC with second precision: `2026-12-01T08:00:00Z`.
mod rfc3339 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_option {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        at: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::rfc3339::serialize(at, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        raw.map(|raw| {
            DateTime::parse_from_rfc3339(&raw)
                .map(|at| at.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_every_field_of_the_spec() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let json: serde_json::Value =
            serde_json::from_str(&Event::test("evt_1".into(), at, "Asia/Shanghai").to_json())
                .unwrap();
        for key in [
            "version",
            "id",
            "event",
            "status",
            "rule",
            "severity",
            "channel",
            "channel_kind",
            "remaining_units",
            "purchased_units",
            "remaining_ratio",
            "burn_rate_per_day",
            "days_left",
            "forecast_exhausted_at",
            "repurchase_url",
            "suggested_units",
            "summary",
            "occurred_at",
            "timezone",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["version"], "1");
        assert_eq!(json["event"], "test");
        assert_eq!(
            json["occurred_at"], "2026-12-01T08:00:00Z",
            "times stay UTC"
        );
        assert_eq!(json["timezone"], "Asia/Shanghai");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back.occurred_at, at);
    }

    #[test]
    fn every_event_name_is_spelled_the_same_in_json_and_as_str() {
        for kind in [
            EventKind::QuotaLow,
            EventKind::QuotaExhausted,
            EventKind::QuotaRecovered,
            EventKind::PackageExpiring,
            EventKind::ProviderAuthFailed,
            EventKind::ReportMonthly,
            EventKind::LedgerDrift,
            EventKind::Test,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            let back: EventKind = serde_json::from_value(kind.as_str().into()).unwrap();
            assert_eq!(back, kind);
        }
        assert_eq!(EventKind::LedgerDrift.as_str(), "ledger.drift");
    }

    #[test]
    fn an_event_queued_before_the_timezone_field_reads_as_utc() {
        let mut json: serde_json::Value = serde_json::from_str(
            &Event::test("evt_1".into(), Utc::now(), "Asia/Shanghai").to_json(),
        )
        .unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("timezone");
        object.remove("channel_kind");
        let old: Event = serde_json::from_value(json).unwrap();
        assert_eq!(old.timezone, "UTC");
        assert_eq!(old.channel_kind, None);
    }
}
