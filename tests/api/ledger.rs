//! The ledger's conformance suite: every test runs on SQLite and on PostgreSQL.

use std::collections::BTreeSet;

use tollgate::domain::LedgerMode;
use tollgate::domain::Outcome;
use tollgate::domain::Yuan;
use tollgate::ledger::{
    IdempotencyKey, Ledger, ReserveOutcome, Settlement, Sweeper, UpstreamRecord,
};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    concurrent_reservations_never_exceed_remaining_quota,
    several_instances_never_sell_a_unit_twice,
    a_fully_used_package_costs_exactly_its_price,
    a_send_spanning_two_packages_pays_each_its_own_unit_price,
    units_come_from_the_earliest_expiring_package_first,
    expired_packages_serve_nothing_and_report_their_unused_units,
    released_units_go_back_to_the_pool,
    the_same_idempotency_key_reserves_and_charges_once,
    registering_the_same_order_twice_returns_the_first_package,
    the_sweeper_charges_reservations_a_crash_left_behind,
    a_late_settlement_after_the_sweeper_changes_nothing,
    reconciliation_appends_adjustments_and_never_rewrites_history,
    observe_mode_meters_sends_beyond_the_quota,
    quota_view_reports_usage_and_burn_rate,
    reconciliation_gives_units_back_to_a_used_up_package,
    a_live_instance_with_a_slow_clock_keeps_its_reservations,
);

fn charge(outcome: Outcome) -> Settlement {
    Settlement {
        outcome,
        charge: true,
        upstream: UpstreamRecord::default(),
    }
}

fn release() -> Settlement {
    Settlement {
        outcome: Outcome::UpstreamError,
        charge: false,
        upstream: UpstreamRecord::default(),
    }
}

/// Hundreds of tasks reserve (and then charge) one unit each from 50 units.
async fn concurrent_reservations_never_exceed_remaining_quota(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 50,
            ..Default::default()
        },
    )
    .await;

    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { reserve_and_charge(&ledger, 1).await })
        })
        .collect();
    let mut charged = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Some(remaining) => {
                assert!(remaining >= 0);
                charged += 1;
            }
            None => refused += 1,
        }
    }

    assert_eq!(charged, 50);
    assert_eq!(refused, 250);
    let quota = ledger.quota(&channel("sms_code")).await.unwrap();
    assert_eq!((quota.used, quota.reserved, quota.remaining), (50, 0, 0));
}

/// Reserves `units` and charges them; `None` when the quota refused the send.
async fn reserve_and_charge(ledger: &Ledger, units: u32) -> Option<i64> {
    match ledger
        .reserve(&channel("sms_code"), request(units))
        .await
        .unwrap()
    {
        ReserveOutcome::Reserved(reservation) => {
            let settled = ledger
                .settle(&reservation, charge(Outcome::Sent))
                .await
                .unwrap();
            assert!(settled.applied);
            Some(settled.remaining)
        }
        ReserveOutcome::QuotaExhausted { remaining } => {
            assert!(remaining < i64::from(units));
            None
        }
        ReserveOutcome::QuotaReserved { .. } => panic!("this channel keeps no reserve"),
        ReserveOutcome::Duplicate { .. } => panic!("no idempotency key was given"),
    }
}

