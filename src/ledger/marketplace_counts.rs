//! The marketplace's own count of a channel (SPEC §14), recorded run by run beside the
//! ledger's, and applied as a reconciliation when the configuration says so.
//!
//! Guarantees, and what provides them:
//!
//! - *the drift is measured against the ledger at one moment*: the channel's packages are
//!   locked ([`LockedPool::load`], `FOR UPDATE` on PostgreSQL, SQLite's write
//!   transaction) before the ledger's remaining count is read, and stay locked until the
//!   run and its reconciliation are committed, so no send changes the count in between;
//! - *a run and the reconciliation it applies are one*: both are written in the same
//!   transaction, so a run recorded as `reconciled` always has its reconciliation and a
//!   failed write leaves neither;
//! - *two runs at once reconcile once*: the second waits for the first's locks and then
//!   measures the ledger the first left behind, which already agrees with the
//!   marketplace, so it records `agreed` (the scheduler also runs `marketplace_sync`
//!   once per due time across instances: this is the guarantee when a person runs
//!   `tollgate reconcile --from-marketplace` at the same moment);
//! - *history is appended to*: a reconciliation is the same one `Ledger::reconcile`
//!   writes (adjustment entries, aggregates), and runs are only ever inserted.
//!
//! The ledger does not interpret the marketplace's figures: it is handed the remaining
//! count that `marketplace::remaining_from` read from them, with the figures themselves
//! to keep for whoever checks that reading later.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::pool::{LockedPool, Scope};
use super::{Ledger, LedgerError, Reconciliation};
use crate::domain::{ChannelName, ProductCode};
use crate::store::{from_micros, to_micros};

/// What the marketplace said of one channel's product, as the ledger records it: the
/// figures summed over the product's rows, and the remaining count read from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketplaceFigures {
    pub product_code: ProductCode,
    /// How many rows (packages) the answer had for the product.
    pub rows: u64,
    pub total_quota: i64,
    pub total_usage: i64,
    /// `None` when a row had no `TotalCapacity`.
    pub total_capacity: Option<i64>,
    /// What is left, as `marketplace::remaining_from` reads the figures.
    pub remaining: u64,
    /// Whether every row's `TotalCapacity` confirmed that reading.
    pub confirmed: bool,
    /// The `RequestId` of every page read.
    pub request_ids: Vec<String>,
}

/// What a run did with the difference it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The counts agreed: nothing to do.
    Agreed,
    /// The difference was applied as a reconciliation.
    Reconciled,
    /// `[marketplace] apply = false`: the difference was recorded, nothing changed.
    Recorded,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Agreed => "agreed",
            RunOutcome::Reconciled => "reconciled",
            RunOutcome::Recorded => "recorded",
        }
    }

    fn parse(raw: &str) -> Result<Self, LedgerError> {
        match raw {
            "agreed" => Ok(RunOutcome::Agreed),
            "reconciled" => Ok(RunOutcome::Reconciled),
            "recorded" => Ok(RunOutcome::Recorded),
            other => Err(LedgerError::Inconsistent(format!(
                "a marketplace run has the unknown outcome {other:?}"
            ))),
        }
    }
}

/// One run: what the marketplace said of a channel's product, what the ledger said at
/// the same moment, and what was done about the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketplaceRun {
    pub id: i64,
    pub channel: String,
    pub product_code: String,
    pub observed_at: DateTime<Utc>,
    pub rows: i64,
    pub total_quota: i64,
    pub total_usage: i64,
    pub total_capacity: Option<i64>,
    /// What the marketplace has left, as tollgate reads its figures.
    pub marketplace_remaining: i64,
    pub confirmed: bool,
    /// What the ledger could still reserve at that moment.
    pub ledger_remaining: i64,
    /// `marketplace_remaining − ledger_remaining`: negative when the ledger counts more
    /// than the marketplace has left (units billed around tollgate), positive when less.
    pub drift: i64,
    pub outcome: RunOutcome,
    /// Whether the run changed the ledger (`outcome` is `reconciled`).
    pub applied: bool,
    pub reconciliation_id: Option<i64>,
    /// Units the reconciliation charged (negative: gave back); 0 when none was applied.
    /// Smaller than the drift only when the ledger could not move that far (see
    /// [`Reconciliation::adjusted_units`]).
    pub adjusted_units: i64,
    pub request_ids: Vec<String>,
}

