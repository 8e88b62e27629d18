//! Ledger housekeeping: daily roll-ups of sends and charges, and optional retention of
//! the raw rows once they are rolled up.
//!
//! A roll-up day is a local day of `[server] timezone`, `[day_start, day_end)` in UTC.
//! Days are rolled up in order, each starting where the last one ended, so the rolled-up
//! days cover one unbroken stretch of time: reports read roll-ups inside it and raw rows
//! outside it, and retention deletes raw rows only inside it. (If the time zone changes,
//! the first day rolled up afterwards is the part of a local day that the previous
//! roll-up did not cover, so the stretch stays unbroken.)
//!
//! A day is rolled up only once it ended more than [`SETTLE_GRACE`] ago and none of its
//! sends is still reserved, so its rows no longer change: a send's counts move until it
//! is settled, and a charge is stamped when its batch is written, a moment before the
//! commit makes it visible.
//!
//! Retention never touches packages, reconciliations or reconciliation adjustments; it
//! deletes sends' charge entries and then the settled sends that no entry refers to, and
//! only where the roll-ups already hold them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::Row;

use super::month::local_midnight;
use super::usage::{add_raw, Usage};
use crate::store::{from_micros, to_micros, Db};

/// How long after a day ends before it is rolled up.
pub const SETTLE_GRACE: chrono::Duration = chrono::Duration::hours(1);
/// At most this many days per pass, so that a first roll-up of years of history is
/// spread over several passes.
const MAX_DAYS_PER_PASS: usize = 400;
/// Rows deleted per statement by retention, so that no transaction grows huge.
const DELETE_BATCH: i64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupOutcome {
    pub days_rolled_up: usize,
    /// The end of the rolled-up stretch after this pass.
    pub rolled_up_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub entries_deleted: u64,
    pub sends_deleted: u64,
}

/// Rolls up every day that is complete, in order, up to `now`.
#[tracing::instrument(skip_all)]
pub async fn roll_up(
    db: &Db,
    timezone: Tz,
    now: DateTime<Utc>,
) -> Result<RollupOutcome, sqlx::Error> {
    let mut outcome = RollupOutcome {
        rolled_up_until: rolled_up_stretch(db).await?.map(|(_, end)| end),
        ..RollupOutcome::default()
    };
    let mut day_start = match outcome.rolled_up_until {
        Some(end) => end,
        None => match first_raw_row(db).await? {
            Some(first) => local_midnight(first.with_timezone(&timezone).date_naive(), timezone),
            None => return Ok(outcome),
        },
    };
    while outcome.days_rolled_up < MAX_DAYS_PER_PASS {
        let day = day_start.with_timezone(&timezone).date_naive();
        let day_end = local_midnight(day.succ_opt().expect("a next day exists"), timezone);
        if day_end + SETTLE_GRACE > now || has_reserved_sends(db, day_start, day_end).await? {
            break;
        }
        if !roll_up_day(db, timezone, day, day_start, day_end, now).await? {
            // Another instance rolled it up meanwhile; start again from its end.
            outcome.rolled_up_until = rolled_up_stretch(db).await?.map(|(_, end)| end);
            match outcome.rolled_up_until {
                Some(end) if end > day_start => {
                    day_start = end;
                    continue;
                }
                _ => break,
            }
        }
        outcome.days_rolled_up += 1;
        outcome.rolled_up_until = Some(day_end);
        day_start = day_end;
    }
    Ok(outcome)
}