/// Three instances (three pools, three writers per channel) on one database, with
/// sends of 1-3 units and some released: the units charged never exceed what was bought.
async fn several_instances_never_sell_a_unit_twice(backend: Backend) {
    let test = TestDb::new(backend).await;
    let first = test.ledger(LedgerMode::Enforce);
    add_package(
        &first,
        PackageSpec {
            units: 120,
            ..Default::default()
        },
    )
    .await;
    let mut instances = vec![first];
    for _ in 0..2 {
        instances.push(Ledger::new(
            test.another_instance().await,
            LedgerMode::Enforce,
        ));
    }

    let tasks: Vec<_> = (0..240)
        .map(|i| {
            let ledger = instances[i % instances.len()].clone();
            tokio::spawn(async move {
                let units = (i % 3 + 1) as u32;
                match ledger
                    .reserve(&channel("sms_code"), request(units))
                    .await
                    .unwrap()
                {
                    ReserveOutcome::Reserved(reservation) => {
                        let settlement = if i % 7 == 0 {
                            release()
                        } else {
                            charge(Outcome::Sent)
                        };
                        ledger
                            .settle(&reservation, settlement)
                            .await
                            .unwrap()
                            .charged_units
                    }
                    _ => 0,
                }
            })
        })
        .collect();
    let mut charged = 0;
    for task in tasks {
        charged += task.await.unwrap();
    }

    let quota = instances[0].quota(&channel("sms_code")).await.unwrap();
    assert_eq!(quota.used, charged);
    assert!(charged <= 120, "charged {charged} of 120 units");
    assert_eq!((quota.used + quota.remaining, quota.reserved), (120, 0));
    // Released units went back and can still be sold, one by one, to exactly 120.
    while reserve_and_charge(&instances[1], 1).await.is_some() {
        charged += 1;
    }
    assert_eq!(charged, 120);
}

async fn a_fully_used_package_costs_exactly_its_price(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 1000,
            price: "45.00",
            ..Default::default()
        },
    )
    .await;

    let mut costs = Vec::new();
    let mut waves = Vec::new();
    for _ in 0..10 {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let reservation = reserved(
                        ledger
                            .reserve(&channel("sms_code"), request(1))
                            .await
                            .unwrap(),
                    );
                    ledger
                        .settle(&reservation, charge(Outcome::Sent))
                        .await
                        .unwrap()
                        .cost
                })
            })
            .collect();
        waves.push(tasks);
    }
    for wave in waves {
        for task in wave {
            costs.push(task.await.unwrap());
        }
    }

    assert!(costs.iter().all(|cost| *cost == yuan("0.045")));
    let total: Yuan = costs.into_iter().sum();
    assert_eq!(total, yuan("45.00"));
    let stored: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(cost_micros) AS BIGINT) FROM ledger_entries")
            .fetch_one(test.db.pool())
            .await
            .unwrap();
    assert_eq!(Yuan::from_micros(stored), yuan("45.00"));
    let totals = ledger.totals().await.unwrap();
    assert_eq!(
        (totals[0].billed_units, totals[0].cost),
        (1000, yuan("45.00"))
    );
}

async fn a_send_spanning_two_packages_pays_each_its_own_unit_price(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    let cheap_soon = add_package(
        &ledger,
        PackageSpec {
            units: 2,
            price: "1.00",
            expires_at: Some("2099-01-01T00:00:00Z"),
            ..Default::default()
        },
    )
    .await;
    let later = add_package(
        &ledger,
        PackageSpec {
            units: 10,
            price: "2.00",
            ..Default::default()
        },
    )
    .await;

    let reservation = reserved(
        ledger
            .reserve(&channel("sms_code"), request(3))
            .await
            .unwrap(),
    );
    assert_eq!(
        reservation.allocation.parts,
        vec![(cheap_soon.id, 2), (later.id, 1)]
    );
    let settled = ledger
        .settle(&reservation, charge(Outcome::Sent))
        .await
        .unwrap();

    // Two units at ¥0.50 and one at ¥0.20.
    assert_eq!(settled.cost, yuan("1.20"));
    assert_eq!(settled.charged_units, 3);
    let send = ledger
        .get_send(&reservation.send_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((send.status.as_str(), send.cost), ("sent", yuan("1.20")));
}

async fn units_come_from_the_earliest_expiring_package_first(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    let never = add_package(
        &ledger,
        PackageSpec {
            units: 5,
            purchased_at: "2026-01-01T00:00:00Z",
            ..Default::default()
        },
    )
    .await;
    let late = add_package(
        &ledger,
        PackageSpec {
            units: 5,
            expires_at: Some("2099-06-01T00:00:00Z"),
            ..Default::default()
        },
    )
    .await;
    let soon = add_package(
        &ledger,
        PackageSpec {
            units: 5,
            expires_at: Some("2099-01-01T00:00:00Z"),
            ..Default::default()
        },
    )
    .await;

    let reservation = reserved(
        ledger
            .reserve(&channel("sms_code"), request(12))
            .await
            .unwrap(),
    );

    assert_eq!(
        reservation.allocation.parts,
        vec![(soon.id, 5), (late.id, 5), (never.id, 2)]
    );
}

async fn expired_packages_serve_nothing_and_report_their_unused_units(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 30,
            purchased_at: "2025-01-01T00:00:00Z",
            expires_at: Some("2025-02-01T00:00:00Z"),
            ..Default::default()
        },
    )
    .await;

    let outcome = ledger
        .reserve(&channel("sms_code"), request(1))
        .await
        .unwrap();

    assert!(matches!(
        outcome,
        ReserveOutcome::QuotaExhausted { remaining: 0 }
    ));
    let quota = ledger.quota(&channel("sms_code")).await.unwrap();
    assert_eq!((quota.remaining, quota.expired), (0, 30));
    let packages = ledger.list_packages(None).await.unwrap();
    assert_eq!(packages[0].status, tollgate::ledger::PackageStatus::Expired);
    let sends: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sends")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(sends, 0, "a refused send records nothing");
}

