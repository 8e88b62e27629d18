//! The per-channel ledger writer: reservations and settlements, applied in batches.
//!
//! Every send touches its channel's package rows twice (reserve, then settle), and
//! those rows are the hot spot of the whole system: a transaction per send would queue
//! every send of a channel behind one row lock and one commit each. Instead each process
//! runs one writer task per channel. Sends hand their operation to it over a bounded
//! queue; the writer takes everything queued (up to the batch limit) and applies it in
//! one transaction: lock the channel's packages once, apply the operations in memory,
//! write the rows with a few set-based statements, commit once, then answer every
//! caller. Under light load a batch holds one operation and costs what a plain
//! transaction would; under heavy load batches grow by themselves, with no timer adding
//! latency.
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
//!   fail the others; a reservation that is never settled is settled by the sweeper.
//! - *A commit whose outcome is unknown is not guessed at*: when the connection is lost
//!   during `COMMIT`, the writer reads back whether the batch's rows exist before it
//!   answers; and applying a batch again is harmless (a reservation whose send id is
//!   already recorded is that reservation, not a second one).
//! - *No caller waits forever*: the queue is bounded (a full queue answers at once that
//!   the ledger is busy), every database statement is bounded by the connection's
//!   `statement_timeout` and `lock_timeout`, and a reservation whose caller gave up
//!   before it was answered is released by the writer itself.
//! - *Aggregates move with the rows*: the channel's running totals and usage buckets
//!   are written in the same transaction (see `aggregates.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::aggregates::{Aggregates, BucketKey};
use super::error::INCONSISTENCY;
use super::pool::{ChargedPart, LockedPool, Scope};
use super::sends::{IdempotencyKey, UpstreamRecord};
use super::{Allocation, Context, Ledger, LedgerError};
use crate::domain::{ChannelName, LedgerMode, Outcome, RouteName, SendClass, Units, Yuan};
use crate::store::{placeholders, to_micros, Transaction};

/// The most operations one transaction applies, unless the ledger was built with
/// another limit.
pub const MAX_BATCH: usize = 256;

/// How many operations may wait for one channel's writer. Beyond it the ledger answers
/// `Busy` at once instead of piling requests up in memory.
pub const QUEUE_CAPACITY: usize = 4096;

/// How long a caller waits for its operation to be answered. Longer than a batch can
/// take while the database answers (statements are bounded by `statement_timeout`),
/// so reaching it means the database or the writer is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A send asking for quota.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub send_id: String,
    pub client: String,
    pub units: Units,
    pub class: SendClass,
    /// The route the send was addressed to, if any.
    pub route: Option<RouteName>,
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
    pub class: SendClass,
    pub route: Option<RouteName>,
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

#[derive(Debug, Clone)]
enum Op {
    Reserve(ReserveRequest),
    Settle(Reservation, Settlement),
}

#[derive(Debug, Clone)]
enum OpResult {
    Reserve(ReserveOutcome),
    Settle(Settled),
}

type Reply = oneshot::Sender<Result<OpResult, LedgerError>>;

/// One queued operation and, unless the writer queued it for itself, who waits for it.
type Queued = (Op, Option<Reply>);

#[derive(Clone)]
pub(super) struct WriterHandle {
    queue: mpsc::Sender<Queued>,
}

