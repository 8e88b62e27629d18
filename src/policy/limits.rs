//! Traffic limits (SPEC §12): per mobile number or per client, checked before a send is
//! reserved, so that a send over a limit is refused before it costs anything.
//!
//! Each limit and subject (a client's name, or a keyed hash of a mobile number) has one
//! row in `traffic_windows`, holding its [`Window`]. Every instance on a database counts
//! in the same rows, under their row locks, so several instances see one count. The
//! checks of this process are applied in batches by one task: a batch locks the rows it
//! needs (in key order, so that two instances' batches cannot deadlock), decides every
//! send in it in arrival order, writes the windows back and commits once, which keeps
//! the cost to one transaction per batch rather than per send.
//!
//! A send is counted when it is admitted. When it is then not charged (refused by the
//! quota, or the vendor failed without delivering it), its count is taken back: a user
//! whose code did not go out may ask again at once. A `max_cost` limit is a budget: a
//! client's sends are admitted while what it was charged in the window is below the
//! budget, and each send's cost is added once it is settled, since only then is the
//! cost known.
//!
//! Every send waits for this task before it is reserved, so the task must never make a
//! send wait without bound. Guarantees, and what gives them (as the ledger writer's):
//! - *A full queue answers at once*: the queue is bounded ([`QUEUE_CAPACITY`]) and a
//!   check is handed over with `try_send`; when it is full the check is refused as busy
//!   (503 `unavailable` with `Retry-After`, nothing charged, the vendor not called)
//!   instead of piling requests up in memory.
//! - *A stuck task answers in bounded time*: every statement of a batch is bounded by
//!   the connection's `statement_timeout` and `lock_timeout`, and a check waits at most
//!   [`ANSWER_TIMEOUT`] for its answer; past it the send is refused as busy as well.
//! - *A dead task is started again*: the task ends only when it panics, and the next
//!   operation that finds its queue closed starts a new one (`Limits::batcher`), so one
//!   panic costs the checks that were waiting (answered busy), not every later send.
//! - *A check whose caller gave up counts nothing*: when the caller stopped waiting
//!   before its admission was answered, the task takes the counts back itself in its
//!   next batch, since that send was never made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::window::{slot_micros, slots_in, Window};
use crate::config::alerts::ChannelSelector;
use crate::config::{LimitMax, LimitScope, LimitSettings};
use crate::domain::mobile::Mobile;
use crate::domain::{ChannelName, HashKey, SendClass, Yuan};
use crate::ledger::LedgerError;
use crate::store::{placeholders, Db};

/// Operations per batch.
const MAX_BATCH: usize = 128;
/// Rows per statement (four parameters each; well inside every backend's limit).
const ROWS_PER_STATEMENT: usize = 500;
/// Operations waiting for the batch task before a check is refused as busy.
const QUEUE_CAPACITY: usize = 8_192;
/// How long a check waits for the batch task's answer. Longer than a batch can take
/// while the database answers (its statements are bounded by `statement_timeout` and
/// `lock_timeout`), so reaching it means the database or the task is stuck: the send is
/// then refused as busy rather than held. The ledger writer waits as long.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a batch that met a deadlock or a serialization failure is tried again.
const ATTEMPTS: usize = 3;
/// What a keyed hash of a number is made for (so it matches no other hash of it).
const MOBILE_PURPOSE: &str = "traffic-limit-mobile";

/// The traffic limits of an installation. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Vec<Arc<LimitSettings>>,
    hash_key: HashKey,
    db: Db,
    /// The bounded queue of the batch task. Replaced, with a new task, when the task
    /// has ended (see `Limits::batcher`).
    queue: Mutex<mpsc::Sender<Op>>,
}

/// The send a check is about.
#[derive(Debug, Clone, Copy)]
pub struct SendFacts<'a> {
    pub channel: &'a ChannelName,
    pub class: SendClass,
    pub mobile: &'a Mobile,
    pub client: &'a str,
    pub units: u32,
}

/// A send over a limit: which one, and how long until it would fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    pub limit: String,
    /// What the limit allows, in words ([`LimitSettings::rule`]).
    pub rule: String,
    pub retry_after: Duration,
    /// Whether every limit the send is over names its channels: another channel (of a
    /// route) may then take the send.
    pub channel_specific: bool,
}