async fn released_units_go_back_to_the_pool(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 3,
            ..Default::default()
        },
    )
    .await;

    let reservation = reserved(
        ledger
            .reserve(&channel("sms_code"), request(3))
            .await
            .unwrap(),
    );
    assert_eq!(reservation.remaining, 0);
    let refused = ledger
        .reserve(&channel("sms_code"), request(1))
        .await
        .unwrap();
    assert!(matches!(refused, ReserveOutcome::QuotaExhausted { .. }));
    let settled = ledger.settle(&reservation, release()).await.unwrap();

    assert_eq!(
        (settled.charged_units, settled.cost, settled.remaining),
        (0, Yuan::ZERO, 3)
    );
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(entries, 0);
    assert_eq!(
        ledger
            .get_send(&reservation.send_id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "upstream_error"
    );
}

async fn the_same_idempotency_key_reserves_and_charges_once(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 100,
            ..Default::default()
        },
    )
    .await;
    let key = IdempotencyKey::new(
        "order-42-login",
        b"{\"to\":\"13800138000\"}",
        &tollgate::domain::HashKey::generate(),
    )
    .unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let ledger = ledger.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut req = request(1);
                req.idempotency = Some(key);
                ledger.reserve(&channel("sms_code"), req).await.unwrap()
            })
        })
        .collect();
    let mut reservations = Vec::new();
    let mut duplicates_of = BTreeSet::new();
    for task in tasks {
        match task.await.unwrap() {
            ReserveOutcome::Reserved(reservation) => reservations.push(reservation),
            ReserveOutcome::Duplicate { existing_id } => {
                duplicates_of.insert(existing_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    assert_eq!(reservations.len(), 1);
    assert_eq!(
        duplicates_of.into_iter().collect::<Vec<_>>(),
        vec![reservations[0].send_id.clone()]
    );
    ledger
        .settle(&reservations[0], charge(Outcome::Sent))
        .await
        .unwrap();
    let quota = ledger.quota(&channel("sms_code")).await.unwrap();
    assert_eq!(quota.used, 1);
    let stored = ledger
        .get_send(&reservations[0].send_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.request_hash.as_deref(), Some(key.request_hash()));
}

async fn registering_the_same_order_twice_returns_the_first_package(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);

    let first = add_package(
        &ledger,
        PackageSpec {
            units: 1000,
            order_id: Some("2026112800001"),
            ..Default::default()
        },
    )
    .await;
    let again = add_package(
        &ledger,
        PackageSpec {
            units: 5,
            order_id: Some("2026112800001"),
            ..Default::default()
        },
    )
    .await;

    assert_eq!(again.id, first.id);
    assert_eq!(again.units, 1000);
    assert_eq!(ledger.list_packages(None).await.unwrap().len(), 1);
}

async fn the_sweeper_charges_reservations_a_crash_left_behind(backend: Backend) {
    let test = TestDb::new(backend).await;
    let crashed = test.ledger(LedgerMode::Enforce);
    add_package(
        &crashed,
        PackageSpec {
            units: 10,
            price: "1.00",
            ..Default::default()
        },
    )
    .await;
    let reservation = reserved(
        crashed
            .reserve(&channel("sms_code"), request(2))
            .await
            .unwrap(),
    );
    drop(crashed);

    let survivor = Ledger::new(test.another_instance().await, LedgerMode::Enforce);
    let young = Sweeper::new(survivor.clone(), std::time::Duration::from_secs(3600));
    assert_eq!(
        young.try_run_once().await.unwrap(),
        0,
        "a young reservation is left alone"
    );
    let sweeper = Sweeper::new(survivor.clone(), std::time::Duration::ZERO);
    assert_eq!(sweeper.try_run_once().await.unwrap(), 1);

    let send = survivor
        .get_send(&reservation.send_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(send.status.as_str(), "uncertain");
    assert!(send.needs_reconciliation);
    assert_eq!((send.charged_units, send.cost), (2, yuan("0.20")));
    let quota = survivor.quota(&channel("sms_code")).await.unwrap();
    assert_eq!((quota.used, quota.reserved, quota.remaining), (2, 0, 8));
}

async fn a_late_settlement_after_the_sweeper_changes_nothing(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 10,
            ..Default::default()
        },
    )
    .await;
    let reservation = reserved(
        ledger
            .reserve(&channel("sms_code"), request(1))
            .await
            .unwrap(),
    );
    // This instance still has the send under way, so its own sweeper leaves it alone;
    // another instance's sweeper (or this one's after a restart) takes it.
    let own = Sweeper::new(ledger.clone(), std::time::Duration::ZERO);
    assert_eq!(own.try_run_once().await.unwrap(), 0);
    let other = Ledger::new(test.another_instance().await, LedgerMode::Enforce);
    let swept = Sweeper::new(other, std::time::Duration::ZERO);
    assert_eq!(swept.try_run_once().await.unwrap(), 1);

    let late = ledger.settle(&reservation, release()).await.unwrap();
    let late_charge = ledger
        .settle(&reservation, charge(Outcome::Sent))
        .await
        .unwrap();

    assert!(!late.applied && !late_charge.applied);
    let quota = ledger.quota(&channel("sms_code")).await.unwrap();
    assert_eq!((quota.used, quota.remaining), (1, 9));
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(entries, 1);
}

async fn reconciliation_appends_adjustments_and_never_rewrites_history(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 100,
            price: "10.00",
            ..Default::default()
        },
    )
    .await;
    reserve_and_charge(&ledger, 10).await.unwrap();
    let before: Vec<(i64, i64, i64)> = entries(&test).await;

    // The console shows 85 left where the ledger has 90: 5 units were used elsewhere.
    let down = ledger
        .reconcile(&channel("sms_code"), 85, Some("console".into()))
        .await
        .unwrap();
    assert_eq!(
        (
            down.local_remaining,
            down.adjusted_units,
            down.remaining_after
        ),
        (90, 5, 85)
    );
    assert_eq!(down.adjusted_cost, yuan("0.50"));
    // Later the console shows 87: two of those were not billed after all.
    let up = ledger
        .reconcile(&channel("sms_code"), 87, None)
        .await
        .unwrap();
    assert_eq!((up.adjusted_units, up.remaining_after), (-2, 87));
    assert_eq!(up.adjusted_cost, Yuan::from_micros(-200_000));

    let after = entries(&test).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "earlier entries are untouched"
    );
    assert_eq!(after.len(), before.len() + 2);
    // Charges and corrections stay apart: 10 used, 3 written off net.
    let quota = ledger.quota(&channel("sms_code")).await.unwrap();
    assert_eq!(
        (quota.used, quota.reconciled, quota.remaining),
        (10, -3, 87)
    );
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reconciliations")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(recorded, 2);
}

