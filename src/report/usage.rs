//! Usage over a time range: what sends did and what they were charged, per channel and
//! client, read from the daily roll-ups where a whole day is rolled up and from the raw
//! `sends` and `ledger_entries` rows for the rest.
//!
//! Counts (sends, sent, failed, uncertain) are by the send's `created_at`; billed units
//! and cost are by the charge entry's `created_at`, the moment the charge was settled.
//! Sends still `reserved` (in flight) are not counted. Reconciliation adjustments are
//! read apart from charges, always from the raw entries (they are few, are never
//! deleted by retention, and have a partial index of their own).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::store::{from_micros, to_micros, Db};

/// What sends of one channel and client did over a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Settled sends: `sent + failed + uncertain`.
    pub sends: i64,
    /// The vendor answered `Success`.
    pub sent: i64,
    /// Any other definite outcome (rejected, quota exhausted, throttled, auth failed,
    /// upstream error).
    pub failed: i64,
    /// The outcome is unknown (timeout after the request was written); charged.
    pub uncertain: i64,
    pub billed_units: i64,
    pub cost_micros: i64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.sends += other.sends;
        self.sent += other.sent;
        self.failed += other.failed;
        self.uncertain += other.uncertain;
        self.billed_units += other.billed_units;
        self.cost_micros += other.cost_micros;
    }
}

/// Reconciliation adjustments of one channel: units charged (negative: given back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Adjustment {
    pub units: i64,
    pub cost_micros: i64,
}

/// Usage keyed by (channel, client), and adjustments by channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeUsage {
    pub usage: BTreeMap<(String, String), Usage>,
    pub adjustments: BTreeMap<String, Adjustment>,
}

/// Where usage is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Roll-ups for whole rolled-up days, raw rows for the rest (what reports use).
    RollupsAndRaw,
    /// Raw rows only (to check roll-ups against, and the benchmark's baseline).
    RawOnly,
}

/// Usage in `[from, to)`.
pub async fn usage_between(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    source: Source,
) -> Result<RangeUsage, sqlx::Error> {
    let mut result = RangeUsage::default();
    let raw_ranges = match source {
        Source::RawOnly => vec![(from, to)],
        Source::RollupsAndRaw => {
            let covered = rolled_up_days_within(db, from, to).await?;
            add_rollups(db, from, to, &mut result.usage).await?;
            uncovered(from, to, &covered)
        }
    };
    if !raw_ranges.is_empty() {
        let mut conn = db.pool().acquire().await?;
        for (start, end) in raw_ranges {
            add_raw(&mut conn, start, end, &mut result.usage).await?;
        }
    }
    let rows = sqlx::query(
        "SELECT channel, CAST(SUM(units) AS BIGINT) AS units, \
         CAST(SUM(cost_micros) AS BIGINT) AS cost FROM ledger_entries \
         WHERE reconciliation_id IS NOT NULL AND created_at >= $1 AND created_at < $2 \
         GROUP BY channel",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(db.pool())
    .await?;
    for row in rows {
        result.adjustments.insert(
            row.try_get("channel")?,
            Adjustment {
                units: row.try_get("units")?,
                cost_micros: row.try_get("cost")?,
            },
        );
    }
    Ok(result)
}

/// The rolled-up days lying wholly within `[from, to)`, in order.
async fn rolled_up_days_within(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT day_start, day_end FROM rollup_days WHERE day_start >= $1 AND day_end <= $2 \
         ORDER BY day_start",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                from_micros(row.try_get("day_start")?),
                from_micros(row.try_get("day_end")?),
            ))
        })
        .collect()
}

/// `[from, to)` less the covered intervals (sorted, not overlapping).
fn uncovered(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    covered: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut gaps = Vec::new();
    let mut cursor = from;
    for &(start, end) in covered {
        if start > cursor {
            gaps.push((cursor, start));
        }
        cursor = cursor.max(end);
    }
    if cursor < to {
        gaps.push((cursor, to));
    }
    gaps
}

async fn add_rollups(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    usage: &mut BTreeMap<(String, String), Usage>,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT channel, client, CAST(SUM(sends) AS BIGINT) AS sends, \
         CAST(SUM(sent) AS BIGINT) AS sent, CAST(SUM(failed) AS BIGINT) AS failed, \
         CAST(SUM(uncertain) AS BIGINT) AS uncertain, \
         CAST(SUM(billed_units) AS BIGINT) AS billed_units, \
         CAST(SUM(cost_micros) AS BIGINT) AS cost FROM daily_usage \
         WHERE day_start >= $1 AND day_end <= $2 GROUP BY channel, client",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(db.pool())
    .await?;
    for row in rows {
        let key = (row.try_get("channel")?, row.try_get("client")?);
        usage.entry(key).or_default().add(&Usage {
            sends: row.try_get("sends")?,
            sent: row.try_get("sent")?,
            failed: row.try_get("failed")?,
            uncertain: row.try_get("uncertain")?,
            billed_units: row.try_get("billed_units")?,
            cost_micros: row.try_get("cost")?,
        });
    }
    Ok(())
}

/// Adds raw usage in `[from, to)` to `usage`, on a connection (or in a transaction).
pub(super) async fn add_raw(
    conn: &mut sqlx::AnyConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    usage: &mut BTreeMap<(String, String), Usage>,
) -> Result<(), sqlx::Error> {
    let sends = sqlx::query(
        "SELECT channel, client, COUNT(*) AS sends, \
         CAST(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS BIGINT) AS sent, \
         CAST(SUM(CASE WHEN status = 'uncertain' THEN 1 ELSE 0 END) AS BIGINT) AS uncertain \
         FROM sends WHERE created_at >= $1 AND created_at < $2 AND status <> 'reserved' \
         GROUP BY channel, client",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(&mut *conn)
    .await?;
    for row in sends {
        let key = (row.try_get("channel")?, row.try_get("client")?);
        let sends: i64 = row.try_get("sends")?;
        let sent: i64 = row.try_get("sent")?;
        let uncertain: i64 = row.try_get("uncertain")?;
        usage.entry(key).or_default().add(&Usage {
            sends,
            sent,
            failed: sends - sent - uncertain,
            uncertain,
            ..Usage::default()
        });
    }
    let charges = sqlx::query(
        "SELECT channel, COALESCE(client, '') AS client, CAST(SUM(units) AS BIGINT) AS units, \
         CAST(SUM(cost_micros) AS BIGINT) AS cost FROM ledger_entries \
         WHERE send_id IS NOT NULL AND created_at >= $1 AND created_at < $2 \
         GROUP BY channel, COALESCE(client, '')",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(&mut *conn)
    .await?;
    for row in charges {
        let key = (row.try_get("channel")?, row.try_get("client")?);
        usage.entry(key).or_default().add(&Usage {
            billed_units: row.try_get("units")?,
            cost_micros: row.try_get("cost")?,
            ..Usage::default()
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(hour * 3600, 0).unwrap()
    }

    #[test]
    fn uncovered_ranges_are_what_the_rollups_leave() {
        assert_eq!(uncovered(at(0), at(10), &[]), [(at(0), at(10))]);
        assert_eq!(
            uncovered(at(0), at(10), &[(at(0), at(2)), (at(4), at(6))]),
            [(at(2), at(4)), (at(6), at(10))]
        );
        assert!(uncovered(at(0), at(4), &[(at(0), at(2)), (at(2), at(4))]).is_empty());
    }
}
