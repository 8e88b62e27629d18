//! The sweeper: settles reservations that no live process looks after.
//!
//! A process that dies between reserving and settling leaves a send `reserved`, its
//! units held. Whether the vendor got the request is unknown, so the sweeper charges it
//! as `uncertain` and flags it for reconciliation: a unit is never given away on a
//! guess. Which reservations it settles:
//!
//! - those of an instance whose lease lapsed (killed, stopped, cut off; or replaced by
//!   an instance started at its address): at once, so that a crash costs seconds of
//!   wrong quota views, not minutes. The lease is on the database's clock, so a skewed
//!   clock elsewhere cannot make a live instance look dead;
//! - those of no known instance (recorded before leases existed, or by a process that
//!   took none), once older than `reservation_timeout` by the database's clock;
//! - this process's own, once older than `reservation_timeout` by its own clock (the
//!   clock that stamped them) and no longer under way here (a send task that died).
//!
//! A settlement only applies to a send still `reserved`, so the sweeper and a late
//! settlement cannot both apply.

use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::{Allocation, Ledger, LedgerError, Reservation, Settlement, UpstreamRecord};
use crate::domain::{ChannelName, Outcome, RouteName, SendClass, Units};
use crate::store::to_micros;

/// How many reservations one pass settles at most.
const SWEEP_LIMIT: i64 = 500;

pub struct Sweeper {
    ledger: Ledger,
    reservation_timeout: Duration,
}

const COLUMNS: &str =
    "s.id, s.channel, s.client, s.units, s.class, s.route, s.allocation, s.unmetered_units";

impl Sweeper {
    pub fn new(ledger: Ledger, reservation_timeout: Duration) -> Self {
        Self {
            ledger,
            reservation_timeout,
        }
    }

    /// One pass: settles every reservation no live process looks after. Returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn try_run_once(&self) -> Result<usize, LedgerError> {
        // Held settlements first, this process's and those of instances that are gone:
        // they carry the vendor's real outcome, which a sweep would not know.
        self.ledger.retry_held().await;
        self.ledger.settle_journals_of_the_gone().await?;
        let db = self.ledger.db();
        let now = db.now_sql();
        let timeout = i64::try_from(self.reservation_timeout.as_micros()).unwrap_or(i64::MAX);
        let orphans = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sends s LEFT JOIN instances i ON i.id = s.instance \
             WHERE s.status = 'reserved' AND (s.instance IS NULL OR s.instance <> $1) \
             AND ((i.id IS NOT NULL AND i.lease_until <= {now}) \
             OR (i.id IS NULL AND s.created_at < {now} - $2)) \
             ORDER BY s.created_at LIMIT $3"
        ))
        .bind(self.ledger.instance())
        .bind(timeout)
        .bind(SWEEP_LIMIT)
        .fetch_all(db.pool())
        .await?;
        let own_cutoff = self.ledger.now()
            - chrono::Duration::from_std(self.reservation_timeout).unwrap_or(chrono::Duration::MAX);
        let own = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sends s WHERE s.status = 'reserved' AND s.instance = $1 \
             AND s.created_at < $2 ORDER BY s.created_at LIMIT $3"
        ))
        .bind(self.ledger.instance())
        .bind(to_micros(own_cutoff))
        .bind(SWEEP_LIMIT)
        .fetch_all(db.pool())
        .await?;

        let mut settled = 0;
        for row in orphans.iter().chain(&own) {
            let send_id: String = row.try_get("id")?;
            if self.ledger.is_in_flight(&send_id) {
                // This process is still waiting on the vendor or the ledger for it.
                continue;
            }
            let reservation = match stored_reservation(row) {
                Ok(reservation) => reservation,
                Err(problem) => {
                    tracing::error!(%send_id, %problem, "cannot sweep a stored reservation");
                    continue;
                }
            };
            let settlement = Settlement {
                outcome: Outcome::Uncertain,
                charge: true,
                upstream: UpstreamRecord {
                    message: Some("reservation left unsettled; charged by the sweeper".into()),
                    ..UpstreamRecord::default()
                },
            };
            // One reservation that cannot be settled must not hold up the others.
            match self.ledger.settle(&reservation, settlement).await {
                Ok(outcome) if outcome.applied => {
                    tracing::warn!(%send_id, channel = %reservation.channel, "swept an unsettled reservation as uncertain");
                    settled += 1;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(%send_id, error = %err, "cannot sweep a reservation; will retry");
                }
            }
        }
        Ok(settled)
    }

    /// Sweeps every `every` until `shutdown` turns true.
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(err) = self.try_run_once().await {
                tracing::warn!(error = %err, "sweep failed; will retry");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Ledger {
    /// The stored reservations among `send_ids` that are still `reserved`.
    pub(super) async fn stored_reservations(
        &self,
        send_ids: &[String],
    ) -> Result<Vec<Reservation>, LedgerError> {
        let mut found = Vec::new();
        for ids in send_ids.chunks(100) {
            let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM sends s WHERE s.status = 'reserved' AND s.id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in ids {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.db().pool()).await? {
                match stored_reservation(&row) {
                    Ok(reservation) => found.push(reservation),
                    Err(problem) => tracing::error!(%problem, "cannot read a stored reservation"),
                }
            }
        }
        Ok(found)
    }
}

fn stored_reservation(row: &sqlx::any::AnyRow) -> Result<Reservation, String> {
    let text = |name: &str| row.try_get::<String, _>(name).map_err(|e| e.to_string());
    let number = |name: &str| row.try_get::<i64, _>(name).map_err(|e| e.to_string());
    let channel = ChannelName::parse(&text("channel")?).map_err(|e| e.to_string())?;
    let units = u32::try_from(number("units")?)
        .ok()
        .and_then(Units::new)
        .ok_or("stored units out of range")?;
    let allocation: Allocation = text("allocation")?.parse().map_err(|e| format!("{e}"))?;
    Ok(Reservation {
        send_id: text("id")?,
        channel,
        client: text("client")?,
        units,
        // A send recorded before classes existed counts as normal.
        class: text("class")?.parse().unwrap_or(SendClass::Normal),
        route: Some(text("route")?)
            .filter(|r| !r.is_empty())
            .and_then(|r| RouteName::parse(&r).ok()),
        allocation,
        unmetered: number("unmetered_units")?,
        remaining: 0,
    })
}