async fn entries(test: &TestDb) -> Vec<(i64, i64, i64)> {
    sqlx::query_as("SELECT id, units, cost_micros FROM ledger_entries ORDER BY id")
        .fetch_all(test.db.pool())
        .await
        .unwrap()
}

async fn observe_mode_meters_sends_beyond_the_quota(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Observe);
    add_package(
        &ledger,
        PackageSpec {
            units: 1,
            price: "0.10",
            ..Default::default()
        },
    )
    .await;

    let reservation = reserved(
        ledger
            .reserve(&channel("sms_code"), request(3))
            .await
            .unwrap(),
    );
    assert_eq!(
        (reservation.allocation.units(), reservation.unmetered),
        (1, 2)
    );
    let settled = ledger
        .settle(&reservation, charge(Outcome::Sent))
        .await
        .unwrap();

    assert_eq!((settled.charged_units, settled.cost), (3, yuan("0.10")));
    let metered: i64 = sqlx::query_scalar("SELECT CAST(SUM(units) AS BIGINT) FROM ledger_entries")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(metered, 3);
}

async fn quota_view_reports_usage_and_burn_rate(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 1000,
            purchased_at: "2026-01-01T00:00:00Z",
            expires_at: Some("2099-01-01T00:00:00Z"),
            ..Default::default()
        },
    )
    .await;
    reserve_and_charge(&ledger, 70).await.unwrap();
    let in_flight = reserved(
        ledger
            .reserve(&channel("sms_code"), request(5))
            .await
            .unwrap(),
    );

    let quota = ledger.quota(&channel("sms_code")).await.unwrap();

    assert_eq!(
        (quota.purchased, quota.used, quota.reserved, quota.remaining),
        (1000, 70, 5, 925)
    );
    assert_eq!(quota.remaining_ratio, 0.925);
    assert_eq!(quota.burn_rate_per_day, 10.0);
    assert_eq!(quota.days_left, Some(92.5));
    assert_eq!(quota.next_expiry, Some(time("2099-01-01T00:00:00Z")));
    ledger.settle(&in_flight, release()).await.unwrap();
}

