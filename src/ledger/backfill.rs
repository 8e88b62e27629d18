//! Building the usage buckets of a history recorded before the ledger kept them.
//!
//! A database migrated from an earlier version has sends, charges and adjustments but no
//! `usage_buckets`; the buckets are cut in local hours and days of the configured zone,
//! which SQL migrations do not know, so the application builds them once, at start,
//! from what the history still holds: the daily roll-ups that version kept (for days
//! whose raw rows retention may have deleted) and the raw rows for the rest. Running
//! totals were rebuilt by the migration itself.
//!
//! It runs once per database: the first instance to record `usage_buckets` in
//! `ledger_meta` builds them, in the same transaction; others find the record and skip.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::aggregates::{Aggregates, BucketCounts, BucketKey, Span, HOUR_BUCKETS_KEPT};
use super::{Ledger, LedgerError};
use crate::domain::{ChannelName, Outcome};
use crate::store::{from_micros, to_micros};

const MARKER: &str = "usage_buckets";

impl Ledger {
    /// Builds the usage buckets from the history, unless that was done already.
    /// Returns whether this call built them.
    #[tracing::instrument(skip_all)]
    pub async fn build_usage_buckets_once(&self) -> Result<bool, LedgerError> {
        let now = self.now();
        let mut tx = self.db().begin_write().await?;
        let claimed = sqlx::query(
            "INSERT INTO ledger_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(MARKER)
        .bind(format!("built at {}", now.to_rfc3339()))
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }

        let timezone = self.timezone();
        let mut per_channel: BTreeMap<String, Aggregates> = BTreeMap::new();

        // Days an earlier version rolled up: their raw rows may be gone.
        let rolled = sqlx::query(
            "SELECT d.day_start, d.day_end, u.channel, u.client, u.sends, u.sent, u.failed, \
             u.uncertain, u.billed_units, u.cost_micros FROM daily_usage u \
             JOIN rollup_days d ON d.day_start = u.day_start",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut covered: Vec<(i64, i64)> = Vec::new();
        for row in &rolled {
            let (start, end): (i64, i64) = (row.try_get("day_start")?, row.try_get("day_end")?);
            covered.push((start, end));
            let channel: String = row.try_get("channel")?;
            let key = BucketKey {
                client: row.try_get("client")?,
                class: String::new(),
                route: String::new(),
            };
            let counts = BucketCounts {
                sends: row.try_get("sends")?,
                sent: row.try_get("sent")?,
                failed: row.try_get("failed")?,
                uncertain: row.try_get("uncertain")?,
                billed_units: row.try_get("billed_units")?,
                cost_micros: row.try_get("cost_micros")?,
                ..BucketCounts::default()
            };
            if let Some(aggregates) = aggregates_of(&mut per_channel, &channel, timezone) {
                aggregates.count_in(Span::Day, from_micros(start), key, counts);
            }
        }
        let in_rolled_day = |at: i64| covered.iter().any(|&(start, end)| at >= start && at < end);
        let hours_from = to_micros(now - HOUR_BUCKETS_KEPT);

        // Settled sends, in the hour and day of their settlement.
        let sends = sqlx::query(
            "SELECT channel, client, class, route, status, charged_units, cost_micros, \
             COALESCE(settled_at, created_at) AS at FROM sends WHERE status <> 'reserved'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in &sends {
            let at: i64 = row.try_get("at")?;
            let status: String = row.try_get("status")?;
            let Ok(outcome) = status.parse::<Outcome>() else {
                continue;
            };
            let channel: String = row.try_get("channel")?;
            let key = BucketKey {
                client: row.try_get("client")?,
                class: row.try_get("class")?,
                route: row.try_get("route")?,
            };
            let counts = BucketCounts::settled(
                outcome,
                row.try_get("charged_units")?,
                row.try_get("cost_micros")?,
            );
            let Some(aggregates) = aggregates_of(&mut per_channel, &channel, timezone) else {
                continue;
            };
            if at >= hours_from {
                aggregates.count_in(Span::Hour, from_micros(at), key.clone(), counts);
            }
            if !in_rolled_day(at) {
                aggregates.count_in(Span::Day, from_micros(at), key, counts);
            }
        }

        // Reconciliation adjustments (never deleted by retention).
        let adjustments = sqlx::query(
            "SELECT channel, units, cost_micros, created_at FROM ledger_entries \
             WHERE reconciliation_id IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in &adjustments {
            let channel: String = row.try_get("channel")?;
            let at: DateTime<Utc> = from_micros(row.try_get("created_at")?);
            if let Some(aggregates) = aggregates_of(&mut per_channel, &channel, timezone) {
                let counts = BucketCounts {
                    adjusted_units: row.try_get("units")?,
                    adjusted_cost_micros: row.try_get("cost_micros")?,
                    ..BucketCounts::default()
                };
                let key = BucketKey {
                    client: String::new(),
                    class: String::new(),
                    route: String::new(),
                };
                if to_micros(at) >= hours_from {
                    aggregates.count_in(Span::Hour, at, key.clone(), counts);
                }
                aggregates.count_in(Span::Day, at, key, counts);
            }
        }

        let mut buckets = 0;
        for aggregates in per_channel.values() {
            buckets += aggregates.bucket_count();
            aggregates.write_buckets_in_chunks(&mut tx).await?;
        }
        tx.commit().await?;
        if buckets > 0 {
            tracing::info!(buckets, "usage buckets built from the existing history");
        }
        Ok(true)
    }
}

/// The aggregates being built for `channel` (none for a name that is not a channel's).
fn aggregates_of<'a>(
    per_channel: &'a mut BTreeMap<String, Aggregates>,
    channel: &str,
    timezone: chrono_tz::Tz,
) -> Option<&'a mut Aggregates> {
    let name = ChannelName::parse(channel).ok()?;
    Some(
        per_channel
            .entry(channel.to_owned())
            .or_insert_with(|| Aggregates::new(name, timezone)),
    )
}