impl MarketplaceRun {
    /// The drift's size, whichever way it goes.
    pub fn drift_units(&self) -> u64 {
        self.drift.unsigned_abs()
    }
}

/// The note of a reconciliation a run applies: where the count came from, and when.
pub fn reconciliation_note(product_code: &ProductCode, observed_at: DateTime<Utc>) -> String {
    format!(
        "marketplace DescribeApiMetering {product_code} {}",
        observed_at.format("%Y-%m-%dT%H:%MZ")
    )
}

const RUN_COLUMNS: &str = "r.id, r.channel, r.product_code, r.observed_at, r.row_count, \
     r.total_quota, r.total_usage, r.total_capacity, r.marketplace_remaining, r.confirmed, \
     r.ledger_remaining, r.drift, r.outcome, r.reconciliation_id, r.request_ids, \
     c.adjusted_units";

impl Ledger {
    /// Records what the marketplace said of `channel` beside the ledger's own count at
    /// this moment, and, with `apply` and a difference, reconciles the ledger to the
    /// marketplace's count exactly as [`Ledger::reconcile`] does (its note names the
    /// source and the time). One transaction: see the module's guarantees.
    #[tracing::instrument(skip_all, fields(channel = %channel, product_code = %figures.product_code, marketplace_remaining = figures.remaining, apply))]
    pub async fn record_marketplace_count(
        &self,
        channel: &ChannelName,
        figures: &MarketplaceFigures,
        apply: bool,
    ) -> Result<MarketplaceRun, LedgerError> {
        let too_large = |what: &str| LedgerError::Inconsistent(format!("{what} is too large"));
        let marketplace_remaining =
            i64::try_from(figures.remaining).map_err(|_| too_large("the marketplace's count"))?;
        let rows = i64::try_from(figures.rows).map_err(|_| too_large("the number of rows"))?;
        let now = self.now();
        let db = self.db();
        let mut tx = db.begin_write().await?;
        let mut pool = LockedPool::load(&mut tx, db, channel, now, Scope::Reconciliation).await?;
        let ledger_remaining = pool.remaining();
        let drift = marketplace_remaining - ledger_remaining;
        let reconciliation: Option<Reconciliation> = if drift != 0 && apply {
            let note = reconciliation_note(&figures.product_code, now);
            Some(
                self.reconcile_locked(
                    &mut tx,
                    &mut pool,
                    channel,
                    marketplace_remaining,
                    Some(note),
                    now,
                )
                .await?,
            )
        } else {
            None
        };
        let outcome = match (&reconciliation, drift) {
            (Some(_), _) => RunOutcome::Reconciled,
            (None, 0) => RunOutcome::Agreed,
            (None, _) => RunOutcome::Recorded,
        };
        let request_ids = figures.request_ids.join(",");
        let id: i64 = sqlx::query(
            "INSERT INTO marketplace_runs (channel, product_code, observed_at, row_count, \
             total_quota, total_usage, total_capacity, marketplace_remaining, confirmed, \
             ledger_remaining, drift, outcome, reconciliation_id, request_ids) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(channel.as_str())
        .bind(figures.product_code.as_str())
        .bind(to_micros(now))
        .bind(rows)
        .bind(figures.total_quota)
        .bind(figures.total_usage)
        .bind(figures.total_capacity)
        .bind(marketplace_remaining)
        .bind(i64::from(figures.confirmed))
        .bind(ledger_remaining)
        .bind(drift)
        .bind(outcome.as_str())
        .bind(reconciliation.as_ref().map(|r| r.id))
        .bind(&request_ids)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        tx.commit().await?;
        tracing::info!(
            ledger_remaining,
            drift,
            outcome = outcome.as_str(),
            "recorded the marketplace's count"
        );
        Ok(MarketplaceRun {
            id,
            channel: channel.to_string(),
            product_code: figures.product_code.to_string(),
            observed_at: from_micros(to_micros(now)),
            rows,
            total_quota: figures.total_quota,
            total_usage: figures.total_usage,
            total_capacity: figures.total_capacity,
            marketplace_remaining,
            confirmed: figures.confirmed,
            ledger_remaining,
            drift,
            outcome,
            applied: outcome == RunOutcome::Reconciled,
            reconciliation_id: reconciliation.as_ref().map(|r| r.id),
            adjusted_units: reconciliation.map_or(0, |r| r.adjusted_units),
            request_ids: figures.request_ids.clone(),
        })
    }

    /// The latest run of each of `channels` that has one, in their order: one statement,
    /// each channel's latest found by an index seek, so that the read does not grow with
    /// the runs recorded.
    pub async fn latest_marketplace_runs(
        &self,
        channels: &[ChannelName],
    ) -> Result<Vec<MarketplaceRun>, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        self.latest_marketplace_runs_on(&mut conn, channels).await
    }

