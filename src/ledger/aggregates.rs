//! The aggregates the ledger keeps beside its history, written in the same transaction
//! as the changes they sum: a channel's running totals (`channel_totals`) and its usage
//! per local hour and local day (`usage_buckets`).
//!
//! Every read that users and operators make often (quota views, burn rates, forecasts,
//! metrics, alert conditions, reports, the console) is answered from these rows and
//! from the packages' own counters, so its cost does not depend on how many charges
//! were ever made. The history itself (`sends`, `ledger_entries`) stays the record of
//! truth: `tests/api/aggregates.rs` checks that the aggregates equal a recomputation
//! from it after random sequences of operations.
//!
//! A change is first collected in memory ([`Aggregates`]), then written with two
//! statements whatever its size: one upsert of the channel's totals, one multi-row
//! upsert of the buckets it touched.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::instant::{local_day_start, local_hour_start};
use crate::domain::{ChannelName, Outcome, Yuan};
use crate::store::{placeholders, to_micros, Transaction};

/// Hour buckets older than this are deleted by housekeeping: they serve the 7-day burn
/// rate and the hourly burst check; day buckets are kept for reports.
pub const HOUR_BUCKETS_KEPT: chrono::Duration = chrono::Duration::days(35);

/// Values per bucket row written, and rows per statement: 14 000 parameters, within
/// both SQLite's and PostgreSQL's limits.
const BUCKET_COLUMNS: usize = 14;
const BUCKETS_PER_STATEMENT: usize = 1000;

/// The two sizes of bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Span {
    Hour,
    Day,
}

impl Span {
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Hour => "hour",
            Span::Day => "day",
        }
    }

    /// The start of the bucket of this span that holds `at`.
    pub fn start_of(self, at: DateTime<Utc>, timezone: Tz) -> DateTime<Utc> {
        match self {
            Span::Hour => local_hour_start(at, timezone),
            Span::Day => local_day_start(at, timezone),
        }
    }
}

/// What a bucket row counts. Sends count in the bucket of their settlement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Settled sends: `sent + failed + uncertain`.
    pub sends: i64,
    pub sent: i64,
    /// Any other definite outcome (rejected, quota exhausted, throttled, auth failed,
    /// upstream error).
    pub failed: i64,
    /// The outcome is unknown (a timeout after the request was written); charged.
    pub uncertain: i64,
    pub billed_units: i64,
    pub cost_micros: i64,
    /// Reconciliation adjustments: units charged (negative: given back) and their cost.
    pub adjusted_units: i64,
    pub adjusted_cost_micros: i64,
}

impl BucketCounts {
    pub fn add(&mut self, other: &BucketCounts) {
        self.sends += other.sends;
        self.sent += other.sent;
        self.failed += other.failed;
        self.uncertain += other.uncertain;
        self.billed_units += other.billed_units;
        self.cost_micros += other.cost_micros;
        self.adjusted_units += other.adjusted_units;
        self.adjusted_cost_micros += other.adjusted_cost_micros;
    }

    /// A settled send: counted by its outcome, with what it was charged.
    pub fn settled(outcome: Outcome, charged_units: i64, cost_micros: i64) -> Self {
        BucketCounts {
            sends: 1,
            sent: i64::from(outcome == Outcome::Sent),
            uncertain: i64::from(outcome == Outcome::Uncertain),
            failed: i64::from(!matches!(outcome, Outcome::Sent | Outcome::Uncertain)),
            billed_units: charged_units,
            cost_micros,
            ..BucketCounts::default()
        }
    }
}

/// Counts as the read interface shows them: money as exact yuan.
impl Serialize for BucketCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("UsageCounts", 8)?;
        s.serialize_field("sends", &self.sends)?;
        s.serialize_field("sent", &self.sent)?;
        s.serialize_field("failed", &self.failed)?;
        s.serialize_field("uncertain", &self.uncertain)?;
        s.serialize_field("billed_units", &self.billed_units)?;
        s.serialize_field("cost", &Yuan::from_micros(self.cost_micros))?;
        s.serialize_field("adjusted_units", &self.adjusted_units)?;
        s.serialize_field(
            "adjusted_cost",
            &Yuan::from_micros(self.adjusted_cost_micros),
        )?;
        s.end()
    }
}

