//! Reconciliation: bringing the ledger in line with the vendor console's count.
//!
//! The vendor's console is the final word on what is left. When it differs from the
//! ledger (sends made around tollgate, `uncertain` sends that were or were not billed),
//! an operator records the console's count. The difference is applied as an adjustment:
//! new ledger entries that charge, or give back, units, so that history is only ever
//! appended to and every past charge stays as it was.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::aggregates::Aggregates;
use super::pool::{LockedPool, Scope};
use super::{Ledger, LedgerError};
use crate::domain::{ChannelName, Yuan};
use crate::store::{from_micros, placeholders, to_micros, Transaction};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub id: i64,
    pub channel: String,
    pub vendor_remaining: i64,
    pub local_remaining: i64,
    /// Units charged (negative: given back) to bring the ledger to the vendor's count.
    /// Smaller than the difference only when the ledger could not move that far (units
    /// held by sends in flight, or more given back than was ever charged).
    pub adjusted_units: i64,
    pub adjusted_cost: Yuan,
    pub remaining_after: i64,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Ledger {
    /// Records the vendor console's count `vendor_remaining` for `channel` and applies the
    /// difference as an adjustment, in one transaction.
    #[tracing::instrument(skip_all, fields(channel = %channel, vendor_remaining))]
    pub async fn reconcile(
        &self,
        channel: &ChannelName,
        vendor_remaining: u64,
        note: Option<String>,
    ) -> Result<Reconciliation, LedgerError> {
        let vendor_remaining = i64::try_from(vendor_remaining)
            .map_err(|_| LedgerError::Inconsistent("remaining is too large".into()))?;
        let now = self.now();
        let db = self.db();
        let mut tx = db.begin_write().await?;
        let mut pool = LockedPool::load(&mut tx, db, channel, now, Scope::Reconciliation).await?;
        let record = self
            .reconcile_locked(&mut tx, &mut pool, channel, vendor_remaining, note, now)
            .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Brings `pool` (the channel's packages, locked in `tx` with
    /// [`Scope::Reconciliation`]) to `vendor_remaining`: records the reconciliation,
    /// appends the adjustment entries, writes the packages and the aggregates back. The
    /// caller commits, so that a reconciliation can be one part of a larger transaction
    /// (the marketplace's count, recorded with the reconciliation it caused).
    pub(super) async fn reconcile_locked(
        &self,
        tx: &mut Transaction,
        pool: &mut LockedPool,
        channel: &ChannelName,
        vendor_remaining: i64,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Reconciliation, LedgerError> {
        let local_remaining = pool.remaining();
        let difference = local_remaining - vendor_remaining;
        let parts = match difference {
            d if d > 0 => pool.take_and_charge(d),
            d if d < 0 => pool.give_back(-d),
            _ => Vec::new(),
        };
        let adjusted_units: i64 = parts.iter().map(|p| p.units).sum();
        let adjusted_cost = Yuan::from_micros(parts.iter().map(|p| p.cost.micros()).sum());
        let id: i64 = sqlx::query(
            "INSERT INTO reconciliations (channel, vendor_remaining, local_remaining, \
             adjusted_units, note, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(channel.as_str())
        .bind(vendor_remaining)
        .bind(local_remaining)
        .bind(adjusted_units)
        .bind(note.as_deref())
        .bind(to_micros(now))
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        if !parts.is_empty() {
            let sql = format!(
                "INSERT INTO ledger_entries (channel, package_id, reconciliation_id, units, \
                 cost_micros, created_at) VALUES {}",
                placeholders(parts.len(), 6, 1)
            );
            let mut insert = sqlx::query(&sql);
            for part in &parts {
                insert = insert
                    .bind(channel.as_str())
                    .bind(part.package_id)
                    .bind(id)
                    .bind(part.units)
                    .bind(part.cost.micros())
                    .bind(to_micros(now));
            }
            insert.execute(&mut **tx).await?;
        }
        pool.write_back(tx).await?;
        if adjusted_units != 0 || adjusted_cost.micros() != 0 {
            let mut aggregates = Aggregates::new(channel.clone(), self.timezone());
            aggregates.adjusted(now, adjusted_units, adjusted_cost.micros());
            aggregates.write(tx).await?;
        }
        Ok(Reconciliation {
            id,
            channel: channel.to_string(),
            vendor_remaining,
            local_remaining,
            adjusted_units,
            adjusted_cost,
            remaining_after: pool.remaining(),
            note,
            created_at: from_micros(to_micros(now)),
        })
    }
}
