//! The per-channel ledger writer: reservations and settlements, applied in batches.
//!
//! Every send touches its channel's package rows twice (reserve, then settle), and
//! those rows are the hot spot of the whole system: a transaction per send would queue
//! every send of a channel behind one row lock and one commit each. Instead each process
//! runs one writer task per channel. Sends hand their operation to it over a bounded
//! queue; the writer takes everything queued (up to the batch limit) and applies it as
//! one transaction, then answers every caller. Under light load a batch holds one
//! operation and costs what a plain transaction would; under heavy load batches grow by
//! themselves, with no timer adding latency.
//!
//! A batch is first *planned* in memory ([`plan`]): settlements priced and their units
//! charged or released, reservations allocated earliest-expiry-first, entries, send
//! rows and aggregate changes laid out. The plan is then written one of two ways:
//!
//! - *Locked* (both backends, always correct): a transaction that locks the channel's
//!   package rows (`FOR UPDATE` on PostgreSQL; SQLite's write transaction excludes every
//!   other writer), plans against what it read, and writes with a few set-based
//!   statements. When the database reveals something the plan did not know (a send
//!   settled meanwhile by the sweeper, an idempotency key used by another instance, a
//!   send id recorded by an earlier attempt), it rolls back, learns it, and plans again.
//! - *Optimistic* (PostgreSQL, the common case): the writer keeps the package rows it
//!   last committed in memory and writes the whole plan in ONE statement, one round
//!   trip, whose data-modifying parts each check that the database still holds what the
//!   plan assumed (package counters unchanged, no package it does not know, every claimed
//!   send still reserved, every new send inserted). If any check fails the statement
//!   raises `tollgate_batch_conflict` and nothing of it happens; the writer forgets its
//!   copy and applies the batch locked.
//!
//! Guarantees, and what gives them:
//! - *Never oversell*: units are only taken against counters the database is known to
//!   hold at the write (locked rows, or rows whose counters the optimistic statement
//!   checks as it updates them, so a concurrent change fails it), and
//!   `CHECK (taken <= units)` refuses any write that would, whatever the code did.
//! - *Charge exactly once*: a settlement applies only if it moves the send out of
//!   `reserved` (`WHERE status = 'reserved'`); a late second settlement (after the
//!   sweeper) changes nothing.
//! - *Nothing is lost on failure*: a caller is answered only after the commit. If a
//!   batch fails, its operations are retried one by one, so one bad operation cannot
//!   fail the others; a reservation that is never settled is settled by the sweeper.
//! - *A commit whose outcome is unknown is not guessed at*: when the connection is lost
//!   during the commit, the writer reads back whether the batch's rows exist before it
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
use serde_json::{json, Value};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::aggregates::{Aggregates, BucketKey};
use super::error::INCONSISTENCY;
use super::pool::{LockedPool, Scope};
use super::sends::{Attempt, IdempotencyKey, UpstreamRecord};
use super::{Allocation, Context, Ledger, LedgerError};
use crate::domain::{ChannelName, LedgerMode, Outcome, RouteName, SendClass, Units, Yuan};
use crate::store::{placeholders, to_micros, Backend, Transaction};

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

