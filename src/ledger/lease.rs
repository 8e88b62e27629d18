//! Instance leases: whether the process that made a reservation is still looking after
//! it.
//!
//! A running server takes a lease at start and renews it every [`RENEW_EVERY`]; it
//! lasts [`LEASE`] on the database's clock. The sweeper settles the reservations of an
//! instance whose lease lapsed, so a killed, stopped or cut-off instance holds nothing
//! for long (SPEC §15: within 30 s). An instance started where another ran (the same
//! `host:port`) takes over that one's reservations at once: the other is gone, since
//! two processes cannot listen on one address.

use std::time::Duration;

use super::{Ledger, LedgerError};

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a running instance renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);

impl Ledger {
    /// Takes this process's lease under `name` (`host:port`). Ends the leases of earlier
    /// instances of the same name, so their reservations are settled at the next sweep;
    /// returns how many there were.
    #[tracing::instrument(skip_all, fields(name))]
    pub async fn take_lease(&self, name: &str) -> Result<u64, LedgerError> {
        let db = self.db();
        let now = db.now_sql();
        let lease = micros(LEASE);
        let mut tx = db.begin_write().await?;
        let predecessors = sqlx::query(&format!(
            "UPDATE instances SET lease_until = {now}, stopped_at = COALESCE(stopped_at, {now}) \
             WHERE name = $1 AND id <> $2 AND lease_until > {now}"
        ))
        .bind(name)
        .bind(self.instance())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(&format!(
            "INSERT INTO instances (id, name, started_at, heartbeat_at, lease_until) \
             VALUES ($1, $2, {now}, {now}, {now} + $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
             lease_until = excluded.lease_until, stopped_at = NULL"
        ))
        .bind(self.instance())
        .bind(name)
        .bind(lease)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if predecessors > 0 {
            tracing::warn!(predecessors, "an earlier instance at this address did not stop cleanly; its reservations are settled now");
        }
        Ok(predecessors)
    }

    /// Whether the instance `id` holds a lease that has not lapsed (by the database's
    /// clock). An instance the database does not know holds none.
    pub(super) async fn lease_is_live(&self, id: &str) -> Result<bool, LedgerError> {
        let now = self.db().now_sql();
        let live = sqlx::query(&format!(
            "SELECT id FROM instances WHERE id = $1 AND lease_until > {now}"
        ))
        .bind(id)
        .fetch_optional(self.db().pool())
        .await?;
        Ok(live.is_some())
    }

    /// Renews this process's lease for another [`LEASE`].
    pub async fn renew_lease(&self) -> Result<(), LedgerError> {
        let now = self.db().now_sql();
        sqlx::query(&format!(
            "UPDATE instances SET heartbeat_at = {now}, lease_until = {now} + $2 WHERE id = $1"
        ))
        .bind(self.instance())
        .bind(micros(LEASE))
        .execute(self.db().pool())
        .await?;
        Ok(())
    }

    /// Ends this process's lease (a clean stop, once its sends are settled).
    pub async fn end_lease(&self) -> Result<(), LedgerError> {
        let now = self.db().now_sql();
        sqlx::query(&format!(
            "UPDATE instances SET lease_until = {now}, stopped_at = {now} WHERE id = $1"
        ))
        .bind(self.instance())
        .execute(self.db().pool())
        .await?;
        Ok(())
    }

    /// Renews the lease every [`RENEW_EVERY`] until `stop` turns true.
    pub async fn keep_lease(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.changed() => return,
            }
            if let Err(err) = self.renew_lease().await {
                tracing::warn!(error = %err, "cannot renew this instance's lease; will retry");
            }
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Where this process runs, for its lease's name: the host name and the port it serves.
pub fn instance_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}
