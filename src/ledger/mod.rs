//! The quota ledger: packages, reservations, charges, reconciliation (by hand and from
//! the marketplace's own count) and quota views.
//!
//! Only this module changes quota, and only this module reads its tables: everything
//! else (alerts, metrics, reports, the HTTP handlers, the console) asks through the read
//! interface of [`views`], which answers from aggregates the ledger maintains in the
//! same transactions as the charges, so that no read grows with the history. See
//! ARCHITECTURE.md ("The ledger") for the design of the send path's database work:
//! reservations and settlements for a channel are applied in batches by one writer task
//! per channel and process, so that one transaction (one lock of the channel's package
//! rows, one commit) serves every send that arrived while the previous batch was being
//! written.

mod aggregates;
mod allocation;
mod backfill;
mod error;
mod hash_key;
mod held;
mod housekeeping;
mod import;
mod lease;
mod marketplace_counts;
mod packages;
mod pool;
mod quota;
mod reconcile;
mod sends;
mod sweeper;
pub mod views;
mod writer;

pub use aggregates::{BucketCounts, Span, HOUR_BUCKETS_KEPT};
pub use allocation::Allocation;
pub use error::LedgerError;
pub use housekeeping::HousekeepingOutcome;
pub use import::ImportedCharge;
pub use lease::{instance_name, LEASE, RENEW_EVERY};
pub use marketplace_counts::{reconciliation_note, MarketplaceFigures, MarketplaceRun, RunOutcome};
pub use packages::{NewPackage, NewPackageError, Package, PackageInput, PackageStatus};
pub use quota::{QuotaView, TotalsRow};
pub use reconcile::Reconciliation;
pub use sends::{Attempt, IdempotencyKey, SendRecord, SendStatus, UpstreamRecord};
pub use sweeper::Sweeper;
pub use views::{ChannelReading, ChannelTotals, ExpiredPackage, UsageRow};
pub use writer::{
    Reservation, ReserveOutcome, ReserveRequest, Settled, Settlement, MAX_BATCH, QUEUE_CAPACITY,
};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;

use crate::config::Settings;
use crate::domain::{system_clock, ChannelName, Clock, LedgerMode, ReserveRule};
use crate::store::Db;

/// How a ledger is set up. `LedgerOptions::new(mode)` gives the defaults.
#[derive(Clone)]
pub struct LedgerOptions {
    pub mode: LedgerMode,
    /// Local hours and days of this zone are the buckets of usage (reports' months and
    /// days are cut in it).
    pub timezone: Tz,
    /// Where charges, reservations and views read "now" from.
    pub clock: Clock,
    /// At most this many operations per transaction; 1 gives one transaction per
    /// operation (the benchmark's baseline).
    pub batch_limit: usize,
    /// Each channel's priority reserve (SPEC §11); channels absent keep none.
    pub reserves: HashMap<ChannelName, ReserveRule>,
    /// Where settlements the database could not take are journaled (`[ledger]
    /// spool_dir`); `None` holds them in memory only.
    pub spool_dir: Option<std::path::PathBuf>,
}

impl LedgerOptions {
    pub fn new(mode: LedgerMode) -> Self {
        Self {
            mode,
            timezone: chrono_tz::Asia::Shanghai,
            clock: system_clock(),
            batch_limit: writer::MAX_BATCH,
            reserves: HashMap::new(),
            spool_dir: None,
        }
    }

    /// The options the settings call for.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            timezone: settings.server.timezone,
            reserves: settings
                .channels
                .iter()
                .map(|c| (c.name.clone(), c.reserve))
                .filter(|(_, rule)| !rule.is_empty())
                .collect(),
            spool_dir: Some(settings.ledger.spool_dir.clone()),
            ..Self::new(settings.ledger.mode)
        }
    }
}

/// The ledger over one database. Cheap to clone; every clone shares the writers.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

/// What the writers and the views share.
pub(crate) struct Context {
    db: Db,
    mode: LedgerMode,
    timezone: Tz,
    clock: Clock,
    batch_limit: usize,
    reserves: HashMap<ChannelName, ReserveRule>,
    /// Recorded on every reservation this process makes: the instance whose lease says
    /// whether the reservation is still looked after.
    instance: String,
    stats: WriterStats,
}