/// How many times a locked batch plans again after learning something from the
/// database before it gives up (each round learns at least one new fact).
const MAX_ROUNDS: usize = 8;

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
    /// The channels a route tried before this one, stored with the send.
    pub attempts: Vec<Attempt>,
    /// A route's earlier attempt (its send id) that holds the request's idempotency key:
    /// this reservation takes the key over from it in its own transaction, so that a
    /// repeat of the request always finds the attempt that is under way or carried it.
    pub takes_key_from: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ReserveOutcome {
    Reserved(Reservation),
    /// Enforce mode, not enough units left: nothing was recorded.
    QuotaExhausted {
        remaining: i64,
    },
    /// Enforce mode: the units left are kept for a higher class (the channel's priority
    /// reserve, SPEC §11). Nothing was recorded.
    QuotaReserved {
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
        let result = self.settle_with_retries(reservation, settlement, 8).await;
        self.in_flight().remove(&reservation.send_id);
        result
    }

    /// Submits a settlement, trying again after a database outage up to `attempts`
    /// times in all, backing off from 100 ms.
    pub(super) async fn settle_with_retries(
        &self,
        reservation: &Reservation,
        settlement: Settlement,
        attempts: u32,
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
                Err(err @ (LedgerError::Unavailable(_) | LedgerError::Busy))
                    if attempt < attempts =>
                {
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

/// The writer task of one channel.
struct Writer {
    context: Arc<Context>,
    channel: ChannelName,
    /// The package rows as this writer last committed them (PostgreSQL only): the
    /// optimistic write plans against them instead of reading and locking the rows.
    cached: Option<LockedPool>,
}

async fn run_writer(
    context: Arc<Context>,
    channel: ChannelName,
    mut receiver: mpsc::Receiver<Queued>,
) {
    let limit = context.batch_limit;
    let mut writer = Writer {
        context,
        channel,
        cached: None,
    };
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
        let results = writer.apply_with_fallback(&ops).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let Some(reply) = reply else {
                if let Err(err) = &result {
                    tracing::warn!(channel = %writer.channel, error = %err, "releasing an abandoned reservation failed; the sweeper will settle it");
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

impl Writer {
    /// Applies a batch; if the database refuses it, applies its operations one by one so
    /// that one bad operation fails alone. A connection problem would fail every one of
    /// them too, so it fails the batch at once.
    async fn apply_with_fallback(&mut self, ops: &[Op]) -> Vec<Result<OpResult, LedgerError>> {
        match self.apply(ops).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(err @ sqlx::Error::Database(_)) if ops.len() > 1 => {
                tracing::warn!(channel = %self.channel, size = ops.len(), error = %err, "ledger batch failed; applying its operations one by one");
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    let result = self
                        .apply(std::slice::from_ref(op))
                        .await
                        .map(|mut results| results.remove(0))
                        .map_err(LedgerError::from);
                    results.push(result);
                }
                results
            }
            Err(err) => {
                tracing::warn!(channel = %self.channel, error = %err, "ledger operation failed");
                let err = LedgerError::from(err);
                ops.iter().map(|_| Err(err.clone())).collect()
            }
        }
    }

    /// Applies `ops` as one transaction, and answers only what committed.
    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<OpResult>, sqlx::Error> {
        let now = (self.context.clock)();
        let context = self.context.clone();
        let stats = &context.stats;
        stats.count(|s| &s.operations, ops.len() as u64);
        if let Some(cached) = self.cached.take() {
            match self.apply_optimistic(ops, cached, now).await {
                Ok(Some(results)) => {
                    stats.count(|s| &s.optimistic, 1);
                    return Ok(results);
                }
                // The database held something the copy did not: apply it locked.
                Ok(None) => {}
                Err(err) => return Err(err),
            }
        }
        let results = self.apply_locked(ops, now).await;
        stats.count(|s| &s.locked, 1);
        results
    }

    /// One statement against the cached rows; `None` when the plan needs the locked
    /// path (the copy is stale, or the batch has a case only the locked path decides).
    async fn apply_optimistic(
        &mut self,
        ops: &[Op],
        cached: LockedPool,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<OpResult>>, sqlx::Error> {
        let mut pool = cached.at(now);
        let live = pool.live_count();
        let checked = pool.stored_counters();
        let plan = plan(
            &self.context,
            &self.channel,
            ops,
            &mut pool,
            &Knowledge::default(),
            now,
        );
        // A refusal for quota may only be a package this copy has not seen; an
        // unbacked settlement may be an inconsistency; a key handed over between a
        // route's attempts must leave one row before it joins another: the locked path
        // decides all three.
        if plan.refused_for_quota || !plan.unbacked.is_empty() || plan.hands_over_keys {
            return Ok(None);
        }
        match write_optimistic(
            &self.context,
            &self.channel,
            &plan,
            &pool,
            &checked,
            live,
            now,
        )
        .await
        {
            Ok(true) => {
                pool.committed();
                self.cached = Some(pool);
                Ok(Some(plan.results))
            }
            Ok(false) => {
                self.context.stats.count(|s| &s.conflicts, 1);
                Ok(None)
            }
            // The statement is its own transaction: if the connection failed, it may
            // or may not have committed.
            Err(err @ sqlx::Error::Database(_)) => Err(err),
            Err(err) => {
                if read_back(&self.context, &plan, now).await? {
                    Ok(Some(plan.results))
                } else {
                    tracing::warn!(channel = %self.channel, error = %err, "a ledger write was lost; applying the batch again");
                    Ok(None)
                }
            }
        }
    }

    /// The locked path: plan against locked rows, write, and learn from what the
    /// database says until the plan holds.
    async fn apply_locked(
        &mut self,
        ops: &[Op],
        now: DateTime<Utc>,
    ) -> Result<Vec<OpResult>, sqlx::Error> {
        let mut knowledge = Knowledge::default();
        for _ in 0..MAX_ROUNDS {
            let db = &self.context.db;
            let mut tx = db.begin_write().await?;
            let mut pool = LockedPool::load(&mut tx, db, &self.channel, now, Scope::Sends).await?;
            let plan = plan(
                &self.context,
                &self.channel,
                ops,
                &mut pool,
                &knowledge,
                now,
            );
            match write_locked(&mut tx, &self.context, &self.channel, &plan, &pool, now).await? {
                Learned::Nothing => {}
                Learned::Something(learned) => {
                    tx.rollback().await?;
                    knowledge.add(learned);
                    continue;
                }
            }
            match tx.commit().await {
                Ok(()) => {}
                // The server refused the commit: it did not happen.
                Err(err @ sqlx::Error::Database(_)) => return Err(err),
                Err(err) => {
                    if !read_back(&self.context, &plan, now).await? {
                        // Not committed: applying the batch again is safe (and what
                        // committed meanwhile, if anything, is recognised by send id).
                        tracing::warn!(channel = %self.channel, error = %err, "a ledger commit was lost; applying the batch again");
                        continue;
                    }
                }
            }
            pool.committed();
            if self.context.db.backend() == Backend::Postgres {
                self.cached = Some(pool);
            }
            return Ok(plan.results);
        }
        Err(sqlx::Error::Protocol(format!(
            "{INCONSISTENCY}the batch kept meeting changes it did not expect"
        )))
    }
}

/// What the database revealed that the plan did not know.
#[derive(Debug, Default)]
struct Knowledge {
    /// Sends that were settled already (by the sweeper, or an earlier attempt).
    settled_elsewhere: HashSet<String>,
    /// Send ids recorded by an earlier attempt of this very batch, with the allocation
    /// they hold.
    recorded: HashMap<String, (Allocation, i64)>,
    /// Idempotency keys already used by another send, by (client, key).
    used_keys: HashMap<(String, String), String>,
}

impl Knowledge {
    fn add(&mut self, learned: Knowledge) {
        self.settled_elsewhere.extend(learned.settled_elsewhere);
        self.recorded.extend(learned.recorded);
        self.used_keys.extend(learned.used_keys);
    }
}

enum Learned {
    Nothing,
    Something(Knowledge),
}

/// One settlement to write: the send's outcome and what it was charged.
struct Claim {
    send_id: String,
    settlement: Settlement,
    charged_units: i64,
    cost: Yuan,
}

/// One ledger entry: units of a package (or of none: observe mode's unmetered units)
/// charged to a send.
struct Entry {
    package_id: Option<i64>,
    send_id: String,
    client: String,
    units: i64,
    cost: Yuan,
}

/// One reservation's send row.
struct NewSend<'a> {
    request: &'a ReserveRequest,
    allocation: Allocation,
    unmetered: i64,
}

/// A batch laid out in memory, assuming what the knowledge says.
struct Plan<'a> {
    results: Vec<OpResult>,
    claims: Vec<Claim>,
    /// Settlements whose units are not reserved in memory: they must find their send
    /// settled already, or the ledger is inconsistent.
    unbacked: Vec<(String, String)>,
    entries: Vec<Entry>,
    new_sends: Vec<NewSend<'a>>,
    aggregates: Aggregates,
    /// Some reservation was refused for want of units.
    refused_for_quota: bool,
    /// Some reservation takes an idempotency key over from an earlier attempt.
    hands_over_keys: bool,
}

fn not_applied() -> OpResult {
    OpResult::Settle(Settled {
        applied: false,
        charged_units: 0,
        cost: Yuan::ZERO,
        remaining: 0,
    })
}

/// Lays the batch out: settlements first (so units they release can serve the
/// reservations of the same batch), then reservations in arrival order.
fn plan<'a>(
    context: &Context,
    channel: &ChannelName,
    ops: &'a [Op],
    pool: &mut LockedPool,
    knowledge: &Knowledge,
    now: DateTime<Utc>,
) -> Plan<'a> {
    let mut results: Vec<Option<OpResult>> = ops.iter().map(|_| None).collect();
    let mut plan = Plan {
        results: Vec::new(),
        claims: Vec::new(),
        unbacked: Vec::new(),
        entries: Vec::new(),
        new_sends: Vec::new(),
        aggregates: Aggregates::new(channel.clone(), context.timezone),
        refused_for_quota: false,
        hands_over_keys: false,
    };

    let mut seen = HashSet::new();
    let mut settled_indexes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Op::Settle(reservation, settlement) = op else {
            continue;
        };
        // Only the first of two settlements of one send in a batch can apply; a send
        // known to be settled already is answered without a claim.
        if knowledge.settled_elsewhere.contains(&reservation.send_id)
            || !seen.insert(reservation.send_id.as_str())
        {
            results[i] = Some(not_applied());
            continue;
        }
        let applied = if settlement.charge {
            pool.charge(&reservation.allocation)
        } else {
            pool.release(&reservation.allocation).map(|()| Vec::new())
        };
        let parts = match applied {
            Ok(parts) => parts,
            Err(problem) => {
                plan.unbacked.push((reservation.send_id.clone(), problem));
                results[i] = Some(not_applied());
                continue;
            }
        };
        let (charged_units, cost) = if settlement.charge {
            (
                reservation.allocation.units() + reservation.unmetered,
                parts.iter().map(|p| p.cost).sum(),
            )
        } else {
            (0, Yuan::ZERO)
        };
        if settlement.charge {
            for part in &parts {
                plan.entries.push(Entry {
                    package_id: Some(part.package_id),
                    send_id: reservation.send_id.clone(),
                    client: reservation.client.clone(),
                    units: part.units,
                    cost: part.cost,
                });
            }
            if reservation.unmetered > 0 {
                plan.entries.push(Entry {
                    package_id: None,
                    send_id: reservation.send_id.clone(),
                    client: reservation.client.clone(),
                    units: reservation.unmetered,
                    cost: Yuan::ZERO,
                });
                plan.aggregates.totals.unmetered_units += reservation.unmetered;
            }
        }
        plan.aggregates.totals.reserved_units -= reservation.allocation.units();
        plan.aggregates.settled(
            now,
            bucket_key(
                &reservation.client,
                reservation.class,
                reservation.route.as_ref(),
            ),
            settlement.outcome,
            charged_units,
            cost.micros(),
        );
        if let Some(count) = settlement.upstream.package_remaining {
            plan.aggregates.totals.vendor_remaining = Some((count, now));
        }
        plan.claims.push(Claim {
            send_id: reservation.send_id.clone(),
            settlement: settlement.clone(),
            charged_units,
            cost,
        });
        settled_indexes.push(i);
        results[i] = Some(OpResult::Settle(Settled {
            applied: true,
            charged_units,
            cost,
            remaining: 0,
        }));
    }
    let remaining = pool.remaining();
    for i in settled_indexes {
        if let Some(OpResult::Settle(settled)) = &mut results[i] {
            settled.remaining = remaining;
        }
    }

    let mut used_keys = knowledge.used_keys.clone();
    for (i, op) in ops.iter().enumerate() {
        let Op::Reserve(request) = op else {
            continue;
        };
        if let Some((allocation, unmetered)) = knowledge.recorded.get(&request.send_id) {
            // An earlier attempt of this batch committed after all: that reservation,
            // with its units as the packages already count them, is this one.
            results[i] = Some(OpResult::Reserve(ReserveOutcome::Reserved(reservation_of(
                request,
                channel,
                allocation.clone(),
                *unmetered,
                pool.remaining(),
            ))));
            continue;
        }
        let key = request
            .idempotency
            .as_ref()
            .map(|idem| (request.client.clone(), idem.key().to_owned()));
        // The key held by the earlier attempt this one takes it over from is free for it.
        let held_elsewhere = key
            .as_ref()
            .and_then(|key| used_keys.get(key))
            .filter(|holder| request.takes_key_from.as_ref() != Some(*holder));
        if let Some(existing_id) = held_elsewhere {
            results[i] = Some(OpResult::Reserve(ReserveOutcome::Duplicate {
                existing_id: existing_id.clone(),
            }));
            continue;
        }
        let wanted = request.units.as_i64();
        let allocation = pool.take(wanted);
        let short = wanted - allocation.units();
        if short > 0 {
            plan.refused_for_quota = true;
            if context.mode == LedgerMode::Enforce {
                pool.release(&allocation)
                    .expect("units just taken are reserved and can be released");
                results[i] = Some(OpResult::Reserve(ReserveOutcome::QuotaExhausted {
                    remaining: pool.remaining(),
                }));
                continue;
            }
        }
        // The priority reserve: decided here, with the rows locked (or checked by the
        // optimistic statement), like every other quota rule.
        if context.mode == LedgerMode::Enforce {
            if let Some(rule) = context.reserves.get(channel) {
                if !rule.admits(request.class, pool.remaining(), pool.pool_units()) {
                    pool.release(&allocation)
                        .expect("units just taken are reserved and can be released");
                    plan.refused_for_quota = true;
                    results[i] = Some(OpResult::Reserve(ReserveOutcome::QuotaReserved {
                        remaining: pool.remaining(),
                    }));
                    continue;
                }
            }
        }
        // Only a planned reservation claims its key: a request refused for quota leaves
        // it free for a later request of the batch.
        if let Some(key) = key {
            used_keys.insert(key, request.send_id.clone());
        }
        if request.takes_key_from.is_some() && request.idempotency.is_some() {
            plan.hands_over_keys = true;
        }
        plan.aggregates.totals.reserved_units += allocation.units();
        results[i] = Some(OpResult::Reserve(ReserveOutcome::Reserved(reservation_of(
            request,
            channel,
            allocation.clone(),
            short,
            pool.remaining(),
        ))));
        plan.new_sends.push(NewSend {
            request,
            allocation,
            unmetered: short,
        });
    }
    plan.results = results
        .into_iter()
        .map(|result| result.expect("every operation of the batch has a result"))
        .collect();
    plan
}