impl WriterHandle {
    pub fn spawn(context: Arc<Context>, channel: ChannelName) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run_writer(context, channel, receiver));
        Self { queue }
    }

    /// Whether the writer task has ended (it panicked): the ledger then starts another.
    pub fn is_stopped(&self) -> bool {
        self.queue.is_closed()
    }

    async fn submit(&self, op: Op) -> Result<OpResult, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send((op, Some(reply)))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => LedgerError::Busy,
                mpsc::error::TrySendError::Closed(_) => LedgerError::WriterStopped,
            })?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(answer) => answer.map_err(|_| LedgerError::WriterStopped)?,
            Err(_) => Err(LedgerError::Busy),
        }
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
                Err(err @ (LedgerError::Unavailable(_) | LedgerError::Busy)) if attempt < 8 => {
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
    context: Arc<Context>,
    channel: ChannelName,
    mut receiver: mpsc::Receiver<Queued>,
) {
    let limit = context.batch_limit;
    let mut batch: Vec<Queued> = Vec::with_capacity(limit);
    // Operations the writer queued for itself (releases of abandoned reservations); they
    // join the next batch.
    let mut own: Vec<Queued> = Vec::new();
    loop {
        batch.append(&mut own);
        if batch.is_empty() {
            if receiver.recv_many(&mut batch, limit).await == 0 {
                return;
            }
        } else {
            // Whatever else is waiting right now, without waiting for more.
            while batch.len() < limit {
                match receiver.try_recv() {
                    Ok(queued) => batch.push(queued),
                    Err(_) => break,
                }
            }
        }
        let (ops, replies): (Vec<Op>, Vec<Option<Reply>>) = batch.drain(..).unzip();
        let results = apply_with_fallback(&context, &channel, &ops).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let Some(reply) = reply else {
                if let Err(err) = &result {
                    tracing::warn!(channel = %channel, error = %err, "releasing an abandoned reservation failed; the sweeper will settle it");
                }
                continue;
            };
            if let Err(Ok(OpResult::Reserve(ReserveOutcome::Reserved(reservation)))) =
                reply.send(result)
            {
                // The caller gave up waiting before the vendor was called: nothing was
                // sent, so the units go back at once rather than being swept as charged.
                own.push((Op::Settle(reservation, abandoned()), None));
            }
        }
    }
}

/// The settlement of a reservation whose caller never got it: nothing was sent.
fn abandoned() -> Settlement {
    Settlement {
        outcome: Outcome::UpstreamError,
        charge: false,
        upstream: UpstreamRecord {
            message: Some(
                "the reservation was not confirmed in time; the vendor was not called and nothing was charged"
                    .into(),
            ),
            ..UpstreamRecord::default()
        },
    }
}

/// Applies a batch; if the database refuses it, applies its operations one by one so
/// that one bad operation fails alone. A connection problem would fail every one of
/// them too, so it fails the batch at once.
async fn apply_with_fallback(
    context: &Context,
    channel: &ChannelName,
    ops: &[Op],
) -> Vec<Result<OpResult, LedgerError>> {
    match apply_batch(context, channel, ops).await {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(err @ sqlx::Error::Database(_)) if ops.len() > 1 => {
            tracing::warn!(channel = %channel, size = ops.len(), error = %err, "ledger batch failed; applying its operations one by one");
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                let result = apply_batch(context, channel, std::slice::from_ref(op))
                    .await
                    .map(|mut results| results.remove(0))
                    .map_err(LedgerError::from);
                results.push(result);
            }
            results
        }
        Err(err) => {
            tracing::warn!(channel = %channel, error = %err, "ledger operation failed");
            let err = LedgerError::from(err);
            ops.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

/// Applies `ops` in one transaction, and answers only what committed.
///
/// Settlements whose send turns out to be settled already (by the sweeper, or by an
/// earlier attempt of this batch) are answered `applied: false` and the batch is applied
/// again without them: the charges were computed assuming every claim succeeds, which
/// saves a statement in the common case.
async fn apply_batch(
    context: &Context,
    channel: &ChannelName,
    ops: &[Op],
) -> Result<Vec<OpResult>, sqlx::Error> {
    let mut settled_elsewhere: HashSet<String> = HashSet::new();
    loop {
        let now = (context.clock)();
        match try_batch(context, channel, ops, &settled_elsewhere, now).await? {
            Attempt::Committed(results) => return Ok(results),
            Attempt::SettledElsewhere(ids) => settled_elsewhere.extend(ids),
            Attempt::CommitUnknown(results, cause) => {
                if read_back(context, ops, &results, now).await? {
                    return Ok(results);
                }
                // Not committed: applying the batch again is safe (and what committed
                // meanwhile, if anything, is recognised by send id).
                tracing::warn!(channel = %channel, error = %cause, "a ledger commit was lost; applying the batch again");
            }
        }
    }
}

enum Attempt {
    Committed(Vec<OpResult>),
    /// These settlements found their send settled already; nothing was written.
    SettledElsewhere(Vec<String>),
    /// The connection failed during `COMMIT`: the batch may or may not have committed.
    CommitUnknown(Vec<OpResult>, sqlx::Error),
}

async fn try_batch(
    context: &Context,
    channel: &ChannelName,
    ops: &[Op],
    settled_elsewhere: &HashSet<String>,
    now: DateTime<Utc>,
) -> Result<Attempt, sqlx::Error> {
    let db = &context.db;
    let mut tx = db.begin_write().await?;
    let mut pool = LockedPool::load(&mut tx, db, channel, now, Scope::Sends).await?;
    let mut results: Vec<Option<OpResult>> = ops.iter().map(|_| None).collect();
    let mut aggregates = Aggregates::new(channel.clone(), context.timezone);

    let settles: Vec<(usize, &Reservation, &Settlement)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Settle(reservation, settlement) => Some((i, reservation, settlement)),
            Op::Reserve(_) => None,
        })
        .collect();
    let missing = settle_all(
        &mut tx,
        &mut pool,
        &mut aggregates,
        &settles,
        settled_elsewhere,
        now,
        &mut results,
    )
    .await?;
    if !missing.is_empty() {
        tx.rollback().await?;
        return Ok(Attempt::SettledElsewhere(missing));
    }

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
        &mut aggregates,
        context,
        channel,
        &reserves,
        now,
        &mut results,
    )
    .await?;

    pool.write_back(&mut tx).await?;
    aggregates.write(&mut tx).await?;
    let results: Vec<OpResult> = results
        .into_iter()
        .map(|result| result.expect("every operation of the batch has a result"))
        .collect();
    match tx.commit().await {
        Ok(()) => Ok(Attempt::Committed(results)),
        // The server refused the commit: it did not happen.
        Err(err @ sqlx::Error::Database(_)) => Err(err),
        Err(err) => Ok(Attempt::CommitUnknown(results, err)),
    }
}

