//! The outbox worker: claims due notifications, delivers them through their notifier,
//! records every attempt, and retries failures with exponential backoff.
//!
//! A claim is a conditional update that pushes the row's `next_attempt_at` forward by a
//! lease, so no lock is held while the notifier talks to the network: on PostgreSQL
//! the row is picked with `FOR UPDATE SKIP LOCKED` (several instances' workers never
//! take the same row); SQLite has a single writer. If the process dies mid-delivery the
//! lease runs out and the row is delivered again — at least once, with the same event
//! id, which receivers deduplicate on.

use std::time::Duration;

use anyhow::Context;
use sqlx::Row;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tollgate_notify::Event;

use super::notifiers::Notifiers;
use crate::config::alerts::DeliverySettings;
use crate::store::{to_micros, Backend, Db};

/// How long a claimed row is kept from other workers; longer than any delivery takes,
/// since every notifier's timeout is checked to be below it at start.
const LEASE: Duration = tollgate_notify::DELIVERY_LEASE;
/// How often the worker looks for rows queued by other instances or due for a retry.
const POLL: Duration = Duration::from_secs(1);
/// Errors are kept this long in the attempt rows.
const ERROR_KEPT: usize = 500;

/// What one step of the worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Nothing was due.
    Idle,
    Delivered {
        notification: String,
        notifier: String,
    },
    Failed {
        notification: String,
        notifier: String,
        error: String,
        /// False once the last allowed attempt has failed.
        will_retry: bool,
    },
}

pub struct OutboxWorker {
    db: Db,
    notifiers: Notifiers,
    delivery: DeliverySettings,
    wake: Arc<Notify>,
}

impl OutboxWorker {
    pub fn new(
        db: Db,
        notifiers: Notifiers,
        delivery: DeliverySettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            notifiers,
            delivery,
            wake,
        }
    }

    /// Delivers at most one due notification.
    #[tracing::instrument(skip_all)]
    pub async fn try_run_once(&self) -> anyhow::Result<DeliveryOutcome> {
        let Some(claimed) = self.claim().await.context("claiming a notification")? else {
            return Ok(DeliveryOutcome::Idle);
        };
        let result = match self.notifiers.get(&claimed.notifier) {
            None => Err(format!(
                "notifier {} is not configured on this instance",
                claimed.notifier
            )),
            Some(notifier) => match serde_json::from_str::<Event>(&claimed.payload) {
                Err(err) => Err(format!("the stored event cannot be read: {err}")),
                Ok(event) => notifier.deliver(&event).await.map_err(|e| e.0),
            },
        };
        let outcome = match result {
            Ok(()) => DeliveryOutcome::Delivered {
                notification: claimed.id.clone(),
                notifier: claimed.notifier.clone(),
            },
            Err(error) => DeliveryOutcome::Failed {
                notification: claimed.id.clone(),
                notifier: claimed.notifier.clone(),
                error: error.chars().take(ERROR_KEPT).collect(),
                will_retry: claimed.attempts < i64::from(self.delivery.max_attempts),
            },
        };
        self.record(&claimed, &outcome)
            .await
            .context("recording a delivery attempt")?;
        match &outcome {
            DeliveryOutcome::Delivered { notifier, .. } => {
                tracing::info!(notifier = %notifier, notification = %claimed.id, "notification delivered")
            }
            DeliveryOutcome::Failed {
                notifier,
                error,
                will_retry,
                ..
            } => {
                tracing::warn!(notifier = %notifier, notification = %claimed.id, attempts = claimed.attempts, will_retry, error = %error, "notification not delivered")
            }
            DeliveryOutcome::Idle => {}
        }
        Ok(outcome)
    }

    /// Delivers until `stop` turns true: everything due, then waits for a signal from
    /// the engine or the next poll.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let idle = match self.try_run_once().await {
                Ok(DeliveryOutcome::Idle) => true,
                Ok(_) => false,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "outbox worker step failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    changed = stop.changed() => if changed.is_err() { return },
                }
            }
        }
    }

    /// Claims the next due notification. Due times and leases are on the database's
    /// clock, so that instances with skewed clocks agree on what is due.
    async fn claim(&self) -> Result<Option<Claimed>, sqlx::Error> {
        let now = self.db.now().await?;
        let skip_locked = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "UPDATE notifications SET next_attempt_at = $1, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM notifications WHERE delivered_at IS NULL \
             AND abandoned_at IS NULL AND next_attempt_at <= $2 \
             ORDER BY next_attempt_at LIMIT 1{skip_locked}) \
             AND delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $2 \
             RETURNING id, notifier, payload, attempts"
        ))
        .bind(to_micros(
            now + chrono::Duration::from_std(LEASE).expect("lease fits"),
        ))
        .bind(to_micros(now))
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(Claimed {
                id: row.try_get("id")?,
                notifier: row.try_get("notifier")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .transpose()
    }

    async fn record(
        &self,
        claimed: &Claimed,
        outcome: &DeliveryOutcome,
    ) -> Result<(), sqlx::Error> {
        let now = self.db.now().await?;
        let mut tx = self.db.begin_write().await?;
        let (result, error) = match outcome {
            DeliveryOutcome::Delivered { .. } => {
                sqlx::query(
                    "UPDATE notifications SET delivered_at = $2, last_error = NULL WHERE id = $1",
                )
                .bind(&claimed.id)
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await?;
                ("delivered", None)
            }
            DeliveryOutcome::Failed {
                error, will_retry, ..
            } => {
                if *will_retry {
                    let wait = self.backoff(claimed.attempts);
                    sqlx::query(
                        "UPDATE notifications SET next_attempt_at = $2, last_error = $3 WHERE id = $1",
                    )
                    .bind(&claimed.id)
                    .bind(to_micros(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1))))
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "UPDATE notifications SET abandoned_at = $2, last_error = $3 WHERE id = $1",
                    )
                    .bind(&claimed.id)
                    .bind(to_micros(now))
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                }
                ("failed", Some(error.as_str()))
            }
            DeliveryOutcome::Idle => return Ok(()),
        };
        sqlx::query(
            "INSERT INTO notification_attempts (notification_id, notifier, outcome, attempted_at, error) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&claimed.id)
        .bind(&claimed.notifier)
        .bind(result)
        .bind(to_micros(now))
        .bind(error)
        .execute(&mut *tx)
        .await?;
        // The totals `tollgate_notifications_total` reads, moved with the attempt.
        sqlx::query(
            "INSERT INTO notification_totals (notifier, outcome, attempts) VALUES ($1, $2, 1) \
             ON CONFLICT (notifier, outcome) DO UPDATE SET \
             attempts = notification_totals.attempts + 1",
        )
        .bind(&claimed.notifier)
        .bind(result)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// `min(retry_initial · 2^(attempts-1), retry_max)`.
    fn backoff(&self, attempts: i64) -> Duration {
        backoff(&self.delivery, attempts)
    }
}

fn backoff(delivery: &DeliverySettings, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    delivery
        .retry_initial
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(delivery.retry_max)
}

struct Claimed {
    id: String,
    notifier: String,
    payload: String,
    attempts: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let delivery = DeliverySettings {
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            max_attempts: 20,
        };
        let waits: Vec<u64> = (1..=9).map(|n| backoff(&delivery, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