/// Who a bucket row belongs to, besides its channel and time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketKey {
    /// The client that sent; `''` for reconciliation adjustments.
    pub client: String,
    /// The send class; `''` for adjustments.
    pub class: String,
    /// The route the send went through; `''` for none.
    pub route: String,
}

/// Changes to one channel's running totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotalsDelta {
    /// Units charged for sends (including observe mode's units beyond the packages).
    pub billed_units: i64,
    pub cost_micros: i64,
    pub purchased_units: i64,
    /// Package units held by reservations: up when reserved, down when settled.
    pub reserved_units: i64,
    pub unmetered_units: i64,
    /// The signed net of reconciliation adjustments (negative: written off).
    pub reconciled_units: i64,
    pub reconciled_cost_micros: i64,
    /// The latest vendor answer that says anything about the AppCode: `true` if it was a
    /// refusal.
    pub auth_failing: Option<bool>,
    /// The vendor's own count of what is left, from its latest answer, and when.
    pub vendor_remaining: Option<(i64, DateTime<Utc>)>,
    /// A package purchased at this time was registered (the earliest is kept).
    pub purchased_at: Option<DateTime<Utc>>,
}

/// Everything one transaction changes in a channel's aggregates.
#[derive(Debug, Clone)]
pub struct Aggregates {
    channel: ChannelName,
    timezone: Tz,
    pub totals: TotalsDelta,
    buckets: BTreeMap<(Span, DateTime<Utc>, BucketKey), BucketCounts>,
}

impl Aggregates {
    pub fn new(channel: ChannelName, timezone: Tz) -> Self {
        Self {
            channel,
            timezone,
            totals: TotalsDelta::default(),
            buckets: BTreeMap::new(),
        }
    }

    /// Adds `counts` to the hour and the day buckets holding `at`.
    pub fn count(&mut self, at: DateTime<Utc>, key: BucketKey, counts: BucketCounts) {
        self.count_in(Span::Hour, at, key.clone(), counts);
        self.count_in(Span::Day, at, key, counts);
    }