/// After a commit whose outcome is unknown: whether the batch committed. The batch is
/// one transaction, so one of its rows tells: a reservation's send row exists, or a
/// settlement's send carries this batch's settlement time and outcome.
async fn read_back(
    context: &Context,
    ops: &[Op],
    results: &[OpResult],
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let probe = ops
        .iter()
        .zip(results)
        .find_map(|(op, result)| match (op, result) {
            (_, OpResult::Reserve(ReserveOutcome::Reserved(reservation))) => {
                Some((reservation.send_id.clone(), None))
            }
            (Op::Settle(reservation, settlement), OpResult::Settle(settled)) if settled.applied => {
                Some((reservation.send_id.clone(), Some(settlement.outcome)))
            }
            _ => None,
        });
    // Nothing in the batch wrote a row (every reservation refused): nothing to lose.
    let Some((send_id, outcome)) = probe else {
        return Ok(true);
    };
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let row = sqlx::query("SELECT status, settled_at FROM sends WHERE id = $1")
            .bind(&send_id)
            .fetch_optional(context.db.pool())
            .await;
        match row {
            Ok(row) => {
                return Ok(match (row, outcome) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(row), Some(outcome)) => {
                        let status: String = row.try_get("status")?;
                        let settled_at: Option<i64> = row.try_get("settled_at")?;
                        status == outcome.as_str() && settled_at == Some(to_micros(now))
                    }
                });
            }
            Err(err) if attempt < 10 => {
                tracing::warn!(attempt, error = %err, "cannot read back a ledger batch yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// One settlement to claim, with the charge computed for it in memory.
struct Claim<'a> {
    index: usize,
    reservation: &'a Reservation,
    settlement: &'a Settlement,
    charged_units: i64,
    cost: Yuan,
    parts: Vec<ChargedPart>,
    /// The units were not reserved in memory: a successful claim is an inconsistency.
    unbacked: Option<String>,
}

fn not_applied() -> OpResult {
    OpResult::Settle(Settled {
        applied: false,
        charged_units: 0,
        cost: Yuan::ZERO,
        remaining: 0,
    })
}

/// Settles every settlement of the batch.
///
/// Charges are computed in memory first, assuming every claim succeeds; then one
/// statement moves each send out of `reserved` and records its outcome and charge,
/// returning the ids it moved. Any send it did not move was settled already (by the
/// sweeper, or an earlier attempt): those ids are returned, and the caller applies the
/// batch again without them. A settlement whose units are not reserved in memory is
/// claimed too: if the claim succeeds the ledger is inconsistent and the batch fails;
/// if not, it was simply settled already.
async fn settle_all(
    tx: &mut Transaction,
    pool: &mut LockedPool,
    aggregates: &mut Aggregates,
    settles: &[(usize, &Reservation, &Settlement)],
    settled_elsewhere: &HashSet<String>,
    now: DateTime<Utc>,
    results: &mut [Option<OpResult>],
) -> Result<Vec<String>, sqlx::Error> {
    let mut claims: Vec<Claim> = Vec::new();
    let mut seen = HashSet::new();
    for &(index, reservation, settlement) in settles {
        // Only the first of two settlements of one send in a batch can apply; a send
        // known to be settled already is answered without a claim.
        if settled_elsewhere.contains(&reservation.send_id)
            || !seen.insert(reservation.send_id.as_str())
        {
            results[index] = Some(not_applied());
            continue;
        }
        let applied = if settlement.charge {
            pool.charge(&reservation.allocation)
        } else {
            pool.release(&reservation.allocation).map(|()| Vec::new())
        };
        let (parts, unbacked) = match applied {
            Ok(parts) => (parts, None),
            Err(problem) => (Vec::new(), Some(problem)),
        };
        let (charged_units, cost) = if settlement.charge && unbacked.is_none() {
            let cost: Yuan = parts.iter().map(|p| p.cost).sum();
            (reservation.allocation.units() + reservation.unmetered, cost)
        } else {
            (0, Yuan::ZERO)
        };
        claims.push(Claim {
            index,
            reservation,
            settlement,
            charged_units,
            cost,
            parts,
            unbacked,
        });
    }
    if claims.is_empty() {
        return Ok(Vec::new());
    }

    let at = to_micros(now);
    let sql = format!(
        "UPDATE sends SET status = v.status, upstream_status = v.upstream_status, \
         upstream_request_id = v.request_id, upstream_task_id = v.task_id, \
         upstream_message = v.message, latency_ms = v.latency_ms, \
         needs_reconciliation = v.flag, upstream_remain_point = v.remain_point, \
         charged_units = v.units, cost_micros = v.cost, settled_at = $1 \
         FROM (SELECT column1 AS id, column2 AS status, column3 AS upstream_status, \
         column4 AS request_id, column5 AS task_id, column6 AS message, \
         column7 AS latency_ms, column8 AS flag, column9 AS remain_point, \
         column10 AS units, column11 AS cost FROM (VALUES {}) AS t) AS v \
         WHERE sends.id = v.id AND sends.status = 'reserved' RETURNING sends.id",
        placeholders(claims.len(), 11, 2)
    );
    let mut claim = sqlx::query(&sql).bind(at);
    for c in &claims {
        let upstream = &c.settlement.upstream;
        claim = claim
            .bind(&c.reservation.send_id)
            .bind(c.settlement.outcome.as_str())
            .bind(upstream.status.map(i64::from))
            .bind(upstream.request_id.as_deref())
            .bind(upstream.task_id.as_deref())
            .bind(upstream.message.as_deref())
            .bind(upstream.latency_ms)
            .bind(i64::from(c.settlement.outcome == Outcome::Uncertain))
            .bind(upstream.remain_point)
            .bind(c.charged_units)
            .bind(c.cost.micros());
    }
    let claimed: HashSet<String> = claim
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;

    let mut missing = Vec::new();
    for c in &claims {
        let was_claimed = claimed.contains(&c.reservation.send_id);
        match (&c.unbacked, was_claimed) {
            (Some(problem), true) => {
                // A send still reserved must hold its units: fail the batch (nothing
                // is written) rather than guess.
                tracing::error!(send_id = %c.reservation.send_id, %problem, "cannot settle reservation");
                return Err(sqlx::Error::Protocol(format!("{INCONSISTENCY}{problem}")));
            }
            (Some(_), false) => results[c.index] = Some(not_applied()),
            (None, false) => missing.push(c.reservation.send_id.clone()),
            (None, true) => {}
        }
    }
    if !missing.is_empty() {
        return Ok(missing);
    }

    // One entry per package charged, plus one unpriced entry for observe mode's units
    // beyond the packages. Entries are the history; aggregates sum them as they go.
    let mut entries: Vec<(&Reservation, Option<i64>, i64, i64)> = Vec::new();
    let remaining = pool.remaining();
    for c in claims.iter().filter(|c| c.unbacked.is_none()) {
        let reservation = c.reservation;
        if c.settlement.charge {
            for part in &c.parts {
                entries.push((
                    reservation,
                    Some(part.package_id),
                    part.units,
                    part.cost.micros(),
                ));
            }
            if reservation.unmetered > 0 {
                entries.push((reservation, None, reservation.unmetered, 0));
                aggregates.totals.unmetered_units += reservation.unmetered;
            }
        }
        aggregates.totals.reserved_units -= reservation.allocation.units();
        aggregates.settled(
            now,
            bucket_key(reservation),
            c.settlement.outcome,
            c.charged_units,
            c.cost.micros(),
        );
        if let Some(count) = c.settlement.upstream.remain_point {
            aggregates.totals.vendor_remaining = Some((count, now));
        }
        results[c.index] = Some(OpResult::Settle(Settled {
            applied: true,
            charged_units: c.charged_units,
            cost: c.cost,
            remaining,
        }));
    }
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
                .bind(at);
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(Vec::new())
}

fn bucket_key(reservation: &Reservation) -> BucketKey {
    BucketKey {
        client: reservation.client.clone(),
        class: reservation.class.as_str().to_owned(),
        route: reservation
            .route
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// Reserves for every reservation request of the batch, in arrival order.
#[allow(clippy::too_many_arguments)]
async fn reserve_all(
    tx: &mut Transaction,
    pool: &mut LockedPool,
    aggregates: &mut Aggregates,
    context: &Context,
    channel: &ChannelName,
    reserves: &[(usize, &ReserveRequest)],
    now: DateTime<Utc>,
    results: &mut [Option<OpResult>],
) -> Result<(), sqlx::Error> {
    if reserves.is_empty() {
        return Ok(());
    }
    // Idempotency keys this client already used: one look-up for the whole batch, and
    // only when some request carries a key.
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
        if short > 0 && context.mode == LedgerMode::Enforce {
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
            class: request.class,
            route: request.route.clone(),
            allocation: allocation.clone(),
            unmetered: short,
            remaining: pool.remaining(),
        })));
        planned.push((i, request, allocation, short));
    }
    if planned.is_empty() {
        return Ok(());
    }

    // The unique indexes are the final word: a send with the same idempotency key
    // reserved meanwhile by another channel's writer or another instance makes this
    // insert skip the row, and so does a send id recorded by an earlier attempt of this
    // very batch (a commit whose outcome was unknown). Both are sorted out below.
    let sql = format!(
        "INSERT INTO sends (id, channel, client, idempotency_key, request_hash, \
         mobile_masked, mobile_full, units, allocation, unmetered_units, status, created_at, \
         class, route, instance) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        placeholders(planned.len(), 15, 1)
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
            .bind(to_micros(now))
            .bind(request.class.as_str())
            .bind(request.route.as_ref().map(RouteName::as_str).unwrap_or(""))
            .bind(&context.instance);
    }
    let inserted: HashSet<String> = insert
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
    for (i, request, allocation, _) in &planned {
        if inserted.contains(&request.send_id) {
            aggregates.totals.reserved_units += allocation.units();
            continue;
        }
        // Whatever the conflict, the units just taken are not this batch's to keep.
        pool.release(allocation)
            .expect("units just taken are reserved and can be released");
        let own = sqlx::query("SELECT allocation, unmetered_units FROM sends WHERE id = $1")
            .bind(&request.send_id)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = own {
            // An earlier attempt of this batch committed after all: that reservation,
            // with its units as the packages already count them, is this one.
            let stored: String = row.try_get("allocation")?;
            let allocation: Allocation = stored
                .parse()
                .map_err(|e| sqlx::Error::Protocol(format!("{INCONSISTENCY}{e}")))?;
            if let Some(OpResult::Reserve(ReserveOutcome::Reserved(reservation))) = &mut results[*i]
            {
                reservation.allocation = allocation;
                reservation.unmetered = row.try_get("unmetered_units")?;
            }
            continue;
        }
        // Undoing can only leave units unsold that a later request of this batch was
        // refused for: never an oversold unit.
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
