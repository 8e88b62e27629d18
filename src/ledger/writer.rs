//! The per-channel ledger writer: reservations and settlements, applied in batches.
//!
//! Every send touches its channel's package rows twice (reserve, then settle), and
//! those rows are the hot spot of the whole system: a transaction per send would queue
//! every send of a channel behind one row lock and one commit each. Instead each process
//! runs one writer task per channel. Sends hand their operation to it over a queue;
//! the writer takes everything queued (up to [`MAX_BATCH`]) and applies it in one
//! transaction: lock the channel's packages once, apply the operations in memory, write
//! the rows with a few set-based statements, commit once, then answer every caller. Under light load a
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

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::error::INCONSISTENCY;
use super::pool::{LockedPool, Scope};
use super::sends::{IdempotencyKey, UpstreamRecord};
use super::{Allocation, Ledger, LedgerError};
use crate::domain::LedgerMode;
use crate::domain::Outcome;
use crate::domain::{ChannelName, Units, Yuan};
use crate::store::{to_micros, Db, Transaction};

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
            OpResult::Reserve(outcome) => {
                if let ReserveOutcome::Reserved(reservation) = &outcome {
                    self.in_flight().insert(reservation.send_id.clone());
                }
                Ok(outcome)
            }
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
        let result = self.settle_with_retries(reservation, settlement).await;
        self.in_flight().remove(&reservation.send_id);
        result
    }

    async fn settle_with_retries(
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
            // A statement refused by the database may be one operation's fault: apply
            // the operations one by one so that it fails alone. A connection problem
            // would fail every one of them too, so it fails the batch at once.
            Err(err @ sqlx::Error::Database(_)) if ops.len() > 1 => {
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
///
/// The statements are set-based, so a batch costs about ten round trips however many
/// operations it holds: settlements first (one claim, one cost update, one insert of
/// entries), then reservations (one look-up of idempotency keys, one insert). Applying
/// settlements before reservations only means units released in this batch can serve
/// the reservations in it.
async fn apply_batch(
    db: &Db,
    mode: LedgerMode,
    channel: &ChannelName,
    ops: &[Op],
) -> Result<Vec<OpResult>, sqlx::Error> {
    let now = Utc::now();
    let mut tx = db.begin_write().await?;
    let mut pool = LockedPool::load(&mut tx, db, channel, now, Scope::Sends).await?;
    let mut results: Vec<Option<OpResult>> = ops.iter().map(|_| None).collect();

    let settles: Vec<(usize, &Reservation, &Settlement)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Settle(reservation, settlement) => Some((i, reservation, settlement)),
            Op::Reserve(_) => None,
        })
        .collect();
    settle_all(&mut tx, &mut pool, &settles, now, &mut results).await?;

    let reserves: Vec<(usize, &ReserveRequest)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Reserve(request) => Some((i, request)),
            Op::Settle(..) => None,
        })
        .collect();
    reserve_all(
        &mut tx,
        &mut pool,
        mode,
        channel,
        &reserves,
        now,
        &mut results,
    )
    .await?;

    pool.write_back(&mut tx).await?;
    let results: Vec<OpResult> = results
        .into_iter()
        .map(|result| result.expect("every operation of the batch has a result"))
        .collect();
    add_to_totals(&mut tx, channel, &results).await?;
    tx.commit().await?;
    Ok(results)
}

/// `($1, $2), ($3, $4), …`: placeholders for `rows` rows of `columns` values, numbered
/// from `first`.
fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> = (0..columns)
                .map(|column| format!("${}", first + row * columns + column))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Settles every settlement of the batch.
