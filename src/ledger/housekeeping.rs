//! Ledger housekeeping: hour buckets past their use, and (when configured) raw send rows
//! past retention.
//!
//! Reports, views and metrics read the aggregates, which hold everything they need, so
//! retention may delete old raw rows (sends and their charge entries) without changing
//! any figure. It never deletes a send still reserved, a package, a reconciliation or an
//! adjustment entry: those are the record of what was bought and corrected.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::aggregates::HOUR_BUCKETS_KEPT;
use super::{Ledger, LedgerError};
use crate::store::to_micros;

/// Rows deleted per statement, so that no transaction grows huge.
const DELETE_BATCH: i64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HousekeepingOutcome {
    pub hour_buckets_deleted: u64,
    pub entries_deleted: u64,
    pub sends_deleted: u64,
}

impl Ledger {
    /// Deletes hour buckets older than [`HOUR_BUCKETS_KEPT`] and, with `retention`, the
    /// settled sends created before `now - retention` with their charge entries.
    #[tracing::instrument(skip_all)]
    pub async fn housekeeping(
        &self,
        retention: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<HousekeepingOutcome, LedgerError> {
        let pool = self.db().pool();
        let mut outcome = HousekeepingOutcome {
            hour_buckets_deleted: sqlx::query(
                "DELETE FROM usage_buckets WHERE span = 'hour' AND bucket_start < $1",
            )
            .bind(to_micros(now - HOUR_BUCKETS_KEPT))
            .execute(pool)
            .await?
            .rows_affected(),
            ..HousekeepingOutcome::default()
        };
        let Some(retention) = retention else {
            return Ok(outcome);
        };
        let cutoff =
            to_micros(now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX));
        loop {
            let deleted = sqlx::query(
                "DELETE FROM ledger_entries WHERE id IN (SELECT e.id FROM ledger_entries e \
                 JOIN sends s ON s.id = e.send_id WHERE s.created_at < $1 \
                 AND s.status <> 'reserved' LIMIT $2)",
            )
            .bind(cutoff)
            .bind(DELETE_BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            outcome.entries_deleted += deleted;
            if deleted < DELETE_BATCH as u64 {
                break;
            }
        }
        loop {
            let deleted = sqlx::query(
                "DELETE FROM sends WHERE id IN (SELECT s.id FROM sends s \
                 WHERE s.created_at < $1 AND s.status <> 'reserved' \
                 AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.send_id = s.id) LIMIT $2)",
            )
            .bind(cutoff)
            .bind(DELETE_BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            outcome.sends_deleted += deleted;
            if deleted < DELETE_BATCH as u64 {
                break;
            }
        }
        Ok(outcome)
    }
}
