//! The per-channel ledger writer: reservations and settlements, applied in batches.
//!
//! Every send touches its channel's package rows twice (reserve, then settle), and
//! those rows are the hot spot of the whole system: a transaction per send would queue
//! every send of a channel behind one row lock and one commit each. Instead each process
//! runs one writer task per channel. Sends hand their operation to it over a queue;
//! the writer takes everything queued (up to [`MAX_BATCH`]) and applies it in one
//! transaction: lock the channel's packages once, apply each operation in arrival order
//! in memory, write the rows, commit once, then answer every caller. Under light load a
//! batch holds one operation and costs what a plain transaction would; under heavy load
//! batches grow by themselves, with no timer adding latency.
//!
//! Guarantees, and what gives them:
//! - *Never oversell*: quota is only taken while the package rows are locked
//!   (`FOR UPDATE` on PostgreSQL, the single writer on SQLite), across processes too,
//!   and `CHECK (taken <= units)` refuses any write that would.
//! - *Charge exactly once*: a settlement only applies if it moves the send out of
//!   `reserved` (`WHERE status = 'reserved'`); a late second settlement (after the
//!   sweeper) changes nothing.
//! - *Nothing is lost on failure*: a caller is answered only after the commit. If a
//!   batch fails, its operations are retried one by one, so one bad operation cannot
//!   fail the others; a reservation that is never settled is charged by the sweeper.

use std::time::Duration;

use chrono::Utc;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::pool::{ChargedPart, LockedPool};
use super::sends::{IdempotencyKey, UpstreamRecord};
use super::{Allocation, Ledger, LedgerError};
use crate::config::LedgerMode;
use crate::domain::{ChannelName, Units, Yuan};
use crate::store::{to_micros, Db, Transaction};
use crate::upstream::Outcome;

/// The most operations one transaction applies, unless the ledger was built with
/// another limit ([`Ledger::with_batch_limit`]).
pub const MAX_BATCH: usize = 256;

/// A send asking for quota.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub send_id: String,
    pub client: String,
    pub units: Units,
    pub idempotency: Option<IdempotencyKey>,
    pub mobile_masked: String,
    /// Only set when `[privacy] store_full_numbers = true`.
    pub mobile_full: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ReserveOutcome {
    Reserved(Reservation),
    /// Enforce mode, not enough units left: nothing was recorded.
    QuotaExhausted {
        remaining: i64,
    },
    /// The client already sent a request with this idempotency key.
    Duplicate {
        existing_id: String,
    },
}

/// Units held for one send until it is settled.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub send_id: String,
    pub channel: ChannelName,
    pub client: String,
    pub units: Units,
    pub allocation: Allocation,
    /// Observe mode only: units sent beyond the packages, metered but not priced.
    pub unmetered: i64,
    /// Units left in the channel once this reservation was made.
    pub remaining: i64,
}

/// How a send ended, to be written on it.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub outcome: Outcome,
    /// Whether the reserved units are charged (otherwise they go back to the pool).
    pub charge: bool,
    pub upstream: UpstreamRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// False when the send had already been settled (by the sweeper): nothing changed.
    pub applied: bool,
    pub charged_units: i64,
    pub cost: Yuan,
    /// Units left in the channel after this settlement.
    pub remaining: i64,
}

enum Op {
    Reserve(ReserveRequest),
    Settle(Reservation, Settlement),
}

enum OpResult {
    Reserve(ReserveOutcome),
    Settle(Settled),
}

type Reply = oneshot::Sender<Result<OpResult, LedgerError>>;

#[derive(Clone)]
pub(super) struct WriterHandle {
    queue: mpsc::UnboundedSender<(Op, Reply)>,
}

impl WriterHandle {
    pub fn spawn(db: Db, mode: LedgerMode, channel: ChannelName, batch_limit: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_writer(db, mode, channel, batch_limit, receiver));
        Self { queue }
    }

    async fn submit(&self, op: Op) -> Result<OpResult, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((op, reply))
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }
}

impl Ledger {
    /// Reserves `request.units` on `channel` before the vendor is called.
    #[tracing::instrument(skip_all, fields(channel = %channel, send_id = %request.send_id))]
    pub async fn reserve(
        &self,
        channel: &ChannelName,
        request: ReserveRequest,
    ) -> Result<ReserveOutcome, LedgerError> {
        match self.writer(channel).submit(Op::Reserve(request)).await? {
            OpResult::Reserve(outcome) => Ok(outcome),
            OpResult::Settle(_) => unreachable!("a reserve is answered with a reserve result"),
        }
    }