/// What an admitted send added to its limits' counts, to take back if it is not charged
/// and to add its cost to once it is.
#[derive(Debug, Default)]
#[must_use = "an admission is released or charged once the send is settled"]
pub struct Admission {
    counted: Vec<Counted>,
}

#[derive(Debug, Clone)]
struct Counted {
    key: Key,
    window: Duration,
    /// The slot the send's count went to, and how much it added (0 for a budget).
    slot: i64,
    amount: u64,
    budget: bool,
}

impl Admission {
    /// Whether any limit counted the send.
    pub fn is_empty(&self) -> bool {
        self.counted.is_empty()
    }
}

/// One row of `traffic_windows`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    limit: Arc<str>,
    subject: Arc<str>,
}

/// One limit a send is checked against.
#[derive(Debug, Clone)]
struct Check {
    key: Key,
    limit: Arc<LimitSettings>,
    max: u64,
    /// What must fit under `max` now (a budget needs room for one micro-yuan more).
    need: u64,
    /// What the send adds now (a budget adds the cost at settlement).
    add: u64,
    budget: bool,
}

/// What a check is answered: admitted, over a limit, or not decided (busy, database).
type Answer = Result<Result<Admission, RateLimited>, LedgerError>;

enum Op {
    Admit {
        checks: Vec<Check>,
        reply: oneshot::Sender<Answer>,
    },
    /// Takes back counts of a send that was not charged.
    Release(Vec<Counted>),
    /// Adds a settled send's cost to its budgets.
    Spend { counted: Vec<Counted>, micros: u64 },
}

impl Op {
    fn keys(&self) -> Box<dyn Iterator<Item = (&Key, Duration)> + '_> {
        match self {
            Op::Admit { checks, .. } => Box::new(checks.iter().map(|c| (&c.key, c.limit.window))),
            Op::Release(counted) | Op::Spend { counted, .. } => {
                Box::new(counted.iter().map(|c| (&c.key, c.window)))
            }
        }
    }
}

impl Limits {
    /// Starts the batch task; `limits` are the effective limits (configured and built-in).
    pub fn new(db: Db, limits: Vec<LimitSettings>, hash_key: HashKey) -> Self {
        let queue = spawn_batcher(db.clone());
        Self {
            inner: Arc::new(Inner {
                limits: limits.into_iter().map(Arc::new).collect(),
                hash_key,
                db,
                queue: Mutex::new(queue),
            }),
        }
    }

    /// The limits checked.
    pub fn limits(&self) -> impl Iterator<Item = &LimitSettings> {
        self.inner.limits.iter().map(|l| l.as_ref())
    }

