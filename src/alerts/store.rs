//! The alert tables: `alert_states` (one row per rule and channel) and the writing side
//! of the outbox (`notifications`). A change of state and its notifications are one
//! transaction, taken with the state row locked ([`LockedState`]), so each change is
//! notified once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use tollgate_notify::Event;

use super::state::{AlertState, Current, Step};
use crate::store::{from_micros, to_micros, Db, Transaction};

/// One (rule, channel) as stored, for the API and the engine.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertRecord {
    pub id: String,
    pub rule: String,
    pub channel: String,
    pub state: AlertState,
    pub severity: String,
    pub fired_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub summary: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl AlertRecord {
    pub(super) fn current(&self) -> Current {
        Current {
            state: self.state,
            last_notified_at: self.last_notified_at,
            acknowledged: self.acknowledged_at.is_some(),
        }
    }

    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        let time = |name: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
            Ok(row.try_get::<Option<i64>, _>(name)?.map(from_micros))
        };
        let state: String = row.try_get("state")?;
        Ok(AlertRecord {
            id: row.try_get("id")?,
            rule: row.try_get("rule")?,
            channel: row.try_get("channel")?,
            state: AlertState::parse(&state).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown alert state {state:?}").into())
            })?,
            severity: row.try_get("severity")?,
            fired_at: time("fired_at")?,
            resolved_at: time("resolved_at")?,
            last_notified_at: time("last_notified_at")?,
            acknowledged_at: time("acknowledged_at")?,
            acknowledged_by: row.try_get("acknowledged_by")?,
            summary: row.try_get("summary")?,
            updated_at: from_micros(row.try_get("updated_at")?),
        })
    }
}

const COLUMNS: &str = "id, rule, channel, state, severity, fired_at, resolved_at, \
     last_notified_at, acknowledged_at, acknowledged_by, summary, updated_at";

/// The result of `POST /v1/alerts/{id}/ack`.
#[derive(Debug)]
pub enum AckOutcome {
    Acknowledged(AlertRecord),
    /// Only a firing alert can be acknowledged.
    NotFiring(AlertRecord),
    NotFound,
}

/// What a (rule, channel) is and who its notifications go to.
pub struct TransitionInput<'a> {
    pub rule: &'a str,
    pub channel: &'a str,
    pub severity: &'a str,
    pub notifiers: &'a [String],
}

pub async fn for_channel(db: &Db, channel: &str) -> Result<Vec<AlertRecord>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_states WHERE channel = $1"
    ))
    .bind(channel)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(AlertRecord::from_row).collect()
}

/// One (rule, channel) as stored now, without a lock (the engine's first look).
pub async fn current(db: &Db, rule: &str, channel: &str) -> Result<Option<Current>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_states WHERE rule = $1 AND channel = $2"
    ))
    .bind(rule)
    .bind(channel)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref()
        .map(|row| AlertRecord::from_row(row).map(|record| record.current()))
        .transpose()
}

pub async fn list(db: &Db) -> Result<Vec<AlertRecord>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_states ORDER BY channel, rule"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(AlertRecord::from_row).collect()
}

/// Records an `ok` row for a (rule, channel) seen for the first time, so that the
/// state is visible (API, metrics) before it ever fires. Changes nothing if present.
pub async fn track(
    db: &Db,
    input: &TransitionInput<'_>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_states (id, rule, channel, state, severity, updated_at) \
         VALUES ($1, $2, $3, 'ok', $4, $5) ON CONFLICT (rule, channel) DO NOTHING",
    )
    .bind(new_id("alr"))
    .bind(input.rule)
    .bind(input.channel)
    .bind(input.severity)
    .bind(to_micros(now))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A (rule, channel)'s state row, locked until [`LockedState::apply`] or
/// [`LockedState::release`] (`FOR UPDATE` on PostgreSQL; SQLite's write transaction).
/// Whoever holds it is the only one deciding this alert's next step: another instance
/// evaluating the same alert waits for the lock and then finds the state this one left.
/// The decision must be made on facts read on [`LockedState::connection`], after the
/// lock was taken, so that it is never made on figures older than the last transition.
pub struct LockedState {
    tx: Transaction,
    current: Current,
}

/// Locks the state row of `input`'s (rule, channel), recording it as `ok` first if it
/// was never stored.
pub async fn lock(
    db: &Db,
    input: &TransitionInput<'_>,
    now: DateTime<Utc>,
) -> Result<LockedState, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO alert_states (id, rule, channel, state, severity, updated_at) \
         VALUES ($1, $2, $3, 'ok', $4, $5) ON CONFLICT (rule, channel) DO NOTHING",
    )
    .bind(new_id("alr"))
    .bind(input.rule)
    .bind(input.channel)
    .bind(input.severity)
    .bind(to_micros(now))
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_states WHERE rule = $1 AND channel = $2{}",
        db.for_update()
    ))
    .bind(input.rule)
    .bind(input.channel)
    .fetch_one(&mut *tx)
    .await?;
    let current = AlertRecord::from_row(&row)?.current();
    Ok(LockedState { tx, current })
}