fn reservation_of(
    request: &ReserveRequest,
    channel: &ChannelName,
    allocation: Allocation,
    unmetered: i64,
    remaining: i64,
) -> Reservation {
    Reservation {
        send_id: request.send_id.clone(),
        channel: channel.clone(),
        client: request.client.clone(),
        units: request.units,
        class: request.class,
        route: request.route.clone(),
        allocation,
        unmetered,
        remaining,
    }
}

fn bucket_key(client: &str, class: SendClass, route: Option<&RouteName>) -> BucketKey {
    BucketKey {
        client: client.to_owned(),
        class: class.as_str().to_owned(),
        route: route.map(|r| r.as_str().to_owned()).unwrap_or_default(),
    }
}

/// Writes a plan inside a transaction holding the package rows; returns what the
/// database revealed if the plan does not hold (the caller rolls back and plans again).
async fn write_locked(
    tx: &mut Transaction,
    context: &Context,
    channel: &ChannelName,
    plan: &Plan<'_>,
    pool: &LockedPool,
    now: DateTime<Utc>,
) -> Result<Learned, sqlx::Error> {
    let at = to_micros(now);
    // Claims, with unbacked settlements claimed too: each must be settled already.
    let mut claimable: Vec<&str> = plan.claims.iter().map(|c| c.send_id.as_str()).collect();
    claimable.extend(plan.unbacked.iter().map(|(id, _)| id.as_str()));
    if !claimable.is_empty() {
        let claimed = claim(tx, plan, at).await?;
        for (send_id, problem) in &plan.unbacked {
            if claimed.contains(send_id) {
                // A send still reserved must hold its units: fail the batch (nothing
                // is written) rather than guess.
                tracing::error!(%send_id, %problem, "cannot settle reservation");
                return Err(sqlx::Error::Protocol(format!("{INCONSISTENCY}{problem}")));
            }
        }
        let missing: HashSet<String> = plan
            .claims
            .iter()
            .filter(|c| !claimed.contains(&c.send_id))
            .map(|c| c.send_id.clone())
            .collect();
        if !missing.is_empty() {
            return Ok(Learned::Something(Knowledge {
                settled_elsewhere: missing,
                ..Knowledge::default()
            }));
        }
    }
    insert_entries(tx, channel, &plan.entries, at).await?;
    hand_over_keys(tx, &plan.new_sends).await?;
    if !plan.new_sends.is_empty() {
        let inserted = insert_sends(tx, context, channel, &plan.new_sends, at).await?;
        let conflicted: Vec<&NewSend> = plan
            .new_sends
            .iter()
            .filter(|s| !inserted.contains(&s.request.send_id))
            .collect();
        if !conflicted.is_empty() {
            return Ok(Learned::Something(why_not_inserted(tx, &conflicted).await?));
        }
    }
    pool.write_back(tx).await?;
    plan.aggregates.write(tx).await?;
    Ok(Learned::Nothing)
}

