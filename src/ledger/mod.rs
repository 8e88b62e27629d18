//! The quota ledger: packages, reservations, charges, reconciliation and quota views.
//!
//! Only this module changes quota. See ARCHITECTURE.md ("The ledger") for the design of
//! the send path's database work: reservations and settlements for a channel are
//! applied in batches by one writer task per channel and process, so that one
//! transaction (one lock of the channel's package rows, one commit) serves every send
//! that arrived while the previous batch was being written.

mod allocation;
mod error;
mod packages;
mod pool;
mod quota;
mod reconcile;
mod sends;
mod sweeper;
mod writer;

pub use allocation::Allocation;
pub use error::LedgerError;
pub use packages::{NewPackage, NewPackageError, Package, PackageInput, PackageStatus};
pub use quota::{ChannelTotals, QuotaView};
pub use reconcile::Reconciliation;
pub use sends::{IdempotencyKey, SendRecord, UpstreamRecord};
pub use sweeper::Sweeper;
pub use writer::{Reservation, ReserveOutcome, ReserveRequest, Settled, Settlement, MAX_BATCH};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::domain::ChannelName;
use crate::domain::LedgerMode;
use crate::store::Db;

/// The ledger over one database. Cheap to clone; every clone shares the writers.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    mode: LedgerMode,
    batch_limit: usize,
    writers: Mutex<HashMap<ChannelName, writer::WriterHandle>>,
    /// Sends this process has reserved and not yet settled; the sweeper leaves them be.
    in_flight: Mutex<HashSet<String>>,
}

impl Ledger {
    pub fn new(db: Db, mode: LedgerMode) -> Self {
        Self::with_batch_limit(db, mode, writer::MAX_BATCH)
    }

    /// A ledger whose writers apply at most `batch_limit` operations per transaction;
    /// 1 gives one transaction per operation (the benchmark's baseline).
    pub fn with_batch_limit(db: Db, mode: LedgerMode, batch_limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                mode,
                batch_limit: batch_limit.max(1),
                writers: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn mode(&self) -> LedgerMode {
        self.inner.mode
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

    /// The writer task for `channel`, started on first use.
    fn writer(&self, channel: &ChannelName) -> writer::WriterHandle {
        let mut writers = self.inner.writers.lock().expect("writer map lock poisoned");
        writers
            .entry(channel.clone())
            .or_insert_with(|| {
                writer::WriterHandle::spawn(
                    self.inner.db.clone(),
                    self.inner.mode,
                    channel.clone(),
                    self.inner.batch_limit,
                )
            })
            .clone()
    }
}