/// A late settlement and the sweeper's can reach the writer together and land in one
/// batch: only one may apply. On a single-threaded runtime the writer cannot run until
/// both settlements are queued, so they are sure to share a batch.
mod two_settlements_of_one_send_charge_it_once {
    #[tokio::test(flavor = "current_thread")]
    async fn sqlite() {
        super::two_settlements_of_one_send_charge_it_once(crate::helpers::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn postgres() {
        super::two_settlements_of_one_send_charge_it_once(crate::helpers::Backend::Postgres).await
    }
}

async fn two_settlements_of_one_send_charge_it_once(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 10,
            price: "1.00",
            ..Default::default()
        },
    )
    .await;
    // Another send holding units in the same package, so a double charge would not be
    // refused for lack of reserved units.
    let other = reserved(
        ledger
            .reserve(&channel("sms_code"), request(3))
            .await
            .unwrap(),
    );
    let reservation = reserved(
        ledger
            .reserve(&channel("sms_code"), request(1))
            .await
            .unwrap(),
    );

    let (first, second) = tokio::join!(
        ledger.settle(&reservation, charge(Outcome::Sent)),
        ledger.settle(&reservation, charge(Outcome::Uncertain)),
    );

    let applied = [first.unwrap().applied, second.unwrap().applied];
    assert_eq!(applied.iter().filter(|a| **a).count(), 1, "{applied:?}");
    let charged: i64 = sqlx::query_scalar("SELECT CAST(SUM(units) AS BIGINT) FROM ledger_entries")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(charged, 1);
    let settled = ledger.settle(&other, charge(Outcome::Sent)).await.unwrap();
    assert!(settled.applied);
    let quota = ledger.quota(&channel("sms_code")).await.unwrap();
    assert_eq!((quota.used, quota.reserved, quota.remaining), (4, 0, 6));
}