    /// Checks a send against every limit that covers it and, when it fits them all,
    /// counts it in each. `Ok(Err(_))` is a send over a limit: nothing was counted.
    pub async fn admit(
        &self,
        send: SendFacts<'_>,
    ) -> Result<Result<Admission, RateLimited>, LedgerError> {
        let checks = self.checks(send);
        if checks.is_empty() {
            return Ok(Ok(Admission::default()));
        }
        let (reply, answer) = oneshot::channel();
        // Bounded queue: a full queue refuses the check at once. A closed one (the task
        // died between `batcher()` and here) is busy too: the next check starts it again.
        self.batcher()
            .try_send(Op::Admit { checks, reply })
            .map_err(|_| LedgerError::Busy)?;
        // Bounded wait: a stuck task (or database) refuses the check after
        // ANSWER_TIMEOUT, and the task takes back what it counts for it. A reply dropped
        // unanswered means the task died with the check queued: busy as well, and the
        // next operation starts the task again.
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => Err(LedgerError::Busy),
        }
    }

    /// Takes back what `admission` counted: the send was not charged.
    pub fn release(&self, admission: Admission) {
        let counted: Vec<Counted> = admission
            .counted
            .into_iter()
            .filter(|c| c.amount > 0)
            .collect();
        if !counted.is_empty() && self.batcher().try_send(Op::Release(counted)).is_err() {
            tracing::warn!("the traffic limits are busy: an uncharged send stays counted");
        }
    }

    /// The send was charged `cost`: adds it to the budgets (`max_cost`) it counts in.
    pub fn charged(&self, admission: Admission, cost: Yuan) {
        let counted: Vec<Counted> = admission.counted.into_iter().filter(|c| c.budget).collect();
        let micros = u64::try_from(cost.micros()).unwrap_or(0);
        if counted.is_empty() || micros == 0 {
            return;
        }
        if self
            .batcher()
            .try_send(Op::Spend { counted, micros })
            .is_err()
        {
            tracing::warn!(
                "the traffic limits are busy: a charged send's cost is not counted in its budget"
            );
        }
    }

    /// Deletes the rows whose counts have all left their windows; returns how many.
    pub async fn housekeeping(&self) -> Result<u64, LedgerError> {
        let db = &self.inner.db;
        Ok(sqlx::query(&format!(
            "DELETE FROM traffic_windows WHERE expires_at <= {}",
            db.now_sql()
        ))
        .execute(db.pool())
        .await?
        .rows_affected())
    }

    /// The queue of the batch task, started again if it ended: the task ends only when
    /// it panicked, and one panic must not fail every later send's check (the restart
    /// of `Ledger::writer`). The lock is held only to look and replace, never across
    /// an await.
    fn batcher(&self) -> mpsc::Sender<Op> {
        let mut queue = self.inner.queue.lock().expect("limits queue lock poisoned");
        if queue.is_closed() {
            tracing::error!("the traffic limits' batch task stopped; starting it again");
            *queue = spawn_batcher(self.inner.db.clone());
        }
        queue.clone()
    }

    fn checks(&self, send: SendFacts<'_>) -> Vec<Check> {
        let mut mobile_subject: Option<Arc<str>> = None;
        let client_subject: Arc<str> = Arc::from(send.client);
        self.inner
            .limits
            .iter()
            .filter(|limit| limit.covers(send.channel, send.class))
            .map(|limit| {
                let subject = match limit.scope {
                    LimitScope::Client => client_subject.clone(),
                    LimitScope::Mobile => mobile_subject
                        .get_or_insert_with(|| {
                            Arc::from(
                                self.inner
                                    .hash_key
                                    .hash(MOBILE_PURPOSE, send.mobile.expose_national().as_bytes()),
                            )
                        })
                        .clone(),
                };
                let units = u64::from(send.units);
                let (max, need, add, budget) = match limit.max {
                    LimitMax::Sends(max) => (max, 1, 1, false),
                    LimitMax::Units(max) => (max, units, units, false),
                    LimitMax::Cost(max) => (u64::try_from(max.micros()).unwrap_or(0), 1, 0, true),
                };
                Check {
                    key: Key {
                        limit: Arc::from(limit.name.as_str()),
                        subject,
                    },
                    limit: limit.clone(),
                    max,
                    need,
                    add,
                    budget,
                }
            })
            .collect()
    }
}

/// Starts a batch task and returns its bounded queue. When the task ends (a panic
/// drops its receiver) the queue reports itself closed.
fn spawn_batcher(db: Db) -> mpsc::Sender<Op> {
    let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(run(db, receiver));
    queue
}

/// The batch task: takes what waits, up to [`MAX_BATCH`], and applies it in one
/// transaction. It returns only when every sender is gone.
async fn run(db: Db, mut receiver: mpsc::Receiver<Op>) {
    // Releases the task queued for itself (admissions whose caller gave up); they join
    // the next batch, which starts at once rather than waiting for a new operation.
    let mut own: Vec<Op> = Vec::new();
    loop {
        let mut ops = std::mem::take(&mut own);
        if ops.is_empty() {
            match receiver.recv().await {
                Some(first) => ops.push(first),
                None => return,
            }
        }
        while ops.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut attempt = 1;
        let decisions = loop {
            match apply(&db, &ops).await {
                Ok(decisions) => break Ok(decisions),
                Err(err) if attempt < ATTEMPTS && is_retryable(&err) => attempt += 1,
                Err(err) => break Err(LedgerError::from(err)),
            }
        };
        own = answer(ops, decisions);
    }
}