/// Takes idempotency keys off the earlier attempts that held them, so that the new
/// reservations can take them in the same transaction. Only the named attempt's own
/// key is cleared: nothing else can lose one.
async fn hand_over_keys(tx: &mut Transaction, sends: &[NewSend<'_>]) -> Result<(), sqlx::Error> {
    for send in sends {
        let request = send.request;
        let (Some(from), Some(idem)) = (&request.takes_key_from, &request.idempotency) else {
            continue;
        };
        sqlx::query(
            "UPDATE sends SET idempotency_key = NULL              WHERE id = $1 AND client = $2 AND idempotency_key = $3",
        )
        .bind(from)
        .bind(&request.client)
        .bind(idem.key())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The claim: one statement moving every planned settlement's send out of `reserved`,
/// returning the ids it moved.
async fn claim(
    tx: &mut Transaction,
    plan: &Plan<'_>,
    at: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let rows = plan.claims.len() + plan.unbacked.len();
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
        placeholders(rows, 11, 2)
    );
    let mut claim = sqlx::query(&sql).bind(at);
    for c in &plan.claims {
        let upstream = &c.settlement.upstream;
        claim = claim
            .bind(&c.send_id)
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
    // An unbacked settlement is claimed as an upstream error with nothing charged: it
    // is only ever written if the batch then fails as inconsistent, which rolls it back.
    for (send_id, _) in &plan.unbacked {
        claim = claim
            .bind(send_id)
            .bind(Outcome::UpstreamError.as_str())
            .bind(None::<i64>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<i64>)
            .bind(0_i64)
            .bind(None::<i64>)
            .bind(0_i64)
            .bind(0_i64);
    }
    claim
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect()
}

async fn insert_entries(
    tx: &mut Transaction,
    channel: &ChannelName,
    entries: &[Entry],
    at: i64,
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO ledger_entries (channel, package_id, send_id, client, units, \
         cost_micros, created_at) VALUES {}",
        placeholders(entries.len(), 7, 1)
    );
    let mut insert = sqlx::query(&sql);
    for entry in entries {
        insert = insert
            .bind(channel.as_str())
            .bind(entry.package_id)
            .bind(&entry.send_id)
            .bind(&entry.client)
            .bind(entry.units)
            .bind(entry.cost.micros())
            .bind(at);
    }
    insert.execute(&mut **tx).await?;
    Ok(())
}

/// Inserts the reservations' send rows; the unique indexes are the final word (an
/// idempotency key used meanwhile by another channel's writer or another instance, or
/// a send id an earlier attempt recorded): conflicting rows are skipped and left out of
/// the ids returned.
async fn insert_sends(
    tx: &mut Transaction,
    context: &Context,
    channel: &ChannelName,
    sends: &[NewSend<'_>],
    at: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO sends (id, channel, client, idempotency_key, request_hash, \
         mobile_masked, mobile_full, units, allocation, unmetered_units, status, created_at, \
         class, route, instance, attempts) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        placeholders(sends.len(), 16, 1)
    );
    let mut insert = sqlx::query(&sql);
    for send in sends {
        let request = send.request;
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
            .bind(send.allocation.to_string())
            .bind(send.unmetered)
            .bind("reserved")
            .bind(at)
            .bind(request.class.as_str())
            .bind(request.route.as_ref().map(RouteName::as_str).unwrap_or(""))
            .bind(&context.instance)
            .bind(Attempt::to_stored(&request.attempts));
    }
    insert
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect()
}

/// Why reservations were not inserted: their send id is already recorded (an earlier
/// attempt of this batch committed), or their idempotency key is taken.
async fn why_not_inserted(
    tx: &mut Transaction,
    conflicted: &[&NewSend<'_>],
) -> Result<Knowledge, sqlx::Error> {
    let mut knowledge = Knowledge::default();
    for send in conflicted {
        let request = send.request;
        let own = sqlx::query("SELECT allocation, unmetered_units FROM sends WHERE id = $1")
            .bind(&request.send_id)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = own {
            let stored: String = row.try_get("allocation")?;
            let allocation: Allocation = stored
                .parse()
                .map_err(|e| sqlx::Error::Protocol(format!("{INCONSISTENCY}{e}")))?;
            knowledge.recorded.insert(
                request.send_id.clone(),
                (allocation, row.try_get("unmetered_units")?),
            );
            continue;
        }
        let Some(idem) = &request.idempotency else {
            return Err(sqlx::Error::Protocol(format!(
                "{INCONSISTENCY}send {} was neither inserted nor found",
                request.send_id
            )));
        };
        let existing =
            sqlx::query("SELECT id FROM sends WHERE client = $1 AND idempotency_key = $2")
                .bind(&request.client)
                .bind(idem.key())
                .fetch_one(&mut **tx)
                .await?;
        knowledge.used_keys.insert(
            (request.client.clone(), idem.key().to_owned()),
            existing.try_get("id")?,
        );
    }
    Ok(knowledge)
}

/// The whole plan as one PostgreSQL statement (its own transaction). Each part checks
/// what the plan assumed; `tollgate_batch_conflict` aborts the statement if any check
/// fails. Returns `false` on such a conflict: nothing was written.
#[allow(clippy::too_many_arguments)]
async fn write_optimistic(
    context: &Context,
    channel: &ChannelName,
    plan: &Plan<'_>,
    pool: &LockedPool,
    checked: &[(i64, i64, i64)],
    live: usize,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let claims: Vec<Value> = plan
        .claims
        .iter()
        .map(|c| {
            let u = &c.settlement.upstream;
            json!({
                "id": c.send_id,
                "status": c.settlement.outcome.as_str(),
                "upstream_status": u.status,
                "request_id": u.request_id,
                "task_id": u.task_id,
                "message": u.message,
                "latency_ms": u.latency_ms,
                "flag": i64::from(c.settlement.outcome == Outcome::Uncertain),
                "remain_point": u.remain_point,
                "units": c.charged_units,
                "cost": c.cost.micros(),
            })
        })
        .collect();
    let entries: Vec<Value> = plan
        .entries
        .iter()
        .map(|e| {
            json!({
                "package_id": e.package_id,
                "send_id": e.send_id,
                "client": e.client,
                "units": e.units,
                "cost": e.cost.micros(),
            })
        })
        .collect();
    let sends: Vec<Value> = plan
        .new_sends
        .iter()
        .map(|s| {
            let r = s.request;
            json!({
                "id": r.send_id,
                "client": r.client,
                "idempotency_key": r.idempotency.as_ref().map(IdempotencyKey::key),
                "request_hash": r.idempotency.as_ref().map(IdempotencyKey::request_hash),
                "mobile_masked": r.mobile_masked,
                "mobile_full": r.mobile_full,
                "units": r.units.as_i64(),
                "allocation": s.allocation.to_string(),
                "unmetered": s.unmetered,
                "class": r.class.as_str(),
                "route": r.route.as_ref().map(RouteName::as_str).unwrap_or(""),
                "attempts": Attempt::to_stored(&r.attempts),
            })
        })
        .collect();
    let moves: Vec<Value> = pool
        .moves()
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "stored_taken": m.stored_taken,
                "stored_charged": m.stored_charged,
                "taken": m.taken,
                "charged": m.charged,
            })
        })
        .collect();
    let known: Vec<Value> = checked
        .iter()
        .map(|(id, taken, charged)| json!({ "id": id, "taken": taken, "charged": charged }))
        .collect();
    let totals = &plan.aggregates.totals;
    let (vendor_remaining, vendor_remaining_at) = match totals.vendor_remaining {
        Some((count, at)) => (Some(count), Some(to_micros(at))),
        None => (None, None),
    };
    let row = sqlx::query(OPTIMISTIC_BATCH)
        .bind(to_micros(now))
        .bind(channel.as_str())
        .bind(&context.instance)
        .bind(Value::Array(claims).to_string())
        .bind(Value::Array(entries).to_string())
        .bind(Value::Array(sends).to_string())
        .bind(Value::Array(moves).to_string())
        .bind(Value::Array(known).to_string())
        .bind(i64::try_from(live).unwrap_or(i64::MAX))
        .bind(totals.billed_units)
        .bind(totals.cost_micros)
        .bind(totals.reserved_units)
        .bind(totals.unmetered_units)
        .bind(totals.auth_failing.map(i64::from))
        .bind(vendor_remaining)
        .bind(vendor_remaining_at)
        .bind(plan.aggregates.buckets_json().to_string())
        .fetch_one(context.db.pool())
        .await;
    match row {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some(CONFLICT_SQLSTATE) => {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// What `tollgate_batch_conflict` raises (see the migration that defines it).
const CONFLICT_SQLSTATE: &str = "TG001";

/// The optimistic batch: every part of a plan in one statement. `$1` now, `$2` the
/// channel, `$3` the instance, `$4`–`$8` the claims, entries, new sends, package moves
/// and the counters of every package the plan read (JSON arrays), `$9` how many live
/// packages the plan knew, `$10`–`$16` the changes to the channel's totals, `$17` the
/// usage buckets. Data-modifying parts of a `WITH` always run to completion; the final
/// `SELECT` compares what they did with what the plan expected and raises if it
/// differs, which undoes the whole statement.
const OPTIMISTIC_BATCH: &str = r#"
WITH claims AS (
    UPDATE sends s SET status = c.status, upstream_status = c.upstream_status,
        upstream_request_id = c.request_id, upstream_task_id = c.task_id,
        upstream_message = c.message, latency_ms = c.latency_ms,
        needs_reconciliation = c.flag, upstream_remain_point = c.remain_point,
        charged_units = c.units, cost_micros = c.cost, settled_at = $1
    FROM jsonb_to_recordset($4::jsonb) AS c(id text, status text, upstream_status bigint,
        request_id text, task_id text, message text, latency_ms bigint, flag bigint,
        remain_point bigint, units bigint, cost bigint)
    WHERE s.id = c.id AND s.status = 'reserved'
    RETURNING s.id
), entries AS (
    INSERT INTO ledger_entries (channel, package_id, send_id, client, units, cost_micros, created_at)
    SELECT $2, e.package_id, e.send_id, e.client, e.units, e.cost, $1
    FROM jsonb_to_recordset($5::jsonb) AS e(package_id bigint, send_id text, client text,
        units bigint, cost bigint)
    RETURNING 1
), reserved AS (
    INSERT INTO sends (id, channel, client, idempotency_key, request_hash, mobile_masked,
        mobile_full, units, allocation, unmetered_units, status, created_at, class, route, instance,
        attempts)
    SELECT r.id, $2, r.client, r.idempotency_key, r.request_hash, r.mobile_masked,
        r.mobile_full, r.units, r.allocation, r.unmetered, 'reserved', $1, r.class, r.route, $3,
        r.attempts
    FROM jsonb_to_recordset($6::jsonb) AS r(id text, client text, idempotency_key text,
        request_hash text, mobile_masked text, mobile_full text, units bigint,
        allocation text, unmetered bigint, class text, route text, attempts text)
    ON CONFLICT DO NOTHING
    RETURNING id
), moved AS (
    UPDATE packages p SET taken = m.taken, charged = m.charged
    FROM jsonb_to_recordset($7::jsonb) AS m(id bigint, stored_taken bigint,
        stored_charged bigint, taken bigint, charged bigint)
    WHERE p.id = m.id AND p.taken = m.stored_taken AND p.charged = m.stored_charged
    RETURNING p.id
), totals AS (
    INSERT INTO channel_totals (channel, billed_units, cost_micros, reserved_units,
        unmetered_units, auth_failing, vendor_remaining, vendor_remaining_at)
    VALUES ($2, $10, $11, $12, $13, COALESCE($14, 0), $15, $16)
    ON CONFLICT (channel) DO UPDATE SET
        billed_units = channel_totals.billed_units + excluded.billed_units,
        cost_micros = channel_totals.cost_micros + excluded.cost_micros,
        reserved_units = channel_totals.reserved_units + excluded.reserved_units,
        unmetered_units = channel_totals.unmetered_units + excluded.unmetered_units,
        auth_failing = COALESCE($14, channel_totals.auth_failing),
        vendor_remaining = COALESCE($15, channel_totals.vendor_remaining),
        vendor_remaining_at = COALESCE($16, channel_totals.vendor_remaining_at)
    RETURNING 1
), buckets AS (
    INSERT INTO usage_buckets (span, channel, bucket_start, client, class, route, sends,
        sent, failed, uncertain, billed_units, cost_micros, adjusted_units, adjusted_cost_micros)
    SELECT b.span, $2, b.bucket_start, b.client, b.class, b.route, b.sends, b.sent,
        b.failed, b.uncertain, b.billed_units, b.cost_micros, 0, 0
    FROM jsonb_to_recordset($17::jsonb) AS b(span text, bucket_start bigint, client text,
        class text, route text, sends bigint, sent bigint, failed bigint, uncertain bigint,
        billed_units bigint, cost_micros bigint)
    ON CONFLICT (span, channel, bucket_start, client, class, route) DO UPDATE SET
        sends = usage_buckets.sends + excluded.sends,
        sent = usage_buckets.sent + excluded.sent,
        failed = usage_buckets.failed + excluded.failed,
        uncertain = usage_buckets.uncertain + excluded.uncertain,
        billed_units = usage_buckets.billed_units + excluded.billed_units,
        cost_micros = usage_buckets.cost_micros + excluded.cost_micros
    RETURNING 1
)
SELECT tollgate_batch_conflict(
    (SELECT count(*) FROM claims) = jsonb_array_length($4::jsonb)
    AND (SELECT count(*) FROM reserved) = jsonb_array_length($6::jsonb)
    AND (SELECT count(*) FROM moved) = jsonb_array_length($7::jsonb)
    AND (SELECT count(*) FROM packages p
         JOIN jsonb_to_recordset($8::jsonb) AS k(id bigint, taken bigint, charged bigint)
         ON p.id = k.id AND p.taken = k.taken AND p.charged = k.charged)
        = jsonb_array_length($8::jsonb)
    AND (SELECT count(*) FROM packages WHERE channel = $2 AND charged < units
         AND (expires_at IS NULL OR expires_at > $1)) = $9
) AS ok
"#;

/// After a write whose outcome is unknown: whether the batch committed. The batch is
/// one transaction, so one of its rows tells: a reservation's send row exists, or a
/// settlement's send carries this batch's settlement time and outcome.
async fn read_back(
    context: &Context,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let probe = plan
        .new_sends
        .first()
        .map(|s| (s.request.send_id.clone(), None))
        .or_else(|| {
            plan.claims
                .first()
                .map(|c| (c.send_id.clone(), Some(c.settlement.outcome)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    /// A ledger in observe mode (a reservation needs no package) on a migrated SQLite
    /// database of its own, removed with the directory.
    async fn ledger() -> (Ledger, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = crate::secret::Secret::new(format!(
            "sqlite://{}",
            dir.path().join("ledger.db").display()
        ));
        let db = Db::connect(&url, 2).await.expect("open sqlite");
        db.migrate().await.expect("migrate sqlite");
        (Ledger::new(db, LedgerMode::Observe), dir)
    }

    fn channel() -> ChannelName {
        ChannelName::parse("sms").unwrap()
    }

    fn request(send_id: &str) -> ReserveRequest {
        ReserveRequest {
            send_id: send_id.to_owned(),
            client: "shop".to_owned(),
            units: Units::new(1).unwrap(),
            class: SendClass::Normal,
            route: None,
            idempotency: None,
            mobile_masked: "138****8000".to_owned(),
            mobile_full: None,
            attempts: Vec::new(),
            takes_key_from: None,
        }
    }

    /// Makes the test the channel's writer task: it holds the receiving end of a queue
    /// of `capacity`, reading it or dropping it (the task died) as the test needs.
    fn writer_played_by_the_test(ledger: &Ledger, capacity: usize) -> mpsc::Receiver<Queued> {
        let (queue, receiver) = mpsc::channel(capacity);
        ledger
            .inner
            .writers
            .lock()
            .unwrap()
            .insert(channel(), WriterHandle { queue });
        receiver
    }

    /// Polls `future` once: `Some` if it answered without waiting for anything.
    fn first_poll<F: std::future::Future>(future: F) -> Option<F::Output> {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(std::pin::pin!(future), &mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_full_writer_queue_refuses_an_operation_as_busy_at_once() {
        let (ledger, _dir) = ledger().await;
        let _stuck_writer = writer_played_by_the_test(&ledger, 1);
        ledger
            .writer(&channel())
            .queue
            .try_send((Op::Reserve(request("first")), None))
            .expect("the queue has room for one");

        let answered = first_poll(ledger.reserve(&channel(), request("second")))
            .expect("a full queue answers at once");

        assert!(matches!(answered, Err(LedgerError::Busy)), "{answered:?}");
        assert!(!ledger.is_in_flight("second"));
    }

    #[tokio::test]
    async fn a_stuck_writer_refuses_an_operation_as_busy_after_the_answer_timeout() {
        let (ledger, _dir) = ledger().await;
        let mut stuck_writer = writer_played_by_the_test(&ledger, 8);
        // Paused after the database is open: the clock moves only when every task
        // waits, straight to the next timer.
        tokio::time::pause();

        let answered = tokio::time::timeout(
            ANSWER_TIMEOUT * 2,
            ledger.reserve(&channel(), request("waits")),
        )
        .await
        .expect("an operation never waits past its answer timeout");

        assert!(matches!(answered, Err(LedgerError::Busy)), "{answered:?}");
        assert!(
            matches!(stuck_writer.try_recv(), Ok((Op::Reserve(_), Some(_)))),
            "the operation reached the writer, which never answered"
        );
    }

    #[tokio::test]
    async fn a_writer_whose_task_ended_is_started_again_and_the_next_reservation_succeeds() {
        let (ledger, _dir) = ledger().await;
        let dying_writer = writer_played_by_the_test(&ledger, 8);
        let sms = channel();
        let mut waiting = std::pin::pin!(ledger.reserve(&sms, request("queued")));
        assert!(
            first_poll(waiting.as_mut()).is_none(),
            "the reservation is queued"
        );

        // The task ends (as a panic ends it) with the reservation in its queue.
        drop(dying_writer);

        assert!(matches!(waiting.await, Err(LedgerError::WriterStopped)));
        let outcome = ledger
            .reserve(&channel(), request("next"))
            .await
            .expect("a new writer answers");
        let ReserveOutcome::Reserved(reservation) = outcome else {
            panic!("observe mode reserves without packages: {outcome:?}");
        };
        assert_eq!(reservation.send_id, "next");
        assert!(!ledger.writer(&channel()).is_stopped());
    }
}
