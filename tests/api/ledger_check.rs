//! The ledger checked against what the vendor received, after a test's faults: every
//! vendor answer that billed a call is charged exactly once, nothing is charged that the
//! vendor never billed (uncertain sends aside: charged, and flagged for reconciliation),
//! no reservation is left, and no unit is sold twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sqlx::Row;
use tollgate::domain::{ChannelName, LedgerMode};
use tollgate::ledger::Ledger;
use tollgate::store::Db;
use tollgate::upstream::sandbox::SandboxStats;

use crate::vendor::{request_id, StandInVendor};

/// What the vendor did with the calls it received, in the terms of SPEC §3's table.
#[derive(Debug, Clone, Default)]
pub struct VendorSaw {
    /// Calls that reached it.
    pub received: u64,
    /// Calls it billed and whose answer reached tollgate (a 200 without
    /// `X-Ca-Market-Billing-Result: 0`): each must be charged exactly once.
    pub billed_answers: u64,
    /// The `X-Ca-Request-Id`s of those answers, when the vendor numbers them (the
    /// stand-in's [`crate::vendor::Reply::numbered`]).
    pub billed_ids: Option<BTreeSet<String>>,
    /// The `TaskID`s of its successes, when it gives distinct ones (the sandbox).
    pub success_task_ids: Option<u64>,
    /// Calls whose answer never reached tollgate: held past tollgate's timeout, or whose
    /// connection was dropped. The message may have gone out: each is `uncertain`.
    pub unanswered: u64,
    /// Calls answered with a refusal that bills nothing (403, 5xx, …).
    pub refused: u64,
}

impl VendorSaw {
    /// What the stand-in did, given tollgate's `[upstream] timeout`: an answer held at
    /// least that long never reached tollgate.
    pub fn stand_in(vendor: &StandInVendor, timeout: Duration) -> VendorSaw {
        let mut saw = VendorSaw {
            billed_ids: Some(BTreeSet::new()),
            ..VendorSaw::default()
        };
        for answer in vendor.answered() {
            saw.received += 1;
            match answer.status {
                _ if answer.delay >= timeout => saw.unanswered += 1,
                None => saw.unanswered += 1,
                Some(200) if answer.billed_header => {
                    saw.billed_answers += 1;
                    let ids = saw.billed_ids.as_mut().unwrap();
                    assert!(ids.insert(request_id(&answer.number.to_string())));
                }
                Some(_) => saw.refused += 1,
            }
        }
        saw
    }

    /// What the sandbox counted, given that tollgate's timeout is below the sandbox's
    /// hold of an injected timeout (60 s).
    pub fn sandbox(stats: &SandboxStats) -> VendorSaw {
        VendorSaw {
            received: stats.requests,
            billed_answers: stats.successes + stats.rejections,
            billed_ids: None,
            success_task_ids: Some(stats.successes),
            unanswered: stats.injected_timeouts,
            refused: stats.auth_failures
                + stats.throttled
                + stats.quota_exhausted
                + stats.injected_failures,
        }
    }
}

/// What the ledger holds, by outcome, after the check passed.
#[derive(Debug, Clone, Default)]
pub struct LedgerCheck {
    /// Send rows by status.
    pub by_status: BTreeMap<String, i64>,
    /// Units charged for sends.
    pub charged_units: i64,
    /// Sends settled as `uncertain` (every one flagged for reconciliation).
    pub uncertain: i64,
}

impl LedgerCheck {
    pub fn count(&self, status: &str) -> i64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}

/// Statuses that charge the send's units (SPEC §3).
const CHARGED: [&str; 3] = ["sent", "vendor_rejected", "uncertain"];

