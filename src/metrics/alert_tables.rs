//! Reads the alerts feature's tables for `tollgate_alert_firing` and
//! `tollgate_notifications_total`.
//!
//! The tables (`alert_states`, `notification_attempts`) belong to the alerts feature
//! and its migration. A database migrated by a version without that migration has
//! neither table: then these metrics have no series, rather than failing the scrape.
//! Only "no such table" is forgiven; any other error fails the scrape like every
//! other ledger read.

use sqlx::Row;

use super::labels::NOTIFICATION_OUTCOMES;
use crate::store::Db;

/// One (rule, channel) of `alert_states`: 1 while firing, else 0.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFiring {
    pub rule: String,
    pub channel: String,
    pub firing: bool,
}

/// Delivery attempts of one notifier with one outcome, ever.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationCount {
    pub notifier: String,
    pub outcome: String,
    pub attempts: u64,
}

#[tracing::instrument(skip_all)]
pub async fn alert_states(db: &Db) -> Result<Vec<AlertFiring>, sqlx::Error> {
    let rows = sqlx::query("SELECT rule, channel, state FROM alert_states ORDER BY rule, channel")
        .fetch_all(db.pool())
        .await;
    let rows = match rows {
        Err(err) if is_missing_table(&err) => return Ok(Vec::new()),
        other => other?,
    };
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok(AlertFiring {
                rule: row.try_get("rule")?,
                channel: row.try_get("channel")?,
                firing: state == "firing",
            })
        })
        .collect()
}

#[tracing::instrument(skip_all)]
pub async fn notification_counts(db: &Db) -> Result<Vec<NotificationCount>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT notifier, outcome, CAST(COUNT(*) AS BIGINT) AS attempts \
         FROM notification_attempts GROUP BY notifier, outcome ORDER BY notifier, outcome",
    )
    .fetch_all(db.pool())
    .await;
    let rows = match rows {
        Err(err) if is_missing_table(&err) => return Ok(Vec::new()),
        other => other?,
    };
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let outcome: String = row.try_get("outcome")?;
        // The label takes only the values the alerts feature defines.
        if !NOTIFICATION_OUTCOMES.contains(&outcome.as_str()) {
            continue;
        }
        let attempts: i64 = row.try_get("attempts")?;
        counts.push(NotificationCount {
            notifier: row.try_get("notifier")?,
            outcome,
            attempts: u64::try_from(attempts).unwrap_or(0),
        });
    }
    Ok(counts)
}

/// Whether the query failed only because the table does not exist (yet): PostgreSQL's
/// SQLSTATE 42P01 `undefined_table`, SQLite's "no such table".
fn is_missing_table(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db_err) = err else {
        return false;
    };
    db_err.code().as_deref() == Some("42P01") || db_err.message().contains("no such table")
}
