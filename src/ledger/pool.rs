//! A channel's package rows, locked for the length of one write transaction.
//!
//! Every change to quota happens on a `LockedPool`: it is loaded with the rows locked
//! (`FOR UPDATE` on PostgreSQL; SQLite's write transaction excludes other writers), the
//! operations of a batch change it in memory in order, and [`LockedPool::write_back`]
//! stores the rows that changed before the transaction commits. Because the rows stay
//! locked from load to commit, the in-memory counts are the truth for the whole batch,
//! and the `CHECK (taken <= units)` constraint backs that up in the database itself.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Allocation;
use crate::domain::money::cost_of_units;
use crate::domain::{ChannelName, Yuan};
use crate::store::{placeholders, to_micros, Db, Transaction};

#[derive(Debug, Clone)]
struct PackageState {
    id: i64,
    units: i64,
    price: Yuan,
    taken: i64,
    charged: i64,
    expires_at: Option<i64>,
    /// The counters as the database held them when loaded (or last written): what an
    /// optimistic write checks the row still holds.
    stored_taken: i64,
    stored_charged: i64,
}

impl PackageState {
    fn serves_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now) && self.taken < self.units
    }

    fn dirty(&self) -> bool {
        self.taken != self.stored_taken || self.charged != self.stored_charged
    }
}

/// A package's counters before and after a batch: the write sets the new values where
/// the row still holds the old ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PackageMove {
    pub id: i64,
    pub stored_taken: i64,
    pub stored_charged: i64,
    pub taken: i64,
    pub charged: i64,
}

/// One charged slice of a send: units of one package and what they cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChargedPart {
    pub package_id: i64,
    pub units: i64,
    pub cost: Yuan,
}

/// Which packages a transaction needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Sends,
    Reconciliation,
}

#[derive(Debug, Clone)]
pub(super) struct LockedPool {
    /// In serving order: earliest expiry first (no expiry last), then earliest purchase.
    packages: Vec<PackageState>,
    now: i64,
}

impl LockedPool {
    /// Loads and locks the packages a batch can touch: those that can still serve, and
    /// those with reservations outstanding (which may have expired since). For a
    /// reconciliation, also the used-up packages that have not expired, since it may
    /// give units back to them.
    pub async fn load(
        tx: &mut Transaction,
        db: &Db,
        channel: &ChannelName,
        now: DateTime<Utc>,
        scope: Scope,
    ) -> Result<Self, sqlx::Error> {
        let now = to_micros(now);
        let used_up = match scope {
            Scope::Sends => "",
            Scope::Reconciliation => {
                " OR (charged > 0 AND (expires_at IS NULL OR expires_at > $2))"
            }
        };
        // Locks are taken in id order so that two transactions never wait on each other
        // in a cycle; the serving order is applied afterwards in memory.
        let rows = sqlx::query(&format!(
            "SELECT id, units, price_micros, taken, charged, purchased_at, expires_at \
             FROM packages WHERE channel = $1 AND ((charged < units \
             AND (expires_at IS NULL OR expires_at > $2 OR taken > charged)){}) \
             ORDER BY id{}",
            used_up,
            db.for_update()
        ))
        .bind(channel.as_str())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        let mut keyed = Vec::with_capacity(rows.len());
        for row in rows {
            let state = PackageState {
                id: row.try_get("id")?,
                units: row.try_get("units")?,
                price: Yuan::from_micros(row.try_get("price_micros")?),
                taken: row.try_get("taken")?,
                charged: row.try_get("charged")?,
                expires_at: row.try_get("expires_at")?,
                stored_taken: 0,
                stored_charged: 0,
            };
            let state = PackageState {
                stored_taken: state.taken,
                stored_charged: state.charged,
                ..state
            };
            let purchased_at: i64 = row.try_get("purchased_at")?;
            keyed.push((
                (state.expires_at.unwrap_or(i64::MAX), purchased_at, state.id),
                state,
            ));
        }
        keyed.sort_by_key(|(key, _)| *key);
        Ok(Self {
            packages: keyed.into_iter().map(|(_, state)| state).collect(),
            now,
        })
    }