/// Checks the ledger on `db` against `vendor` and returns what it holds. `extra_uncertain`
/// is how many sends may have been swept as `uncertain` without reaching the vendor
/// (a process killed between its reservation and the call): they are charged and
/// flagged, never lost, and never more than that.
pub async fn check_ledger_against_vendor(
    db: &Db,
    vendor: &VendorSaw,
    extra_uncertain: i64,
) -> LedgerCheck {
    let rows = sqlx::query(
        "SELECT s.id, s.channel, s.status, s.units, s.charged_units, s.needs_reconciliation, \
         s.upstream_status, s.upstream_request_id, s.upstream_task_id, \
         CAST(COALESCE((SELECT SUM(e.units) FROM ledger_entries e WHERE e.send_id = s.id), 0) \
         AS BIGINT) AS entry_units, \
         CAST((SELECT COUNT(*) FROM ledger_entries e WHERE e.send_id = s.id) AS BIGINT) AS entries \
         FROM sends s",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut check = LedgerCheck::default();
    let mut billed_ids = Vec::new();
    let mut task_ids = BTreeSet::new();
    let mut answered_refusals = 0u64;
    for row in &rows {
        let id: String = row.get("id");
        let status: String = row.get("status");
        let units: i64 = row.get("units");
        let charged: i64 = row.get("charged_units");
        let entry_units: i64 = row.get("entry_units");
        let entries: i64 = row.get("entries");
        *check.by_status.entry(status.clone()).or_default() += 1;
        assert_ne!(status, "reserved", "{id}: a reservation was left unsettled");
        if CHARGED.contains(&status.as_str()) {
            assert_eq!(charged, units, "{id} ({status}) is charged its units");
            check.charged_units += charged;
        } else {
            assert_eq!(charged, 0, "{id} ({status}) charges nothing");
        }
        // Charged once: the entries of a send add up to its charge, and a send with no
        // charge has no entry (the release of a reservation writes none).
        assert_eq!(entry_units, charged, "{id}: its entries are its charge");
        if charged == 0 {
            assert_eq!(entries, 0, "{id}: an uncharged send has no entry");
        }
        let request_id: Option<String> = row.get("upstream_request_id");
        match status.as_str() {
            "sent" | "vendor_rejected" => {
                billed_ids.push(request_id.clone().unwrap_or_default());
                if status == "sent" {
                    if let Some(task) = row.get::<Option<String>, _>("upstream_task_id") {
                        assert!(task_ids.insert(task), "{id}: a task id charged twice");
                    }
                }
            }
            "uncertain" => {
                check.uncertain += 1;
                assert_eq!(
                    row.get::<i64, _>("needs_reconciliation"),
                    1,
                    "{id}: an uncertain send is flagged for reconciliation"
                );
            }
            _ => {
                if row.get::<Option<i64>, _>("upstream_status").is_some() {
                    answered_refusals += 1;
                }
            }
        }
    }

    // Every vendor answer that billed a call is charged exactly once, and nothing is
    // charged as sent or rejected that the vendor did not bill.
    assert_eq!(
        billed_ids.len() as u64,
        vendor.billed_answers,
        "sends charged as sent or rejected against the vendor's billed answers: {check:?}, {vendor:?}"
    );
    if let Some(expected) = &vendor.billed_ids {
        let charged: BTreeSet<String> = billed_ids.iter().cloned().collect();
        assert_eq!(
            charged.len(),
            billed_ids.len(),
            "a vendor answer charged twice"
        );
        assert_eq!(
            &charged, expected,
            "the charged answers are the vendor's billed ones"
        );
    }
    if let Some(successes) = vendor.success_task_ids {
        assert_eq!(
            task_ids.len() as u64,
            successes,
            "one sent send per vendor success, each with its own task id"
        );
    }
    // Refusals the vendor answered are recorded uncharged; a refusal may also have been
    // swallowed by a send that was already settled (no row of its own), never more.
    assert!(
        answered_refusals <= vendor.refused,
        "{answered_refusals} refusals recorded, the vendor answered {}",
        vendor.refused
    );
    // What the vendor never answered is uncertain: charged and flagged. Sends swept
    // without reaching the vendor may add to them, within the test's allowance.
    assert!(
        check.uncertain >= vendor.unanswered as i64
            && check.uncertain <= vendor.unanswered as i64 + extra_uncertain,
        "{} uncertain sends for {} unanswered calls (+{extra_uncertain} allowed)",
        check.uncertain,
        vendor.unanswered
    );
    // Nothing reached the vendor that the ledger does not know of.
    let recorded_calls = billed_ids.len() as u64 + answered_refusals + check.uncertain as u64;
    assert!(
        vendor.received <= recorded_calls,
        "the vendor received {} calls, the ledger records {recorded_calls}",
        vendor.received
    );

    check_no_unit_sold_twice(db, check.charged_units).await;
    check
}

/// The packages' counters and every channel's quota view agree with the sends, and no
/// package ever gave more than it had.
pub async fn check_no_unit_sold_twice(db: &Db, charged_units: i64) {
    let packages = sqlx::query("SELECT id, units, taken, charged FROM packages")
        .fetch_all(db.pool())
        .await
        .unwrap();
    for row in &packages {
        let (units, taken, charged): (i64, i64, i64) =
            (row.get("units"), row.get("taken"), row.get("charged"));
        assert!(
            0 <= charged && charged <= taken && taken <= units,
            "package {}: charged {charged} ≤ taken {taken} ≤ units {units}",
            row.get::<i64, _>("id")
        );
    }
    let channels: Vec<String> = sqlx::query_scalar("SELECT DISTINCT channel FROM packages")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let ledger = Ledger::new(db.clone(), LedgerMode::Enforce);
    let mut used = 0;
    for name in channels {
        let quota = ledger
            .quota(&ChannelName::parse(&name).unwrap())
            .await
            .unwrap();
        assert_eq!(quota.reserved, 0, "{name}: nothing is held");
        assert!(quota.remaining >= 0, "{name}: {quota:?}");
        assert_eq!(
            quota.remaining,
            quota.purchased - quota.used - quota.reserved - quota.expired + quota.reconciled,
            "{name}: remaining = purchased − used − reserved − expired + reconciled"
        );
        assert!(
            quota.used <= quota.purchased + quota.reconciled - quota.expired,
            "{name}: no more used than was there to use: {quota:?}"
        );
        used += quota.used + quota.unmetered;
    }
    assert_eq!(
        used, charged_units,
        "the quota views count every charged unit"
    );
}