/// How this process's ledger writers have been writing (for metrics and tests).
#[derive(Debug, Default)]
pub(crate) struct WriterStats {
    optimistic: std::sync::atomic::AtomicU64,
    locked: std::sync::atomic::AtomicU64,
    conflicts: std::sync::atomic::AtomicU64,
    operations: std::sync::atomic::AtomicU64,
}

/// A snapshot of [`WriterStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Batches written in one optimistic statement (PostgreSQL).
    pub optimistic: u64,
    /// Batches written in a transaction holding the package rows.
    pub locked: u64,
    /// Optimistic statements that met a change they were not planned against (and
    /// were applied locked instead).
    pub conflicts: u64,
    /// Operations (reservations and settlements) in all batches.
    pub operations: u64,
}

impl WriterStats {
    pub(crate) fn count(&self, counter: fn(&WriterStats) -> &std::sync::atomic::AtomicU64, n: u64) {
        counter(self).fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn snapshot(&self) -> BatchCounts {
        use std::sync::atomic::Ordering::Relaxed;
        BatchCounts {
            optimistic: self.optimistic.load(Relaxed),
            locked: self.locked.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
            operations: self.operations.load(Relaxed),
        }
    }
}

struct Inner {
    context: Arc<Context>,
    writers: Mutex<HashMap<ChannelName, writer::WriterHandle>>,
    /// Sends this process has reserved and not yet settled (held settlements too); the
    /// sweeper leaves them be.
    in_flight: Mutex<HashSet<String>>,
    held: held::HeldSettlements,
}

impl Ledger {
    pub fn new(db: Db, mode: LedgerMode) -> Self {
        Self::with_options(db, LedgerOptions::new(mode))
    }

    /// Connects to the configured database, migrates it, and builds the usage buckets
    /// of a history recorded before the ledger kept them (once per database).
    pub async fn open(settings: &Settings, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let db = Db::connect_with(
            &settings.database.url,
            settings.database.connect_options(max_connections),
        )
        .await
        .with_context(|| format!("database {}", settings.database.url_for_display()))?;
        db.migrate().await?;
        let ledger = Self::with_options(db, LedgerOptions::from_settings(settings));
        ledger
            .build_usage_buckets_once()
            .await
            .context("building the usage buckets of the existing history")?;
        Ok(ledger)
    }

    pub fn with_options(db: Db, options: LedgerOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                context: Arc::new(Context {
                    db,
                    mode: options.mode,
                    timezone: options.timezone,
                    clock: options.clock,
                    batch_limit: options.batch_limit.max(1),
                    reserves: options.reserves,
                    instance: format!("inst_{}", uuid::Uuid::now_v7().simple()),
                    stats: WriterStats::default(),
                }),
                writers: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashSet::new()),
                held: held::HeldSettlements::new(options.spool_dir),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.context.db
    }

    pub fn mode(&self) -> LedgerMode {
        self.inner.context.mode
    }

    pub fn timezone(&self) -> Tz {
        self.inner.context.timezone
    }

    /// The ledger's notion of now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.inner.context.clock)()
    }

    /// How this process's writers have written their batches so far.
    pub fn batch_counts(&self) -> BatchCounts {
        self.inner.context.stats.snapshot()
    }

    /// The channel's priority reserve (none configured: admits everything).
    pub fn reserve_rule(&self, channel: &ChannelName) -> ReserveRule {
        self.inner
            .context
            .reserves
            .get(channel)
            .copied()
            .unwrap_or_default()
    }

    /// The id this process records on its reservations.
    pub fn instance(&self) -> &str {
        &self.inner.context.instance
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .in_flight
            .lock()
            .expect("in-flight set lock poisoned")
    }

    /// Whether this process reserved `send_id` and has not finished settling it.
    pub fn is_in_flight(&self, send_id: &str) -> bool {
        self.in_flight().contains(send_id)
    }

    /// The writer task for `channel`, started on first use, and started again if it
    /// ended (a panic in it must not stop the channel for good).
    fn writer(&self, channel: &ChannelName) -> writer::WriterHandle {
        let mut writers = self.inner.writers.lock().expect("writer map lock poisoned");
        if let Some(handle) = writers.get(channel) {
            if !handle.is_stopped() {
                return handle.clone();
            }
            tracing::error!(channel = %channel, "the ledger writer stopped; starting it again");
        }
        let handle = writer::WriterHandle::spawn(self.inner.context.clone(), channel.clone());
        writers.insert(channel.clone(), handle.clone());
        handle
    }
}
