//! The sweeper: settles reservations that a crash left behind.
//!
//! A process that dies between reserving and settling leaves a send `reserved`, its
//! units held. Whether the vendor got the request is unknown, so the sweeper charges it
//! as `uncertain` and flags it for reconciliation: a unit is never given away on a
//! guess. Only reservations older than `reservation_timeout` are swept, which is longer
//! than any vendor call may take, so a live send on another instance is never touched;
//! and a settlement only applies to a send still `reserved`, so the sweeper and a late
//! settlement cannot both apply.

use std::time::Duration;

use chrono::Utc;
use sqlx::Row;
use tokio::sync::watch;

use super::{Allocation, Ledger, LedgerError, Reservation, Settlement, UpstreamRecord};
use crate::domain::Outcome;
use crate::domain::{ChannelName, RouteName, SendClass, Units};

/// How many reservations one pass settles at most.
const SWEEP_LIMIT: i64 = 500;

pub struct Sweeper {
    ledger: Ledger,
    reservation_timeout: Duration,
}

impl Sweeper {
    pub fn new(ledger: Ledger, reservation_timeout: Duration) -> Self {
        Self {
            ledger,
            reservation_timeout,
        }
    }

    /// One pass: settles every reservation older than the timeout. Returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn try_run_once(&self) -> Result<usize, LedgerError> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.reservation_timeout).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(
            "SELECT id, channel, client, units, class, route, allocation, unmetered_units FROM sends \
             WHERE status = 'reserved' AND created_at < $1 ORDER BY created_at LIMIT $2",
        )
        .bind(crate::store::to_micros(cutoff))
        .bind(SWEEP_LIMIT)
        .fetch_all(self.ledger.db().pool())
        .await?;
        let mut settled = 0;
        for row in rows {
            let send_id: String = row.try_get("id")?;
            let reservation = match stored_reservation(&row) {
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
            if self.ledger.is_in_flight(&send_id) {
                // This process is still waiting on the vendor or the ledger for it.
                continue;
            }
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