/// Sends each admission its answer; returns the releases of admissions whose caller
/// stopped waiting (it timed out or went away): they were counted for a send that was
/// never made.
fn answer(ops: Vec<Op>, decisions: Result<Vec<Decision>, LedgerError>) -> Vec<Op> {
    let mut abandoned = Vec::new();
    match decisions {
        Ok(decisions) => {
            let mut decisions = decisions.into_iter();
            for op in ops {
                if let Op::Admit { reply, .. } = op {
                    let decision = decisions
                        .next()
                        .expect("one decision per admission in the batch");
                    if let Err(Ok(Ok(admission))) = reply.send(Ok(decision)) {
                        let counted: Vec<Counted> = admission
                            .counted
                            .into_iter()
                            .filter(|c| c.amount > 0)
                            .collect();
                        if !counted.is_empty() {
                            abandoned.push(Op::Release(counted));
                        }
                    }
                }
            }
        }
        Err(err) => {
            for op in ops {
                match op {
                    Op::Admit { reply, .. } => {
                        let _ = reply.send(Err(err.clone()));
                    }
                    Op::Release(_) | Op::Spend { .. } => {
                        tracing::warn!(error = %err, "could not update the traffic limits' counts");
                    }
                }
            }
        }
    }
    abandoned
}

type Decision = Result<Admission, RateLimited>;

/// Locks and reads the windows the batch needs, decides its operations in order, and
/// writes the windows back, in one transaction.
async fn apply(db: &Db, ops: &[Op]) -> Result<Vec<Decision>, sqlx::Error> {
    let mut windows: BTreeMap<Key, (Duration, Window)> = BTreeMap::new();
    for op in ops {
        for (key, window) in op.keys() {
            windows
                .entry(key.clone())
                .or_insert_with(|| (window, Window::default()));
        }
    }
    let keys: Vec<Key> = windows.keys().cloned().collect();
    let mut tx = db.begin_write().await?;
    let mut now = None;
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // Inserting the rows that are missing and locking every one, in key order.
        let sql = format!(
            "INSERT INTO traffic_windows (limit_name, subject, slots, expires_at) VALUES {} \
             ON CONFLICT (limit_name, subject) DO UPDATE SET slots = traffic_windows.slots \
             RETURNING limit_name, subject, slots, {} AS now",
            placeholders(chunk.len(), 4, 1),
            db.now_sql()
        );
        let mut upsert = sqlx::query(&sql);
        for key in chunk {
            upsert = upsert
                .bind(key.limit.as_ref())
                .bind(key.subject.as_ref())
                .bind("")
                .bind(0_i64);
        }
        for row in upsert.fetch_all(&mut *tx).await? {
            let key = Key {
                limit: Arc::from(row.try_get::<String, _>("limit_name")?.as_str()),
                subject: Arc::from(row.try_get::<String, _>("subject")?.as_str()),
            };
            now.get_or_insert(row.try_get::<i64, _>("now")?);
            if let Some((_, window)) = windows.get_mut(&key) {
                *window = Window::parse(&row.try_get::<String, _>("slots")?);
            }
        }
    }
    let now = now.unwrap_or_default();
    for (window, slots) in windows.values_mut() {
        slots.prune(now, *window);
    }
    let decisions = decide(ops, &mut windows, now);
    let rows: Vec<(&Key, String, i64)> = windows
        .iter()
        .map(|(key, (window, slots))| (key, slots.to_stored(), expires_at(slots, *window, now)))
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE traffic_windows SET slots = v.slots, expires_at = v.expires_at \
             FROM (SELECT column1 AS limit_name, column2 AS subject, column3 AS slots, \
             column4 AS expires_at FROM (VALUES {}) AS t) AS v \
             WHERE traffic_windows.limit_name = v.limit_name \
             AND traffic_windows.subject = v.subject",
            placeholders(chunk.len(), 4, 1)
        );
        let mut update = sqlx::query(&sql);
        for (key, slots, expires) in chunk {
            update = update
                .bind(key.limit.as_ref())
                .bind(key.subject.as_ref())
                .bind(slots.as_str())
                .bind(*expires);
        }
        update.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(decisions)
}