/// The common case: a package used up with some sends uncertain, and the console shows
/// that a few units were in fact not used.
async fn reconciliation_gives_units_back_to_a_used_up_package(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 100,
            price: "10.00",
            ..Default::default()
        },
    )
    .await;
    reserve_and_charge(&ledger, 100).await.unwrap();

    let record = ledger
        .reconcile(&channel("sms_code"), 3, None)
        .await
        .unwrap();

    assert_eq!((record.adjusted_units, record.remaining_after), (-3, 3));
    assert_eq!(record.adjusted_cost, Yuan::from_micros(-300_000));
    assert!(reserve_and_charge(&ledger, 3).await.is_some());
    assert!(reserve_and_charge(&ledger, 1).await.is_none());
}

/// On PostgreSQL the writer writes a batch in one statement against the rows it last
/// committed; when another instance changed them meanwhile the statement finds out,
/// writes nothing, and the batch is applied again with the rows locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_one_statement_batch_falls_back_when_another_instance_changed_the_rows() {
    let test = TestDb::new(Backend::Postgres).await;
    let first = test.ledger(LedgerMode::Enforce);
    let second = Ledger::new(test.another_instance().await, LedgerMode::Enforce);
    add_package(
        &first,
        PackageSpec {
            units: 40,
            price: "4.00",
            ..Default::default()
        },
    )
    .await;

    // Alone, after the first batch read the rows, the writer needs no lock.
    for _ in 0..5 {
        reserve_and_charge(&first, 1).await.unwrap();
    }
    let alone = first.batch_counts();
    assert!(alone.optimistic >= 8, "{alone:?}");
    assert_eq!(alone.conflicts, 0, "{alone:?}");

    // Two instances taking turns on the same package: each finds the other's change.
    for _ in 0..5 {
        reserve_and_charge(&second, 1).await.unwrap();
        reserve_and_charge(&first, 1).await.unwrap();
    }
    let after = first.batch_counts();
    assert!(after.conflicts >= 1, "{after:?}");
    assert!(after.locked > alone.locked, "{after:?}");

    // 15 charges in all, each written once, and the package says so.
    let quota = first.quota(&channel("sms_code")).await.unwrap();
    assert_eq!((quota.used, quota.remaining, quota.reserved), (15, 25, 0));
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(test.db.pool())
        .await
        .unwrap();
    assert_eq!(entries, 15);
}

/// An instance whose clock is a day behind stamps its reservations a day old: while its
/// lease (on the database's clock) holds, no other instance sweeps them; once it ends,
/// they are settled at once.
async fn a_live_instance_with_a_slow_clock_keeps_its_reservations(backend: Backend) {
    let test = TestDb::new(backend).await;
    let clock = tollgate::domain::ManualClock::new(chrono::Utc::now() - chrono::Duration::days(1));
    let slow = test.ledger_at(&clock);
    add_package(&slow, PackageSpec::default()).await;
    slow.take_lease("slow-host:8080").await.unwrap();
    let reservation = reserved(
        slow.reserve(&channel("sms_code"), request(2))
            .await
            .unwrap(),
    );

    let other = Ledger::new(test.another_instance().await, LedgerMode::Enforce);
    let sweeper = Sweeper::new(other.clone(), std::time::Duration::from_secs(300));
    assert_eq!(sweeper.try_run_once().await.unwrap(), 0);
    assert_eq!(
        other
            .get_send(&reservation.send_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        tollgate::ledger::SendStatus::Reserved
    );

    slow.end_lease().await.unwrap();
    assert_eq!(sweeper.try_run_once().await.unwrap(), 1);
    let swept = other.get_send(&reservation.send_id).await.unwrap().unwrap();
    assert_eq!(swept.status.as_str(), "uncertain");
    assert!(swept.needs_reconciliation);
}
