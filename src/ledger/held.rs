//! Settlements held for later: the vendor answered, but the ledger could not record it.
//!
//! When the database goes away between the vendor's answer and the settlement, the
//! outcome is known and must not be lost, and the client must hear it (a `sent` that
//! went out is `sent`, not a timeout that invites a second code). So the settlement is
//! *held*:
//!
//! - in memory, with the send kept in this process's in-flight set, so that this
//!   process's sweeper leaves the reservation alone and retries the settlement on each
//!   pass until the database takes it;
//! - in a journal file (`[ledger] spool_dir`, one per process, a JSON line per held
//!   settlement, written and synced before the client is answered), so that if the
//!   process dies first, an instance sharing the spool folder (its successor on the
//!   machine, usually) records the send with the outcome it had once the dead one's
//!   lease has lapsed or been taken over, before its sweep would charge the send as
//!   `uncertain`. An instance elsewhere, without the file, sweeps it as `uncertain`
//!   (charged and flagged), as it does any send whose process died.
//!
//! A settlement only applies to a send still `reserved`, so applying a held one twice,
//! or after another instance's sweeper charged the send as `uncertain` (when the
//! lease lapsed and this process could not reach the database to renew it), changes
//! nothing: the journal never makes a send charged twice.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError, Reservation, Settled, Settlement, UpstreamRecord};
use crate::domain::Outcome;

/// The held settlements of one process.
#[derive(Default)]
pub(crate) struct HeldSettlements {
    /// The folder the journal lives in; `None` keeps held settlements in memory only.
    spool_dir: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// This process's journal, once it held something.
    journal: Option<PathBuf>,
    held: HashMap<String, Held>,
}

#[derive(Clone)]
struct Held {
    reservation: Reservation,
    settlement: Settlement,
}

/// One line of the journal: enough to settle the stored reservation of `send_id`.
#[derive(Debug, Serialize, Deserialize)]
struct JournalLine {
    send_id: String,
    outcome: Outcome,
    charge: bool,
    upstream: UpstreamRecord,
}

impl HeldSettlements {
    pub(crate) fn new(spool_dir: Option<PathBuf>) -> Self {
        Self {
            spool_dir,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("held settlements lock poisoned")
    }

    /// How many settlements are held now.
    pub(crate) fn len(&self) -> usize {
        self.state().held.len()
    }

    fn held(&self) -> Vec<Held> {
        self.state().held.values().cloned().collect()
    }

    /// Holds one settlement, and writes the journal of `instance` before returning.
    fn hold(&self, instance: &str, reservation: &Reservation, settlement: &Settlement) {
        let mut state = self.state();
        if state.journal.is_none() {
            state.journal = self.journal_path(instance);
        }
        state.held.insert(
            reservation.send_id.clone(),
            Held {
                reservation: reservation.clone(),
                settlement: settlement.clone(),
            },
        );
        write_journal(&state);
    }

    /// Forgets the settlements of `send_ids` (applied, or found settled already).
    fn forget(&self, send_ids: &[String]) {
        if send_ids.is_empty() {
            return;
        }
        let mut state = self.state();
        for send_id in send_ids {
            state.held.remove(send_id);
        }
        write_journal(&state);
    }

    /// This process's journal: named by its instance id, so that instances sharing a
    /// spool folder never write one file, and the sweeper knows whose lease to ask.
    fn journal_path(&self, instance: &str) -> Option<PathBuf> {
        let dir = self.spool_dir.as_ref()?;
        Some(dir.join(format!("{JOURNAL_PREFIX}{instance}{JOURNAL_SUFFIX}")))
    }

    /// The journals in the spool folder of instances other than `own`, by instance id.
    fn other_journals(&self, own: &str) -> Vec<(String, PathBuf)> {
        let Some(dir) = &self.spool_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let instance = name
                    .strip_prefix(JOURNAL_PREFIX)?
                    .strip_suffix(JOURNAL_SUFFIX)?
                    .to_owned();
                (instance != own).then(|| (instance, entry.path()))
            })
            .collect()
    }
}

const JOURNAL_PREFIX: &str = "held-settlements-";
const JOURNAL_SUFFIX: &str = ".jsonl";

/// Rewrites the journal with what is held now (removes it when nothing is): written to
/// a temporary file, synced, then renamed over the old one, so that a crash leaves
/// either journal whole.
fn write_journal(state: &State) {
    let Some(path) = &state.journal else { return };
    if let Err(err) = try_write_journal(path, state.held.values()) {
        tracing::error!(path = %path.display(), error = %err, held = state.held.len(), "cannot write the journal of held settlements; they are kept in memory only");
    }
}

fn try_write_journal<'a>(
    path: &Path,
    held: impl ExactSizeIterator<Item = &'a Held>,
) -> std::io::Result<()> {
    if held.len() == 0 {
        return match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("jsonl.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    for held in held {
        let line = JournalLine {
            send_id: held.reservation.send_id.clone(),
            outcome: held.settlement.outcome,
            charge: held.settlement.charge,
            upstream: held.settlement.upstream.clone(),
        };
        serde_json::to_writer(&mut file, &line)?;
        file.write_all(b"\n")?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the folder is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The journal's lines; a line that does not parse (a torn write) is skipped.
fn read_journal(path: &Path) -> Vec<JournalLine> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "cannot read the journal of held settlements");
            return Vec::new();
        }
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| match serde_json::from_str(line) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                tracing::error!(error = %err, "skipping a journal line that does not parse");
                None
            }
        })
        .collect()
}