/// Applies the batch's operations to the windows in arrival order; one decision per
/// admission.
fn decide(ops: &[Op], windows: &mut BTreeMap<Key, (Duration, Window)>, now: i64) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for op in ops {
        match op {
            Op::Admit { checks, .. } => {
                let over: Vec<RateLimited> = checks
                    .iter()
                    .filter_map(|check| {
                        let (window, slots) = &windows[&check.key];
                        (slots.total() + check.need > check.max).then(|| RateLimited {
                            limit: check.key.limit.to_string(),
                            rule: check.limit.rule(),
                            retry_after: slots.wait_until_fits(now, *window, check.max, check.need),
                            channel_specific: matches!(
                                check.limit.channels,
                                ChannelSelector::Named(_)
                            ),
                        })
                    })
                    .collect();
                let channel_specific = over.iter().all(|refusal| refusal.channel_specific);
                let over = over
                    .into_iter()
                    .max_by_key(|refusal| refusal.retry_after)
                    .map(|refusal| RateLimited {
                        channel_specific,
                        ..refusal
                    });
                decisions.push(match over {
                    Some(refusal) => Err(refusal),
                    None => Ok(Admission {
                        counted: checks
                            .iter()
                            .map(|check| {
                                let (window, slots) = windows
                                    .get_mut(&check.key)
                                    .expect("every key of the batch was read");
                                let slot = slots.add(now, *window, check.add);
                                Counted {
                                    key: check.key.clone(),
                                    window: *window,
                                    slot,
                                    amount: check.add,
                                    budget: check.budget,
                                }
                            })
                            .collect(),
                    }),
                });
            }
            Op::Release(counted) => {
                for c in counted {
                    if let Some((_, slots)) = windows.get_mut(&c.key) {
                        slots.remove(c.slot, c.amount);
                    }
                }
            }
            Op::Spend { counted, micros } => {
                for c in counted {
                    if let Some((window, slots)) = windows.get_mut(&c.key) {
                        slots.add(now, *window, *micros);
                    }
                }
            }
        }
    }
    decisions
}

/// When the last of a window's counts leaves it (now, when it holds none).
fn expires_at(slots: &Window, window: Duration, now: i64) -> i64 {
    let slot = slot_micros(window);
    slots.slots.last().map_or(now, |last| {
        (last.index + slots_in(window) + 1).saturating_mul(slot)
    })
}