    /// Settles a reservation: charges or releases its units and records the outcome.
    ///
    /// A database outage is retried for a while, since the outcome is known now and
    /// is worth recording; if it lasts, the reservation stays and the sweeper settles it
    /// as `uncertain` (charged), so a charge is never lost.
    #[tracing::instrument(skip_all, fields(channel = %reservation.channel, send_id = %reservation.send_id, outcome = settlement.outcome.as_str()))]
    pub async fn settle(
        &self,
        reservation: &Reservation,
        settlement: Settlement,
    ) -> Result<Settled, LedgerError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let op = Op::Settle(reservation.clone(), settlement.clone());
            match self.writer(&reservation.channel).submit(op).await {
                Ok(OpResult::Settle(settled)) => return Ok(settled),
                Ok(OpResult::Reserve(_)) => {
                    unreachable!("a settle is answered with a settle result")
                }
                Err(LedgerError::Unavailable(err)) if attempt < 8 => {
                    tracing::warn!(attempt, error = %err, "settlement failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

async fn run_writer(
    db: Db,
    mode: LedgerMode,
    channel: ChannelName,
    batch_limit: usize,
    mut receiver: mpsc::UnboundedReceiver<(Op, Reply)>,
) {
    let mut batch = Vec::with_capacity(batch_limit);
    while receiver.recv_many(&mut batch, batch_limit).await > 0 {
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.drain(..).unzip();
        match apply_batch(&db, mode, &channel, &ops).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(err) if ops.len() > 1 => {
                // Apply one by one, so that whatever failed the batch fails only itself.
                tracing::warn!(channel = %channel, size = ops.len(), error = %err, "ledger batch failed; applying its operations one by one");
                for (op, reply) in ops.into_iter().zip(replies) {
                    let result = apply_batch(&db, mode, &channel, std::slice::from_ref(&op))
                        .await
                        .map(|mut results| results.remove(0))
                        .map_err(LedgerError::from);
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::warn!(channel = %channel, error = %err, "ledger operation failed");
                let err = LedgerError::from(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Applies `ops` in one transaction; nothing is applied unless all of it commits.
async fn apply_batch(
    db: &Db,
    mode: LedgerMode,
    channel: &ChannelName,
    ops: &[Op],
) -> Result<Vec<OpResult>, sqlx::Error> {
    let now = Utc::now();
    let mut tx = db.begin_write().await?;
    let mut pool = LockedPool::load(&mut tx, db, channel, now).await?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let result = match op {
            Op::Reserve(request) => {
                OpResult::Reserve(reserve(&mut tx, &mut pool, mode, channel, request, now).await?)
            }
            Op::Settle(reservation, settlement) => {
                OpResult::Settle(settle(&mut tx, &mut pool, reservation, settlement, now).await?)
            }
        };
        results.push(result);
    }
    pool.write_back(&mut tx).await?;
    add_to_totals(&mut tx, channel, &results).await?;
    tx.commit().await?;
    Ok(results)
}

/// Adds the batch's charges to the channel's running totals, in one statement.
async fn add_to_totals(
    tx: &mut Transaction,
    channel: &ChannelName,
    results: &[OpResult],
) -> Result<(), sqlx::Error> {
    let (units, cost) = results
        .iter()
        .filter_map(|result| match result {
            OpResult::Settle(settled) if settled.applied => {
                Some((settled.charged_units, settled.cost.micros()))
            }
            _ => None,
        })
        .fold((0, 0), |(u, c), (units, cost)| (u + units, c + cost));
    if units == 0 && cost == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO channel_totals (channel, billed_units, cost_micros) VALUES ($1, $2, $3) \
         ON CONFLICT (channel) DO UPDATE SET \
         billed_units = channel_totals.billed_units + excluded.billed_units, \
         cost_micros = channel_totals.cost_micros + excluded.cost_micros",
    )
    .bind(channel.as_str())
    .bind(units)
    .bind(cost)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn reserve(
    tx: &mut Transaction,
    pool: &mut LockedPool,
    mode: LedgerMode,
    channel: &ChannelName,
    request: &ReserveRequest,
    now: chrono::DateTime<Utc>,
) -> Result<ReserveOutcome, sqlx::Error> {
    let wanted = request.units.as_i64();
    let before = pool.snapshot_all();
    let allocation = pool.take(wanted);
    let short = wanted - allocation.units();
    if short > 0 && mode == LedgerMode::Enforce {
        pool.restore(before);
        return Ok(ReserveOutcome::QuotaExhausted {
            remaining: pool.remaining(),
        });
    }
    let (key, hash) = match &request.idempotency {
        Some(idem) => (Some(idem.key()), Some(idem.request_hash())),
        None => (None, None),
    };
    // A key already used by this client makes the insert a no-op; NULL keys never
    // conflict. The conflict is settled by the unique index, so two instances racing
    // with the same key cannot both reserve.
    let inserted = sqlx::query(
        "INSERT INTO sends (id, channel, client, idempotency_key, request_hash, \
         mobile_masked, mobile_full, units, allocation, unmetered_units, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'reserved', $11) \
         ON CONFLICT (client, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(&request.send_id)
    .bind(channel.as_str())
    .bind(&request.client)
    .bind(key)
    .bind(hash)
    .bind(&request.mobile_masked)
    .bind(request.mobile_full.as_deref())
    .bind(wanted)
    .bind(allocation.to_string())
    .bind(short)
    .bind(to_micros(now))
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        pool.restore(before);
        let existing_id: String =
            sqlx::query("SELECT id FROM sends WHERE client = $1 AND idempotency_key = $2")
                .bind(&request.client)
                .bind(key)
                .fetch_one(&mut **tx)
                .await?
                .try_get("id")?;
        return Ok(ReserveOutcome::Duplicate { existing_id });
    }
    Ok(ReserveOutcome::Reserved(Reservation {
        send_id: request.send_id.clone(),
        channel: channel.clone(),
        client: request.client.clone(),
        units: request.units,
        allocation,
        unmetered: short,
        remaining: pool.remaining(),
    }))
}

async fn settle(
    tx: &mut Transaction,
    pool: &mut LockedPool,
    reservation: &Reservation,
    settlement: &Settlement,
    now: chrono::DateTime<Utc>,
) -> Result<Settled, sqlx::Error> {
    let before = pool.snapshot(&reservation.allocation);
    let changed = if settlement.charge {
        pool.charge(&reservation.allocation)
    } else {
        pool.release(&reservation.allocation).map(|()| Vec::new())
    };
    let parts = match changed {
        Ok(parts) => parts,
        Err(problem) => {
            pool.restore(before);
            // Expected when the sweeper (or an earlier retry) settled this send already:
            // its units are no longer reserved. Anything else is a real inconsistency;
            // leave the send reserved for the sweeper rather than guess, and say so.
            let status: Option<String> = sqlx::query("SELECT status FROM sends WHERE id = $1")
                .bind(&reservation.send_id)
                .fetch_optional(&mut **tx)
                .await?
                .map(|row| row.try_get("status"))
                .transpose()?;
            if status.as_deref().is_some_and(|s| s != "reserved") {
                return Ok(Settled {
                    applied: false,
                    charged_units: 0,
                    cost: Yuan::ZERO,
                    remaining: pool.remaining(),
                });
            }
            tracing::error!(send_id = %reservation.send_id, %problem, "cannot settle reservation");
            return Err(sqlx::Error::Protocol(format!(
                "ledger inconsistency: {problem}"
            )));
        }
    };
    let charged_units = if settlement.charge {
        reservation.allocation.units() + reservation.unmetered
    } else {
        0
    };
    let cost: Yuan = parts.iter().map(|p| p.cost).sum();
    let upstream = &settlement.upstream;
    let claimed = sqlx::query(
        "UPDATE sends SET status = $1, charged_units = $2, cost_micros = $3, \
         upstream_status = $4, upstream_request_id = $5, upstream_task_id = $6, \
         upstream_message = $7, latency_ms = $8, needs_reconciliation = $9, settled_at = $10 \
         WHERE id = $11 AND status = 'reserved'",
    )
    .bind(settlement.outcome.as_str())
    .bind(charged_units)
    .bind(cost.micros())
    .bind(upstream.status.map(i64::from))
    .bind(upstream.request_id.as_deref())
    .bind(upstream.task_id.as_deref())
    .bind(upstream.message.as_deref())
    .bind(upstream.latency_ms)
    .bind(i64::from(settlement.outcome == Outcome::Uncertain))
    .bind(to_micros(now))
    .bind(&reservation.send_id)
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 0 {
        pool.restore(before);
        return Ok(Settled {
            applied: false,
            charged_units: 0,
            cost: Yuan::ZERO,
            remaining: pool.remaining(),
        });
    }
    if settlement.charge {
        insert_charge_entries(tx, reservation, &parts, now).await?;
    }
    Ok(Settled {
        applied: true,
        charged_units,
        cost,
        remaining: pool.remaining(),
    })
}

/// One entry per package charged, plus one unpriced entry for observe mode's units
/// beyond the packages. Reports and cost metrics are sums over these entries.
async fn insert_charge_entries(
    tx: &mut Transaction,
    reservation: &Reservation,
    parts: &[ChargedPart],
    now: chrono::DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut rows: Vec<(Option<i64>, i64, i64)> = parts
        .iter()
        .map(|p| (Some(p.package_id), p.units, p.cost.micros()))
        .collect();
    if reservation.unmetered > 0 {
        rows.push((None, reservation.unmetered, 0));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO ledger_entries (channel, package_id, send_id, client, units, cost_micros, created_at) VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 7;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    let mut query = sqlx::query(&sql);
    for (package_id, units, cost) in rows {
        query = query
            .bind(reservation.channel.as_str())
            .bind(package_id)
            .bind(&reservation.send_id)
            .bind(&reservation.client)
            .bind(units)
            .bind(cost)
            .bind(to_micros(now));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
