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

use std::collections::BTreeMap;
use std::sync::Arc;
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
    queue: mpsc::Sender<Op>,
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

enum Op {
    Admit {
        checks: Vec<Check>,
        reply: oneshot::Sender<Result<Result<Admission, RateLimited>, LedgerError>>,
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
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(db.clone(), receiver));
        Self {
            inner: Arc::new(Inner {
                limits: limits.into_iter().map(Arc::new).collect(),
                hash_key,
                db,
                queue,
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
        self.inner
            .queue
            .try_send(Op::Admit { checks, reply })
            .map_err(|_| LedgerError::Busy)?;
        answer.await.map_err(|_| LedgerError::Busy)?
    }

    /// Takes back what `admission` counted: the send was not charged.
    pub fn release(&self, admission: Admission) {
        let counted: Vec<Counted> = admission
            .counted
            .into_iter()
            .filter(|c| c.amount > 0)
            .collect();
        if !counted.is_empty() && self.inner.queue.try_send(Op::Release(counted)).is_err() {
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
            .inner
            .queue
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

/// The batch task: takes what waits, up to [`MAX_BATCH`], and applies it in one
/// transaction.
async fn run(db: Db, mut receiver: mpsc::Receiver<Op>) {
    while let Some(first) = receiver.recv().await {
        let mut ops = vec![first];
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
        answer(ops, decisions);
    }
}

/// Sends each admission its answer.
fn answer(ops: Vec<Op>, decisions: Result<Vec<Decision>, LedgerError>) {
    match decisions {
        Ok(decisions) => {
            let mut decisions = decisions.into_iter();
            for op in ops {
                if let Op::Admit { reply, .. } = op {
                    let decision = decisions
                        .next()
                        .expect("one decision per admission in the batch");
                    let _ = reply.send(Ok(decision));
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
}