impl LockedState {
    /// The state as it is with the row locked.
    pub fn current(&self) -> Current {
        self.current
    }

    /// The locked transaction's connection, to read the facts on (on SQLite the only
    /// connection there is: the pool would wait for this transaction).
    pub fn connection(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Nothing to do after all: the lock is given back.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Makes `step` (decided on this lock), writes one notification of `event` per
    /// notifier, and commits: the change and its notifications are one.
    pub async fn apply(
        mut self,
        db: &Db,
        input: &TransitionInput<'_>,
        step: Step,
        event: &Event,
    ) -> Result<(), sqlx::Error> {
        let now = to_micros(event.occurred_at);
        // Outbox times are the database's clock: the workers of every instance compare
        // them with it.
        let queued_at: i64 = sqlx::query_scalar(&format!("SELECT {}", db.now_sql()))
            .fetch_one(&mut *self.tx)
            .await?;
        let update = match step {
            // A new firing: acknowledgement belongs to the previous one.
            Step::Fire => {
                "UPDATE alert_states SET state = 'firing', severity = $3, fired_at = $4, \
                 resolved_at = NULL, last_notified_at = $4, acknowledged_at = NULL, \
                 acknowledged_by = NULL, summary = $5, updated_at = $4 \
                 WHERE rule = $1 AND channel = $2"
            }
            Step::Repeat => {
                "UPDATE alert_states SET severity = $3, last_notified_at = $4, summary = $5, \
                 updated_at = $4 WHERE rule = $1 AND channel = $2"
            }
            Step::Resolve => {
                "UPDATE alert_states SET state = 'resolved', severity = $3, resolved_at = $4, \
                 last_notified_at = $4, acknowledged_at = NULL, acknowledged_by = NULL, \
                 summary = $5, updated_at = $4 WHERE rule = $1 AND channel = $2"
            }
        };
        sqlx::query(update)
            .bind(input.rule)
            .bind(input.channel)
            .bind(input.severity)
            .bind(now)
            .bind(&event.summary)
            .execute(&mut *self.tx)
            .await?;
        let payload = event.to_json();
        for notifier in input.notifiers {
            sqlx::query(
                "INSERT INTO notifications (id, event_id, notifier, rule, channel, payload, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(new_id("ntf"))
            .bind(&event.id)
            .bind(notifier)
            .bind(input.rule)
            .bind(input.channel)
            .bind(&payload)
            .bind(queued_at)
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await
    }
}

/// Acknowledges a firing alert: it stops repeating until its state changes.
pub async fn acknowledge(
    db: &Db,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<AckOutcome, sqlx::Error> {
    let updated = sqlx::query(&format!(
        "UPDATE alert_states SET acknowledged_at = $2, acknowledged_by = $3, updated_at = $2 \
         WHERE id = $1 AND state = 'firing' RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(to_micros(now))
    .bind(by)
    .fetch_optional(db.pool())
    .await?;
    if let Some(row) = updated {
        return Ok(AckOutcome::Acknowledged(AlertRecord::from_row(&row)?));
    }
    let existing = sqlx::query(&format!("SELECT {COLUMNS} FROM alert_states WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(match existing {
        Some(row) => AckOutcome::NotFiring(AlertRecord::from_row(&row)?),
        None => AckOutcome::NotFound,
    })
}

/// Queues `event` for each of `notifiers`, once: a second call with the same event id
/// changes nothing (`UNIQUE (event_id, notifier)`).
pub async fn enqueue(db: &Db, event: &Event, notifiers: &[String]) -> Result<(), sqlx::Error> {
    let payload = event.to_json();
    let queued_at = to_micros(db.now().await?);
    let mut tx = db.begin_write().await?;
    for notifier in notifiers {
        sqlx::query(
            "INSERT INTO notifications (id, event_id, notifier, payload, next_attempt_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (event_id, notifier) DO NOTHING",
        )
        .bind(new_id("ntf"))
        .bind(&event.id)
        .bind(notifier)
        .bind(&payload)
        .bind(queued_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Delivery attempts of one notifier with one outcome (`delivered` or `failed`), ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationCount {
    pub notifier: String,
    pub outcome: String,
    pub attempts: u64,
}

/// Every notifier's delivery attempts by outcome, from the totals the outbox keeps.
pub async fn notification_counts(db: &Db) -> Result<Vec<NotificationCount>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT notifier, outcome, attempts FROM notification_totals ORDER BY notifier, outcome",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(NotificationCount {
                notifier: row.try_get("notifier")?,
                outcome: row.try_get("outcome")?,
                attempts: u64::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
            })
        })
        .collect()
}
