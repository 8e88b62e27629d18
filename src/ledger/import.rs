//! Importing charges in bulk: history recorded elsewhere (another system's send log, or
//! the benchmark's synthetic years of traffic) written through the ledger's own rules.
//!
//! Each chunk is one transaction that does what settling that many sends would do:
//! units are taken from the channel's packages in serving order and priced by position
//! (so the costs telescope exactly as live charges do), a settled `sends` row and its
//! `ledger_entries` are written with set-based statements, and the aggregates move with
//! them. What it never does is oversell: a charge that finds no unit left is refused,
//! and the chunk with it.

use chrono::{DateTime, Utc};

use super::aggregates::{Aggregates, BucketKey};
use super::pool::{LockedPool, Scope};
use super::{Ledger, LedgerError};
use crate::domain::{ChannelName, Outcome, SendClass};
use crate::store::{placeholders, to_micros};

/// Rows per statement: within both backends' limits on bound parameters.
const ROWS_PER_STATEMENT: usize = 1500;

/// One historical send, sent and charged.
#[derive(Debug, Clone)]
pub struct ImportedCharge {
    pub send_id: String,
    pub client: String,
    pub class: SendClass,
    pub units: i64,
    /// When it was sent (and charged).
    pub at: DateTime<Utc>,
    /// Already masked, as every stored number is.
    pub mobile_masked: String,
}

impl Ledger {
    /// Imports `charges` into `channel` in one transaction. Refused as a whole (nothing
    /// written) if the channel's live packages cannot cover them.
    #[tracing::instrument(skip_all, fields(channel = %channel, charges = charges.len()))]
    pub async fn import_charges(
        &self,
        channel: &ChannelName,
        charges: &[ImportedCharge],
    ) -> Result<(), LedgerError> {
        if charges.is_empty() {
            return Ok(());
        }
        let db = self.db();
        let now = self.now();
        let mut tx = db.begin_write().await?;
        let mut pool = LockedPool::load(&mut tx, db, channel, now, Scope::Sends).await?;
        let mut aggregates = Aggregates::new(channel.clone(), self.timezone());
        // (charge, allocation text, cost) and (charge, package, units, cost) rows.
        let mut sends = Vec::with_capacity(charges.len());
        let mut entries = Vec::with_capacity(charges.len());
        for charge in charges {
            let allocation = pool.take(charge.units);
            if allocation.units() < charge.units {
                return Err(LedgerError::Inconsistent(format!(
                    "channel {channel} has too few units left to import the history"
                )));
            }
            let parts = pool
                .charge(&allocation)
                .map_err(LedgerError::Inconsistent)?;
            let cost: i64 = parts.iter().map(|p| p.cost.micros()).sum();
            for part in &parts {
                entries.push((charge, part.package_id, part.units, part.cost.micros()));
            }
            aggregates.settled(
                charge.at,
                BucketKey {
                    client: charge.client.clone(),
                    class: charge.class.as_str().to_owned(),
                    route: String::new(),
                },
                Outcome::Sent,
                charge.units,
                cost,
            );
            sends.push((charge, allocation.to_string(), cost));
        }
        for chunk in sends.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO sends (id, channel, client, mobile_masked, units, allocation, \
                 status, charged_units, cost_micros, created_at, settled_at, class) VALUES {}",
                placeholders(chunk.len(), 12, 1)
            );
            let mut insert = sqlx::query(&sql);
            for (charge, allocation, cost) in chunk {
                insert = insert
                    .bind(&charge.send_id)
                    .bind(channel.as_str())
                    .bind(&charge.client)
                    .bind(&charge.mobile_masked)
                    .bind(charge.units)
                    .bind(allocation)
                    .bind(Outcome::Sent.as_str())
                    .bind(charge.units)
                    .bind(*cost)
                    .bind(to_micros(charge.at))
                    .bind(to_micros(charge.at))
                    .bind(charge.class.as_str());
            }
            insert.execute(&mut *tx).await?;
        }
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO ledger_entries (channel, package_id, send_id, client, units, \
                 cost_micros, created_at) VALUES {}",
                placeholders(chunk.len(), 7, 1)
            );
            let mut insert = sqlx::query(&sql);
            for (charge, package_id, units, cost) in chunk {
                insert = insert
                    .bind(channel.as_str())
                    .bind(*package_id)
                    .bind(&charge.send_id)
                    .bind(&charge.client)
                    .bind(*units)
                    .bind(*cost)
                    .bind(to_micros(charge.at));
            }
            insert.execute(&mut *tx).await?;
        }
        pool.write_back(&mut tx).await?;
        aggregates.write(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