/// Deletes raw send rows older than `retention` that the roll-ups hold.
#[tracing::instrument(skip_all)]
pub async fn apply_retention(
    db: &Db,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<RetentionOutcome, sqlx::Error> {
    let mut outcome = RetentionOutcome::default();
    let Some((first, end)) = rolled_up_stretch(db).await? else {
        return Ok(outcome);
    };
    let keep_after = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = end.min(keep_after);
    if cutoff <= first {
        return Ok(outcome);
    }
    let (first, cutoff) = (to_micros(first), to_micros(cutoff));
    loop {
        let deleted = sqlx::query(
            "DELETE FROM ledger_entries WHERE id IN (SELECT id FROM ledger_entries \
             WHERE send_id IS NOT NULL AND created_at >= $1 AND created_at < $2 LIMIT $3)",
        )
        .bind(first)
        .bind(cutoff)
        .bind(DELETE_BATCH)
        .execute(db.pool())
        .await?
        .rows_affected();
        outcome.entries_deleted += deleted;
        if deleted < DELETE_BATCH as u64 {
            break;
        }
    }
    // A send comes before its charge, so a send with an entry at or after the cutoff
    // keeps it and stays; it goes in a later pass.
    loop {
        let deleted = sqlx::query(
            "DELETE FROM sends WHERE id IN (SELECT s.id FROM sends s \
             WHERE s.created_at >= $1 AND s.created_at < $2 AND s.status <> 'reserved' \
             AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.send_id = s.id) LIMIT $3)",
        )
        .bind(first)
        .bind(cutoff)
        .bind(DELETE_BATCH)
        .execute(db.pool())
        .await?
        .rows_affected();
        outcome.sends_deleted += deleted;
        if deleted < DELETE_BATCH as u64 {
            break;
        }
    }
    Ok(outcome)
}

/// The rolled-up stretch: the first day's start and the last day's end.
pub async fn rolled_up_stretch(
    db: &Db,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    let row = sqlx::query("SELECT MIN(day_start) AS first, MAX(day_end) AS last FROM rollup_days")
        .fetch_one(db.pool())
        .await?;
    let first: Option<i64> = row.try_get("first")?;
    let last: Option<i64> = row.try_get("last")?;
    Ok(first
        .zip(last)
        .map(|(f, l)| (from_micros(f), from_micros(l))))
}

async fn first_raw_row(db: &Db) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let sends: Option<i64> = sqlx::query("SELECT MIN(created_at) AS first FROM sends")
        .fetch_one(db.pool())
        .await?
        .try_get("first")?;
    let entries: Option<i64> = sqlx::query(
        "SELECT MIN(created_at) AS first FROM ledger_entries WHERE send_id IS NOT NULL",
    )
    .fetch_one(db.pool())
    .await?
    .try_get("first")?;
    Ok(sends.into_iter().chain(entries).min().map(from_micros))
}

async fn has_reserved_sends(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let reserved: i64 = sqlx::query(
        "SELECT COUNT(*) AS reserved FROM sends WHERE status = 'reserved' \
         AND created_at >= $1 AND created_at < $2",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_one(db.pool())
    .await?
    .try_get("reserved")?;
    Ok(reserved > 0)
}

/// Rolls up one day in one transaction; `false` if another instance already had it.
async fn roll_up_day(
    db: &Db,
    timezone: Tz,
    day: chrono::NaiveDate,
    day_start: DateTime<Utc>,
    day_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    // The day's row goes in first: its keys make a second instance's insert a no-op.
    let claimed = sqlx::query(
        "INSERT INTO rollup_days (day, timezone, day_start, day_end, rolled_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING day_start",
    )
    .bind(day.to_string())
    .bind(timezone.name())
    .bind(to_micros(day_start))
    .bind(to_micros(day_end))
    .bind(to_micros(now))
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_none() {
        tx.rollback().await?;
        return Ok(false);
    }
    let mut usage: BTreeMap<(String, String), Usage> = BTreeMap::new();
    add_raw(&mut tx, day_start, day_end, &mut usage).await?;
    let rows: Vec<_> = usage.into_iter().collect();
    for chunk in rows.chunks(100) {
        let values = (0..chunk.len())
            .map(|i| {
                let p = i * 10;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9,
                    p + 10
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO daily_usage (day_start, day_end, channel, client, sends, sent, failed, \
             uncertain, billed_units, cost_micros) VALUES {values}"
        );
        let mut insert = sqlx::query(&sql);
        for ((channel, client), u) in chunk {
            insert = insert
                .bind(to_micros(day_start))
                .bind(to_micros(day_end))
                .bind(channel.as_str())
                .bind(client.as_str())
                .bind(u.sends)
                .bind(u.sent)
                .bind(u.failed)
                .bind(u.uncertain)
                .bind(u.billed_units)
                .bind(u.cost_micros);
        }
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}