/// How many times a send's own settlement is tried before it is held, and for how long
/// at most: the client is waiting for its answer.
const ATTEMPTS_BEFORE_HOLDING: u32 = 4;
const WAIT_BEFORE_HOLDING: std::time::Duration = std::time::Duration::from_secs(2);

impl Ledger {
    /// Settles a send the vendor answered. If the database cannot take it within
    /// [`WAIT_BEFORE_HOLDING`], the settlement is held (see the module's comment) and `Ok(None)` is
    /// returned: the outcome stands, and will be recorded once the database is back.
    #[tracing::instrument(skip_all, fields(channel = %reservation.channel, send_id = %reservation.send_id, outcome = settlement.outcome.as_str()))]
    pub async fn settle_or_hold(
        &self,
        reservation: &Reservation,
        settlement: Settlement,
    ) -> Result<Option<Settled>, LedgerError> {
        // A settlement still queued when the wait ends may yet be applied by the writer;
        // holding it too is harmless, since only a `reserved` send is settled.
        let result = tokio::time::timeout(
            WAIT_BEFORE_HOLDING,
            self.settle_with_retries(reservation, settlement.clone(), ATTEMPTS_BEFORE_HOLDING),
        )
        .await
        .unwrap_or(Err(LedgerError::Busy));
        match result {
            Ok(settled) => {
                self.in_flight().remove(&reservation.send_id);
                Ok(Some(settled))
            }
            Err(LedgerError::Unavailable(_) | LedgerError::Busy | LedgerError::WriterStopped) => {
                tracing::warn!("the ledger cannot record the vendor's answer now; holding the settlement until it can");
                // Still in flight: this process's sweeper must not charge it as uncertain.
                self.inner
                    .held
                    .hold(self.instance(), reservation, &settlement);
                Ok(None)
            }
            Err(err) => {
                self.in_flight().remove(&reservation.send_id);
                Err(err)
            }
        }
    }

    /// Tries every held settlement once more; returns how many are no longer held
    /// (recorded, found settled already, or refused for good).
    pub(crate) async fn retry_held(&self) -> usize {
        let held = self.inner.held.held();
        let mut done = Vec::new();
        for Held {
            reservation,
            settlement,
        } in held
        {
            match self.settle_with_retries(&reservation, settlement, 1).await {
                Ok(settled) => {
                    if settled.applied {
                        tracing::info!(send_id = %reservation.send_id, "recorded a held settlement");
                    }
                    self.in_flight().remove(&reservation.send_id);
                    done.push(reservation.send_id);
                }
                Err(err @ LedgerError::Inconsistent(_)) => {
                    // No retry can fix it: the send is left to the sweeper, which
                    // charges it as uncertain and flags it, rather than retried forever.
                    tracing::error!(send_id = %reservation.send_id, error = %err, "a held settlement cannot be applied; the sweeper will settle the send");
                    self.in_flight().remove(&reservation.send_id);
                    done.push(reservation.send_id);
                }
                Err(err) => {
                    tracing::warn!(send_id = %reservation.send_id, error = %err, "a held settlement cannot be recorded yet");
                }
            }
        }
        self.inner.held.forget(&done);
        done.len()
    }

    /// How many settlements this process holds (for metrics and tests).
    pub fn held_settlements(&self) -> usize {
        self.inner.held.len()
    }

    /// Settles what instances that are gone (their lease lapsed or ended) left held in
    /// journals in this process's spool folder, with the outcomes they had; a journal is
    /// removed once every send in it is settled. Runs before each sweep, so that a
    /// successor records the real outcome before it would charge a send as uncertain.
    pub(crate) async fn settle_journals_of_the_gone(&self) -> Result<usize, LedgerError> {
        let mut settled = 0;
        for (instance, path) in self.inner.held.other_journals(self.instance()) {
            if self.lease_is_live(&instance).await? {
                continue;
            }
            let lines = read_journal(&path);
            let ids: Vec<String> = lines.iter().map(|line| line.send_id.clone()).collect();
            let reservations = self.stored_reservations(&ids).await?;
            let mut complete = true;
            for line in lines {
                // Not reserved any more: settled already, by its process or a sweep.
                let Some(reservation) = reservations.iter().find(|r| r.send_id == line.send_id)
                else {
                    continue;
                };
                let settlement = Settlement {
                    outcome: line.outcome,
                    charge: line.charge,
                    upstream: line.upstream,
                };
                match self.settle_with_retries(reservation, settlement, 1).await {
                    Ok(outcome) => {
                        if outcome.applied {
                            tracing::warn!(send_id = %reservation.send_id, %instance, "recorded a settlement a stopped instance held");
                            settled += 1;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(send_id = %reservation.send_id, error = %err, "cannot record a stopped instance's held settlement yet");
                        complete = false;
                    }
                }
            }
            if complete {
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %err, "cannot remove a settled journal");
                }
            }
        }
        Ok(settled)
    }
}