    /// The same packages at another moment (a cached copy reused for the next batch).
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = to_micros(now);
        self
    }

    /// Packages that can serve now or later: not expired, not used up. An optimistic
    /// write checks the database knows no other, so that a package registered since the
    /// copy was loaded is never passed over.
    pub fn live_count(&self) -> usize {
        self.packages
            .iter()
            .filter(|p| p.expires_at.is_none_or(|at| at > self.now) && p.charged < p.units)
            .count()
    }

    /// `(id, taken, charged)` of every package as the database last held them.
    pub fn stored_counters(&self) -> Vec<(i64, i64, i64)> {
        self.packages
            .iter()
            .map(|p| (p.id, p.stored_taken, p.stored_charged))
            .collect()
    }

    /// The units of the live pool (unexpired packages not used up): what a reserve's
    /// percentage is of.
    pub fn pool_units(&self) -> i64 {
        self.packages
            .iter()
            .filter(|p| p.expires_at.is_none_or(|at| at > self.now) && p.charged < p.units)
            .map(|p| p.units)
            .sum()
    }

    /// What the batch changed, package by package.
    pub fn moves(&self) -> Vec<PackageMove> {
        self.packages
            .iter()
            .filter(|p| p.dirty())
            .map(|p| PackageMove {
                id: p.id,
                stored_taken: p.stored_taken,
                stored_charged: p.stored_charged,
                taken: p.taken,
                charged: p.charged,
            })
            .collect()
    }

    /// The batch committed: the counters in memory are what the database holds.
    pub fn committed(&mut self) {
        for package in &mut self.packages {
            package.stored_taken = package.taken;
            package.stored_charged = package.charged;
        }
    }

    /// Units that can still be reserved.
    pub fn remaining(&self) -> i64 {
        self.packages
            .iter()
            .filter(|p| p.serves_at(self.now))
            .map(|p| p.units - p.taken)
            .sum()
    }

    /// Takes up to `wanted` units in serving order. Returns what was taken; the caller
    /// decides whether a partial allocation is acceptable (observe mode) or must be
    /// given back (enforce mode).
    pub fn take(&mut self, wanted: i64) -> Allocation {
        let mut left = wanted;
        let mut allocation = Allocation::default();
        for package in self.packages.iter_mut() {
            if left == 0 {
                break;
            }
            if !package.serves_at(self.now) {
                continue;
            }
            let units = left.min(package.units - package.taken);
            package.taken += units;
            left -= units;
            allocation.parts.push((package.id, units));
        }
        allocation
    }

    /// Returns reserved units to their packages (the send was not charged).
    pub fn release(&mut self, allocation: &Allocation) -> Result<(), String> {
        for &(id, units) in &allocation.parts {
            let package = self.find(id)?;
            if package.taken - package.charged < units {
                return Err(format!(
                    "package {id} has fewer than {units} units reserved"
                ));
            }
            package.taken -= units;
        }
        Ok(())
    }

    /// Turns reserved units into charged ones and prices them. Units are priced by their
    /// position in the package (see `cost_of_units`), so a fully used package's charges
    /// add up to its price exactly.
    pub fn charge(&mut self, allocation: &Allocation) -> Result<Vec<ChargedPart>, String> {
        let mut parts = Vec::with_capacity(allocation.parts.len());
        for &(id, units) in &allocation.parts {
            let package = self.find(id)?;
            if package.taken - package.charged < units {
                return Err(format!(
                    "package {id} has fewer than {units} units reserved"
                ));
            }
            let cost = cost_of_units(package.price, package.units, package.charged, units);
            package.charged += units;
            parts.push(ChargedPart {
                package_id: id,
                units,
                cost,
            });
        }
        Ok(parts)
    }

    /// Charges units directly, without a reservation first (a reconciliation that
    /// found the vendor has fewer units left than the ledger).
    pub fn take_and_charge(&mut self, wanted: i64) -> Vec<ChargedPart> {
        let allocation = self.take(wanted);
        self.charge(&allocation)
            .expect("units just taken are reserved and can be charged")
    }

    /// Gives charged units back (a reconciliation that found the vendor has more left
    /// than the ledger), newest-serving packages first, so that the next sends use them
    /// again. Reserved units are never touched. Returns the parts with negative cost.
    pub fn give_back(&mut self, wanted: i64) -> Vec<ChargedPart> {
        let now = self.now;
        let mut left = wanted;
        let mut parts = Vec::new();
        for package in self.packages.iter_mut().rev() {
            if left == 0 {
                break;
            }
            if package.expires_at.is_some_and(|at| at <= now) || package.charged == 0 {
                continue;
            }
            let units = left.min(package.charged);
            let refund =
                cost_of_units(package.price, package.units, package.charged - units, units);
            package.charged -= units;
            package.taken -= units;
            left -= units;
            parts.push(ChargedPart {
                package_id: package.id,
                units: -units,
                cost: Yuan::from_micros(-refund.micros()),
            });
        }
        parts
    }

    /// Stores the counts of every package this batch changed, in one statement.
    pub async fn write_back(&self, tx: &mut Transaction) -> Result<(), sqlx::Error> {
        let dirty: Vec<&PackageState> = self.packages.iter().filter(|p| p.dirty()).collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE packages SET taken = v.taken, charged = v.charged \
             FROM (SELECT column1 AS id, column2 AS taken, column3 AS charged \
             FROM (VALUES {}) AS t) AS v WHERE packages.id = v.id",
            placeholders(dirty.len(), 3, 1)
        );
        let mut update = sqlx::query(&sql);
        for package in dirty {
            update = update
                .bind(package.id)
                .bind(package.taken)
                .bind(package.charged);
        }
        update.execute(&mut **tx).await?;
        Ok(())
    }

    fn find(&mut self, id: i64) -> Result<&mut PackageState, String> {
        self.packages
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| format!("package {id} holds a reservation but was not loaded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(packages: &[(i64, i64, i64, Option<i64>)]) -> LockedPool {
        LockedPool {
            packages: packages
                .iter()
                .map(|&(id, units, price, expires_at)| PackageState {
                    id,
                    units,
                    price: Yuan::from_micros(price),
                    taken: 0,
                    charged: 0,
                    expires_at,
                    stored_taken: 0,
                    stored_charged: 0,
                })
                .collect(),
            now: 100,
        }
    }

    #[test]
    fn takes_in_serving_order_and_spans_packages() {
        let mut pool = pool(&[(1, 2, 0, Some(500)), (2, 10, 0, None)]);
        let allocation = pool.take(3);
        assert_eq!(allocation.parts, vec![(1, 2), (2, 1)]);
        assert_eq!(pool.remaining(), 9);
    }

    #[test]
    fn expired_packages_serve_nothing() {
        let mut pool = pool(&[(1, 5, 0, Some(50)), (2, 5, 0, None)]);
        assert_eq!(pool.remaining(), 5);
        assert_eq!(pool.take(5).parts, vec![(2, 5)]);
        assert_eq!(pool.take(1).units(), 0);
    }

    #[test]
    fn charging_prices_each_part_by_its_own_package() {
        let mut pool = pool(&[(1, 1, 100_000, Some(500)), (2, 10, 2_000_000, None)]);
        let allocation = pool.take(2);
        let parts = pool.charge(&allocation).unwrap();
        assert_eq!(parts[0].cost, Yuan::from_micros(100_000));
        assert_eq!(parts[1].cost, Yuan::from_micros(200_000));
    }

    #[test]
    fn release_and_charge_refuse_units_that_were_never_reserved() {
        let mut pool = pool(&[(1, 5, 0, None)]);
        let bogus = Allocation {
            parts: vec![(1, 2)],
        };
        assert!(pool.release(&bogus).is_err());
        assert!(pool.charge(&bogus).is_err());
        let missing = Allocation {
            parts: vec![(9, 1)],
        };
        assert!(pool.charge(&missing).is_err());
    }

    #[test]
    fn give_back_never_touches_reserved_units() {
        let mut pool = pool(&[(1, 10, 1_000_000, None)]);
        let first = pool.take(4);
        pool.charge(&first).unwrap();
        let _in_flight = pool.take(3);
        let parts = pool.give_back(10);
        assert_eq!(parts.iter().map(|p| p.units).sum::<i64>(), -4);
        assert_eq!(pool.remaining(), 7);
    }
}