///
/// A settlement applies only to a send still `reserved`: the claim moves each such send
/// to its outcome in one statement and returns the ids it moved. Sends already settled
/// (by the sweeper, or an earlier attempt) are left alone and answered `applied: false`,
/// and their units are not touched, so nothing is charged or released twice.
async fn settle_all(
    tx: &mut Transaction,
    pool: &mut LockedPool,
    settles: &[(usize, &Reservation, &Settlement)],
    now: chrono::DateTime<Utc>,
    results: &mut [Option<OpResult>],
) -> Result<(), sqlx::Error> {
    if settles.is_empty() {
        return Ok(());
    }
    let now = to_micros(now);
    let sql = format!(
        "UPDATE sends SET status = v.status, upstream_status = v.upstream_status, \
         upstream_request_id = v.request_id, upstream_task_id = v.task_id, \
         upstream_message = v.message, latency_ms = v.latency_ms, \
         needs_reconciliation = v.flag, upstream_remain_point = v.remain_point, \
         settled_at = $1 \
         FROM (SELECT column1 AS id, column2 AS status, column3 AS upstream_status, \
         column4 AS request_id, column5 AS task_id, column6 AS message, \
         column7 AS latency_ms, column8 AS flag, column9 AS remain_point \
         FROM (VALUES {}) AS t) AS v \
         WHERE sends.id = v.id AND sends.status = 'reserved' RETURNING sends.id",
        placeholders(settles.len(), 9, 2)
    );
    let mut claim = sqlx::query(&sql).bind(now);
    for (_, reservation, settlement) in settles {
        let upstream = &settlement.upstream;
        claim = claim
            .bind(&reservation.send_id)
            .bind(settlement.outcome.as_str())
            .bind(upstream.status.map(i64::from))
            .bind(upstream.request_id.as_deref())
            .bind(upstream.task_id.as_deref())
            .bind(upstream.message.as_deref())
            .bind(upstream.latency_ms)
            .bind(i64::from(settlement.outcome == Outcome::Uncertain))
            .bind(upstream.remain_point);
    }
    let mut claimed: HashSet<String> = claim
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;

    // (send, package or none, units, cost) for every entry to write.
    let mut entries: Vec<(&Reservation, Option<i64>, i64, i64)> = Vec::new();
    let mut costs: Vec<(&str, i64, i64)> = Vec::new();
    for &(i, reservation, settlement) in settles {
        // `remove`, not `contains`: should one batch hold two settlements of the same
        // send (a late one and the sweeper's), only the first applies.
        if !claimed.remove(&reservation.send_id) {
            results[i] = Some(OpResult::Settle(Settled {
                applied: false,
                charged_units: 0,
                cost: Yuan::ZERO,
                remaining: 0,
            }));
            continue;
        }
        let applied = if settlement.charge {
            pool.charge(&reservation.allocation)
        } else {
            pool.release(&reservation.allocation).map(|()| Vec::new())
        };
        // A send that was still reserved must hold its units; if not, the ledger is
        // inconsistent: fail the batch (nothing is written) rather than guess.
        let parts = applied.map_err(|problem| {
            tracing::error!(send_id = %reservation.send_id, %problem, "cannot settle reservation");
            sqlx::Error::Protocol(format!("{INCONSISTENCY}{problem}"))
        })?;
        let (charged_units, cost) = if settlement.charge {
            let cost: Yuan = parts.iter().map(|p| p.cost).sum();
            for part in &parts {
                entries.push((
                    reservation,
                    Some(part.package_id),
                    part.units,
                    part.cost.micros(),
                ));
            }
            if reservation.unmetered > 0 {
                entries.push((reservation, None, reservation.unmetered, 0));
            }
            costs.push((
                &reservation.send_id,
                reservation.allocation.units() + reservation.unmetered,
                cost.micros(),
            ));
            (reservation.allocation.units() + reservation.unmetered, cost)
        } else {
            (0, Yuan::ZERO)
        };
        results[i] = Some(OpResult::Settle(Settled {
            applied: true,
            charged_units,
            cost,
            remaining: 0,
        }));
    }
    let remaining = pool.remaining();
    for &(i, ..) in settles {
        if let Some(OpResult::Settle(settled)) = &mut results[i] {
            settled.remaining = remaining;
        }
    }

    if !costs.is_empty() {
        let sql = format!(
            "UPDATE sends SET charged_units = v.units, cost_micros = v.cost \
             FROM (SELECT column1 AS id, column2 AS units, column3 AS cost \
             FROM (VALUES {}) AS t) AS v WHERE sends.id = v.id",
            placeholders(costs.len(), 3, 1)
        );
        let mut update = sqlx::query(&sql);
        for (id, units, cost) in &costs {
            update = update.bind(*id).bind(*units).bind(*cost);
        }
        update.execute(&mut **tx).await?;
    }
    // One entry per package charged, plus one unpriced entry for observe mode's units
    // beyond the packages. Reports and cost metrics are sums over these entries.
    if !entries.is_empty() {
        let sql = format!(
            "INSERT INTO ledger_entries (channel, package_id, send_id, client, units, \
             cost_micros, created_at) VALUES {}",
            placeholders(entries.len(), 7, 1)
        );
        let mut insert = sqlx::query(&sql);
        for (reservation, package_id, units, cost) in &entries {
            insert = insert
                .bind(reservation.channel.as_str())
                .bind(*package_id)
                .bind(&reservation.send_id)
                .bind(&reservation.client)
                .bind(*units)
                .bind(*cost)
                .bind(now);
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Reserves for every reservation request of the batch, in arrival order.
async fn reserve_all(
    tx: &mut Transaction,
    pool: &mut LockedPool,
    mode: LedgerMode,
    channel: &ChannelName,
    reserves: &[(usize, &ReserveRequest)],
    now: chrono::DateTime<Utc>,
    results: &mut [Option<OpResult>],
) -> Result<(), sqlx::Error> {
    if reserves.is_empty() {
        return Ok(());
    }
    // Idempotency keys this client already used: one look-up for the whole batch.
    let mut used_keys = existing_keys(tx, reserves).await?;
    let mut planned: Vec<(usize, &ReserveRequest, Allocation, i64)> = Vec::new();
    for &(i, request) in reserves {
        if let Some(idem) = &request.idempotency {
            let key = (request.client.clone(), idem.key().to_owned());
            if let Some(existing_id) = used_keys.get(&key) {
                results[i] = Some(OpResult::Reserve(ReserveOutcome::Duplicate {
                    existing_id: existing_id.clone(),
                }));
                continue;
            }
        }
        let wanted = request.units.as_i64();
        let allocation = pool.take(wanted);
        let short = wanted - allocation.units();
        if short > 0 && mode == LedgerMode::Enforce {
            pool.release(&allocation)
                .expect("units just taken are reserved and can be released");
            results[i] = Some(OpResult::Reserve(ReserveOutcome::QuotaExhausted {
                remaining: pool.remaining(),
            }));
            continue;
        }
        // Only a planned reservation claims its key: a request refused for quota leaves
        // it free for a later request of the batch.
        if let Some(idem) = &request.idempotency {
            used_keys.insert(
                (request.client.clone(), idem.key().to_owned()),
                request.send_id.clone(),
            );
        }
        results[i] = Some(OpResult::Reserve(ReserveOutcome::Reserved(Reservation {
            send_id: request.send_id.clone(),
            channel: channel.clone(),
            client: request.client.clone(),
            units: request.units,
            allocation: allocation.clone(),
            unmetered: short,
            remaining: pool.remaining(),
        })));
        planned.push((i, request, allocation, short));
    }
    if planned.is_empty() {
        return Ok(());
    }

    // The unique index on (client, idempotency_key) is the final word: a send with the
    // same key reserved meanwhile by another channel's writer or another instance makes
    // this insert skip the row, and the reservation is undone below.
    let sql = format!(
        "INSERT INTO sends (id, channel, client, idempotency_key, request_hash, \
         mobile_masked, mobile_full, units, allocation, unmetered_units, status, created_at) \
         VALUES {} ON CONFLICT (client, idempotency_key) DO NOTHING RETURNING id",
        placeholders(planned.len(), 12, 1)
    );
    let mut insert = sqlx::query(&sql);
    for (_, request, allocation, short) in &planned {
        let (key, hash) = match &request.idempotency {
            Some(idem) => (Some(idem.key()), Some(idem.request_hash())),
            None => (None, None),
        };
        insert = insert
            .bind(&request.send_id)
            .bind(channel.as_str())
            .bind(&request.client)
            .bind(key)
            .bind(hash)
            .bind(&request.mobile_masked)
            .bind(request.mobile_full.as_deref())
            .bind(request.units.as_i64())
            .bind(allocation.to_string())
            .bind(*short)
            .bind("reserved")
            .bind(to_micros(now));
    }
    let inserted: HashSet<String> = insert
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
    for (i, request, allocation, _) in &planned {
        if inserted.contains(&request.send_id) {
            continue;
        }
        // Undoing can only leave units unsold that a later request of this batch was
        // refused for: never an oversold unit.
        pool.release(allocation)
            .expect("units just taken are reserved and can be released");
        let existing_id: String =
            sqlx::query("SELECT id FROM sends WHERE client = $1 AND idempotency_key = $2")
                .bind(&request.client)
                .bind(request.idempotency.as_ref().map(IdempotencyKey::key))
                .fetch_one(&mut **tx)
                .await?
                .try_get("id")?;
        results[*i] = Some(OpResult::Reserve(ReserveOutcome::Duplicate { existing_id }));
    }
    Ok(())
}

/// The sends already recorded under the batch's idempotency keys, by (client, key).
async fn existing_keys(
    tx: &mut Transaction,
    reserves: &[(usize, &ReserveRequest)],
) -> Result<HashMap<(String, String), String>, sqlx::Error> {
    let keyed: Vec<(&str, &str)> = reserves
        .iter()
        .filter_map(|(_, r)| r.idempotency.as_ref().map(|k| (r.client.as_str(), k.key())))
        .collect();
    if keyed.is_empty() {
        return Ok(HashMap::new());
    }
    let conditions: Vec<String> = (0..keyed.len())
        .map(|i| {
            format!(
                "(client = ${} AND idempotency_key = ${})",
                2 * i + 1,
                2 * i + 2
            )
        })
        .collect();
    let sql = format!(
        "SELECT client, idempotency_key, id FROM sends WHERE {}",
        conditions.join(" OR ")
    );
    let mut query = sqlx::query(&sql);
    for (client, key) in &keyed {
        query = query.bind(*client).bind(*key);
    }
    query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| {
            Ok((
                (row.try_get("client")?, row.try_get("idempotency_key")?),
                row.try_get("id")?,
            ))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_and_columns_in_order() {
        assert_eq!(placeholders(2, 3, 2), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(placeholders(1, 1, 1), "($1)");
    }
}