/// A deadlock or serialization failure: the batch was rolled back and may be tried again.
fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(limit: &str) -> Key {
        Key {
            limit: Arc::from(limit),
            subject: Arc::from("s"),
        }
    }

    /// A check of one send against "at most `max` sends a minute" named `limit`.
    fn check(limit: &str, max: u64) -> Check {
        Check {
            key: key(limit),
            limit: Arc::new(LimitSettings {
                name: limit.to_owned(),
                scope: LimitScope::Client,
                classes: Vec::new(),
                channels: ChannelSelector::All,
                window: Duration::from_secs(60),
                max: LimitMax::Sends(max),
            }),
            max,
            need: 1,
            add: 1,
            budget: false,
        }
    }

    fn admit(limit: &str, max: u64) -> Op {
        let (reply, _) = oneshot::channel();
        Op::Admit {
            checks: vec![check(limit, max)],
            reply,
        }
    }

    #[test]
    fn a_batch_decides_in_arrival_order_and_a_release_makes_room() {
        let mut windows =
            BTreeMap::from([(key("a"), (Duration::from_secs(60), Window::default()))]);
        let now = 10_000_000;
        let first = decide(&[admit("a", 1), admit("a", 1)], &mut windows, now);
        assert!(first[0].is_ok());
        let refused = first[1].as_ref().unwrap_err();
        assert_eq!(refused.limit, "a");
        assert_eq!(
            refused.rule,
            "at most 1 send per client per 1m (every class, every channel)"
        );
        // The first send's slot (10 s to 11 s) leaves the minute at 71 s.
        assert_eq!(refused.retry_after, Duration::from_secs(61));
        let counted = first.into_iter().next().unwrap().unwrap().counted;
        let after = decide(&[Op::Release(counted), admit("a", 1)], &mut windows, now);
        assert!(
            after[0].is_ok(),
            "the released count no longer holds the window"
        );
    }

    #[test]
    fn a_refused_send_counts_in_no_window() {
        let mut windows = BTreeMap::from([
            (key("a"), (Duration::from_secs(60), Window::default())),
            (key("b"), (Duration::from_secs(60), Window::default())),
        ]);
        let both = |max_b| {
            let (reply, _) = oneshot::channel();
            Op::Admit {
                checks: vec![check("a", 5), check("b", max_b)],
                reply,
            }
        };
        let decisions = decide(&[both(0), both(5)], &mut windows, 0);
        assert!(decisions[0].is_err() && decisions[1].is_ok());
        assert_eq!(
            windows[&key("a")].1.total(),
            1,
            "only the admitted send counts in a"
        );
    }

    #[test]
    fn an_admission_whose_caller_gave_up_is_taken_back_in_the_next_batch() {
        let mut windows =
            BTreeMap::from([(key("a"), (Duration::from_secs(60), Window::default()))]);
        // `admit` drops its answer's receiver: the caller is gone (it timed out).
        let ops = vec![admit("a", 5)];
        let decisions = decide(&ops, &mut windows, 0);
        let own = answer(ops, Ok(decisions));
        let [Op::Release(counted)] = own.as_slice() else {
            panic!("the abandoned admission is released by the task itself");
        };
        decide(&own, &mut windows, 0);
        assert_eq!(windows[&key("a")].1.total(), 0, "released {counted:?}");
    }

    /// A migrated SQLite database of its own (removed with the directory).
    async fn database() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = crate::secret::Secret::new(format!(
            "sqlite://{}",
            dir.path().join("limits.db").display()
        ));
        let db = Db::connect(&url, 2).await.expect("open sqlite");
        db.migrate().await.expect("migrate sqlite");
        (db, dir)
    }

    /// "At most `max` sends a minute per client", on every class and channel.
    fn per_client(max: u64) -> LimitSettings {
        LimitSettings {
            name: "per-client".to_owned(),
            scope: LimitScope::Client,
            classes: Vec::new(),
            channels: ChannelSelector::All,
            window: Duration::from_secs(60),
            max: LimitMax::Sends(max),
        }
    }

    /// Limits whose batch task is the test: it holds the receiving end of a queue of
    /// `capacity`, reading it or dropping it (the task died) as the test needs.
    fn limits_with_test_task(db: Db, max: u64, capacity: usize) -> (Limits, mpsc::Receiver<Op>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let limits = Limits {
            inner: Arc::new(Inner {
                limits: vec![Arc::new(per_client(max))],
                hash_key: HashKey::generate(),
                db,
                queue: Mutex::new(queue),
            }),
        };
        (limits, receiver)
    }

    async fn admit_one(limits: &Limits) -> Result<Result<Admission, RateLimited>, LedgerError> {
        let channel = ChannelName::parse("sms").unwrap();
        let mobile = Mobile::parse("13800138000").unwrap();
        limits
            .admit(SendFacts {
                channel: &channel,
                class: SendClass::Normal,
                mobile: &mobile,
                client: "shop",
                units: 1,
            })
            .await
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
    async fn a_full_limits_queue_refuses_a_check_as_busy_at_once() {
        let (db, _dir) = database().await;
        let (limits, _stuck_task) = limits_with_test_task(db, 5, 1);
        limits
            .batcher()
            .try_send(Op::Release(Vec::new()))
            .expect("the queue has room for one");

        let answered = first_poll(admit_one(&limits)).expect("a full queue answers at once");

        assert!(matches!(answered, Err(LedgerError::Busy)), "{answered:?}");
    }

    #[tokio::test]
    async fn a_stuck_limits_task_refuses_a_check_as_busy_after_the_answer_timeout() {
        let (db, _dir) = database().await;
        let (limits, mut stuck_task) = limits_with_test_task(db, 5, 8);
        // Paused after the database is open: the clock moves only when every task
        // waits, straight to the next timer.
        tokio::time::pause();

        let answered = tokio::time::timeout(ANSWER_TIMEOUT * 2, admit_one(&limits))
            .await
            .expect("a check never waits past its answer timeout");

        assert!(matches!(answered, Err(LedgerError::Busy)), "{answered:?}");
        assert!(
            matches!(stuck_task.try_recv(), Ok(Op::Admit { .. })),
            "the check reached the task, which never answered"
        );
    }

    #[tokio::test]
    async fn a_limits_task_that_died_is_started_again_and_the_next_check_is_counted() {
        let (db, _dir) = database().await;
        let (limits, dying_task) = limits_with_test_task(db, 1, 8);
        let mut waiting = std::pin::pin!(admit_one(&limits));
        assert!(
            first_poll(waiting.as_mut()).is_none(),
            "the check is queued"
        );

        // The task dies (as a panic ends it) with the check in its queue.
        drop(dying_task);

        assert!(matches!(waiting.await, Err(LedgerError::Busy)));
        let admitted = admit_one(&limits).await.expect("a new task answers");
        assert!(!admitted.expect("the first send fits").is_empty());
        let over = admit_one(&limits)
            .await
            .expect("the new task answers again");
        assert_eq!(
            over.expect_err("the new task counted the first send in the database")
                .limit,
            "per-client"
        );
    }
}