    /// Adds `counts` to the bucket of `span` holding `at`.
    pub fn count_in(
        &mut self,
        span: Span,
        at: DateTime<Utc>,
        key: BucketKey,
        counts: BucketCounts,
    ) {
        let start = span.start_of(at, self.timezone);
        self.buckets
            .entry((span, start, key))
            .or_default()
            .add(&counts);
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// A settled send, in the buckets and in the totals.
    pub fn settled(
        &mut self,
        at: DateTime<Utc>,
        key: BucketKey,
        outcome: Outcome,
        charged_units: i64,
        cost_micros: i64,
    ) {
        self.totals.billed_units += charged_units;
        self.totals.cost_micros += cost_micros;
        self.count(
            at,
            key,
            BucketCounts::settled(outcome, charged_units, cost_micros),
        );
        // Only answers in which the gateway judged the AppCode say anything about it.
        match outcome {
            Outcome::AuthFailed => self.totals.auth_failing = Some(true),
            Outcome::Sent
            | Outcome::VendorRejected
            | Outcome::VendorQuotaExhausted
            | Outcome::Throttled => self.totals.auth_failing = Some(false),
            Outcome::UpstreamError | Outcome::Uncertain => {}
        }
    }

    /// A reconciliation adjustment of `units` (positive: charged, negative: given back).
    pub fn adjusted(&mut self, at: DateTime<Utc>, units: i64, cost_micros: i64) {
        self.totals.reconciled_units -= units;
        self.totals.reconciled_cost_micros -= cost_micros;
        let counts = BucketCounts {
            adjusted_units: units,
            adjusted_cost_micros: cost_micros,
            ..BucketCounts::default()
        };
        let key = BucketKey {
            client: String::new(),
            class: String::new(),
            route: String::new(),
        };
        self.count(at, key, counts);
    }

    /// The bucket changes as a JSON array of rows, for a statement that reads them with
    /// `jsonb_to_recordset` (the optimistic batch on PostgreSQL). Adjustments never
    /// travel this way: only settlements are batched.
    pub fn buckets_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.buckets
                .iter()
                .map(|((span, start, key), c)| {
                    serde_json::json!({
                        "span": span.as_str(),
                        "bucket_start": to_micros(*start),
                        "client": key.client,
                        "class": key.class,
                        "route": key.route,
                        "sends": c.sends,
                        "sent": c.sent,
                        "failed": c.failed,
                        "uncertain": c.uncertain,
                        "billed_units": c.billed_units,
                        "cost_micros": c.cost_micros,
                    })
                })
                .collect(),
        )
    }

    /// Writes the changes: one statement for the totals, one for the buckets.
    pub async fn write(&self, tx: &mut Transaction) -> Result<(), sqlx::Error> {
        if self.totals != TotalsDelta::default() {
            self.write_totals(tx).await?;
        }
        if !self.buckets.is_empty() {
            self.write_buckets_in_chunks(tx).await?;
        }
        Ok(())
    }

    async fn write_totals(&self, tx: &mut Transaction) -> Result<(), sqlx::Error> {
        let t = &self.totals;
        // NULL leaves the flag and the vendor's count as they were.
        let (vendor_remaining, vendor_remaining_at) = match t.vendor_remaining {
            Some((count, at)) => (Some(count), Some(to_micros(at))),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO channel_totals (channel, billed_units, cost_micros, purchased_units, \
             reserved_units, unmetered_units, reconciled_units, reconciled_cost_micros, \
             auth_failing, vendor_remaining, vendor_remaining_at, first_purchased_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, 0), $10, $11, $12) \
             ON CONFLICT (channel) DO UPDATE SET \
             billed_units = channel_totals.billed_units + excluded.billed_units, \
             cost_micros = channel_totals.cost_micros + excluded.cost_micros, \
             purchased_units = channel_totals.purchased_units + excluded.purchased_units, \
             reserved_units = channel_totals.reserved_units + excluded.reserved_units, \
             unmetered_units = channel_totals.unmetered_units + excluded.unmetered_units, \
             reconciled_units = channel_totals.reconciled_units + excluded.reconciled_units, \
             reconciled_cost_micros = channel_totals.reconciled_cost_micros \
             + excluded.reconciled_cost_micros, \
             auth_failing = COALESCE($9, channel_totals.auth_failing), \
             vendor_remaining = COALESCE($10, channel_totals.vendor_remaining), \
             vendor_remaining_at = COALESCE($11, channel_totals.vendor_remaining_at), \
             first_purchased_at = CASE WHEN excluded.first_purchased_at IS NOT NULL \
             AND (channel_totals.first_purchased_at IS NULL \
             OR excluded.first_purchased_at < channel_totals.first_purchased_at) \
             THEN excluded.first_purchased_at ELSE channel_totals.first_purchased_at END",
        )
        .bind(self.channel.as_str())
        .bind(t.billed_units)
        .bind(t.cost_micros)
        .bind(t.purchased_units)
        .bind(t.reserved_units)
        .bind(t.unmetered_units)
        .bind(t.reconciled_units)
        .bind(t.reconciled_cost_micros)
        .bind(t.auth_failing.map(i64::from))
        .bind(vendor_remaining)
        .bind(vendor_remaining_at)
        .bind(t.purchased_at.map(to_micros))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Writes the bucket changes, in as few statements as the database's limit on
    /// parameters allows (one for any batch of the send path).
    pub async fn write_buckets_in_chunks(&self, tx: &mut Transaction) -> Result<(), sqlx::Error> {
        let rows: Vec<_> = self.buckets.iter().collect();
        for chunk in rows.chunks(BUCKETS_PER_STATEMENT) {
            self.write_buckets(tx, chunk).await?;
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    async fn write_buckets(
        &self,
        tx: &mut Transaction,
        rows: &[(&(Span, DateTime<Utc>, BucketKey), &BucketCounts)],
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO usage_buckets (span, channel, bucket_start, client, class, route, \
             sends, sent, failed, uncertain, billed_units, cost_micros, adjusted_units, \
             adjusted_cost_micros) VALUES {} \
             ON CONFLICT (span, channel, bucket_start, client, class, route) DO UPDATE SET \
             sends = usage_buckets.sends + excluded.sends, \
             sent = usage_buckets.sent + excluded.sent, \
             failed = usage_buckets.failed + excluded.failed, \
             uncertain = usage_buckets.uncertain + excluded.uncertain, \
             billed_units = usage_buckets.billed_units + excluded.billed_units, \
             cost_micros = usage_buckets.cost_micros + excluded.cost_micros, \
             adjusted_units = usage_buckets.adjusted_units + excluded.adjusted_units, \
             adjusted_cost_micros = usage_buckets.adjusted_cost_micros \
             + excluded.adjusted_cost_micros",
            placeholders(rows.len(), BUCKET_COLUMNS, 1)
        );
        let mut insert = sqlx::query(&sql);
        for ((span, start, key), counts) in rows {
            insert = insert
                .bind(span.as_str())
                .bind(self.channel.as_str())
                .bind(to_micros(*start))
                .bind(&key.client)
                .bind(&key.class)
                .bind(&key.route)
                .bind(counts.sends)
                .bind(counts.sent)
                .bind(counts.failed)
                .bind(counts.uncertain)
                .bind(counts.billed_units)
                .bind(counts.cost_micros)
                .bind(counts.adjusted_units)
                .bind(counts.adjusted_cost_micros);
        }
        insert.execute(&mut **tx).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw).unwrap().into()
    }

    fn key() -> BucketKey {
        BucketKey {
            client: "shop".into(),
            class: "critical".into(),
            route: String::new(),
        }
    }

    #[test]
    fn a_settled_send_counts_in_its_local_hour_and_day() {
        let mut aggregates = Aggregates::new(
            ChannelName::parse("sms").unwrap(),
            chrono_tz::Asia::Shanghai,
        );
        // 23:30 on 30 November in Shanghai.
        aggregates.settled(at("2026-11-30T15:30:00Z"), key(), Outcome::Sent, 2, 90_000);
        aggregates.settled(
            at("2026-11-30T15:45:00Z"),
            key(),
            Outcome::Uncertain,
            1,
            45_000,
        );
        let hour = aggregates.buckets[&(Span::Hour, at("2026-11-30T15:00:00Z"), key())];
        assert_eq!((hour.sends, hour.sent, hour.uncertain), (2, 1, 1));
        assert_eq!((hour.billed_units, hour.cost_micros), (3, 135_000));
        let day = aggregates.buckets[&(Span::Day, at("2026-11-29T16:00:00Z"), key())];
        assert_eq!(day, hour);
        assert_eq!(aggregates.totals.billed_units, 3);
    }

    #[test]
    fn the_latest_answer_about_the_appcode_decides_whether_it_is_failing() {
        let mut aggregates = Aggregates::new(ChannelName::parse("sms").unwrap(), chrono_tz::UTC);
        let now = at("2026-11-30T15:30:00Z");
        aggregates.settled(now, key(), Outcome::AuthFailed, 0, 0);
        aggregates.settled(now, key(), Outcome::UpstreamError, 0, 0);
        assert_eq!(aggregates.totals.auth_failing, Some(true));
        aggregates.settled(now, key(), Outcome::Sent, 1, 0);
        assert_eq!(aggregates.totals.auth_failing, Some(false));
    }

    #[test]
    fn a_write_off_is_a_negative_reconciled_figure() {
        let mut aggregates = Aggregates::new(ChannelName::parse("sms").unwrap(), chrono_tz::UTC);
        aggregates.adjusted(at("2026-11-30T15:30:00Z"), 17, 765_000);
        assert_eq!(aggregates.totals.reconciled_units, -17);
        assert_eq!(aggregates.totals.reconciled_cost_micros, -765_000);
        assert_eq!(aggregates.totals.billed_units, 0);
    }
}