    /// [`Ledger::latest_marketplace_runs`], read on `conn` (see
    /// [`Ledger::channel_reading_on`]).
    pub(super) async fn latest_marketplace_runs_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        channels: &[ChannelName],
    ) -> Result<Vec<MarketplaceRun>, LedgerError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let latest: Vec<String> = (1..=channels.len())
            .map(|i| format!("(SELECT MAX(id) FROM marketplace_runs WHERE channel = ${i})"))
            .collect();
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM marketplace_runs r \
             LEFT JOIN reconciliations c ON c.id = r.reconciliation_id \
             WHERE r.id IN ({})",
            latest.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for channel in channels {
            query = query.bind(channel.as_str());
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let mut runs = rows
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort_by_key(|run| {
            channels
                .iter()
                .position(|channel| channel.as_str() == run.channel)
        });
        Ok(runs)
    }

    /// The latest run of `channel`, if it has one.
    pub async fn latest_marketplace_run(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<MarketplaceRun>, LedgerError> {
        Ok(self
            .latest_marketplace_runs(std::slice::from_ref(channel))
            .await?
            .pop())
    }
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<MarketplaceRun, LedgerError> {
    let outcome = RunOutcome::parse(&row.try_get::<String, _>("outcome")?)?;
    let request_ids: String = row.try_get("request_ids")?;
    Ok(MarketplaceRun {
        id: row.try_get("id")?,
        channel: row.try_get("channel")?,
        product_code: row.try_get("product_code")?,
        observed_at: from_micros(row.try_get("observed_at")?),
        rows: row.try_get("row_count")?,
        total_quota: row.try_get("total_quota")?,
        total_usage: row.try_get("total_usage")?,
        total_capacity: row.try_get("total_capacity")?,
        marketplace_remaining: row.try_get("marketplace_remaining")?,
        confirmed: row.try_get::<i64, _>("confirmed")? != 0,
        ledger_remaining: row.try_get("ledger_remaining")?,
        drift: row.try_get("drift")?,
        outcome,
        applied: outcome == RunOutcome::Reconciled,
        reconciliation_id: row.try_get("reconciliation_id")?,
        adjusted_units: row
            .try_get::<Option<i64>, _>("adjusted_units")?
            .unwrap_or(0),
        request_ids: request_ids
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_operation_the_product_and_the_minute() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:00:42Z")
            .unwrap()
            .with_timezone(&Utc);
        let note = reconciliation_note(&ProductCode::parse("cmapi00037415").unwrap(), at);
        assert_eq!(
            note,
            "marketplace DescribeApiMetering cmapi00037415 2026-12-01T10:00Z"
        );
    }

    #[test]
    fn outcomes_round_trip_and_an_unknown_one_is_an_inconsistency() {
        for outcome in [
            RunOutcome::Agreed,
            RunOutcome::Reconciled,
            RunOutcome::Recorded,
        ] {
            assert_eq!(RunOutcome::parse(outcome.as_str()).unwrap(), outcome);
        }
        assert!(matches!(
            RunOutcome::parse("applied"),
            Err(LedgerError::Inconsistent(_))
        ));
    }

    #[test]
    fn a_drift_is_measured_either_way() {
        let run = |drift| MarketplaceRun {
            id: 1,
            channel: "voice_notice".into(),
            product_code: "cmapi00037415".into(),
            observed_at: Utc::now(),
            rows: 1,
            total_quota: 85,
            total_usage: 15,
            total_capacity: Some(100),
            marketplace_remaining: 85,
            confirmed: true,
            ledger_remaining: 85 - drift,
            drift,
            outcome: RunOutcome::Recorded,
            applied: false,
            reconciliation_id: None,
            adjusted_units: 0,
            request_ids: vec![],
        };
        assert_eq!(run(-15).drift_units(), 15);
        assert_eq!(run(15).drift_units(), 15);
        assert_eq!(run(0).drift_units(), 0);
    }
}
