//! The ledger's aggregates equal a recomputation from its history, on both backends,
//! after random sequences of purchases, reservations, settlements, reconciliations and
//! the passing of time (packages expiring).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::Row;
use tollgate::domain::instant::{local_day_start, local_hour_start};
use tollgate::domain::{ManualClock, Outcome, PackageUnits, SendClass, Units, Yuan};
use tollgate::ledger::{
    Ledger, NewPackage, QuotaView, Reservation, ReserveOutcome, Settlement, Span, UpstreamRecord,
};
use tollgate::store::{from_micros, to_micros};

use crate::helpers::*;
use crate::on_both_backends;

const SHANGHAI: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

#[derive(Debug, Clone)]
enum Op {
    Buy {
        units: i64,
        price_fen: i64,
        expires_in_hours: Option<i64>,
    },
    Reserve {
        units: u32,
        client: usize,
        class: usize,
    },
    Settle {
        pick: usize,
        outcome: usize,
    },
    Reconcile {
        remaining: u64,
    },
    Wait {
        minutes: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1i64..30, 0i64..5_000, proptest::option::of(1i64..72)).prop_map(
            |(units, price_fen, expires_in_hours)| Op::Buy { units, price_fen, expires_in_hours }
        ),
        5 => (1u32..4, 0usize..3, 0usize..3)
            .prop_map(|(units, client, class)| Op::Reserve { units, client, class }),
        5 => (0usize..100, 0usize..OUTCOMES.len())
            .prop_map(|(pick, outcome)| Op::Settle { pick, outcome }),
        1 => (0u64..40).prop_map(|remaining| Op::Reconcile { remaining }),
        2 => (1i64..600).prop_map(|minutes| Op::Wait { minutes }),
    ]
}

/// (outcome, charged) as the vendor client classifies them.
const OUTCOMES: [(Outcome, bool); 6] = [
    (Outcome::Sent, true),
    (Outcome::Sent, true),
    (Outcome::VendorRejected, true),
    (Outcome::UpstreamError, false),
    (Outcome::AuthFailed, false),
    (Outcome::Uncertain, true),
];
const CLIENTS: [&str; 3] = ["shop", "crm", "ops"];

async fn apply(ledger: &Ledger, clock: &ManualClock, ops: &[Op]) -> Vec<Reservation> {
    let sms = channel("sms_code");
    let mut pending: Vec<Reservation> = Vec::new();
    for op in ops {
        match op {
            Op::Buy {
                units,
                price_fen,
                expires_in_hours,
            } => {
                let now = clock.now();
                let package = NewPackage::new(
                    sms.clone(),
                    PackageUnits::new(*units).unwrap(),
                    Yuan::from_micros(price_fen * 10_000),
                    now - Duration::minutes(1),
                    expires_in_hours.map(|h| now + Duration::hours(h)),
                    None,
                    None,
                )
                .unwrap();
                ledger.register_package(package).await.unwrap();
            }
            Op::Reserve {
                units,
                client,
                class,
            } => {
                let mut request = request(*units);
                request.client = CLIENTS[*client].to_owned();
                request.class = SendClass::ALL[*class];
                request.units = Units::new(*units).unwrap();
                if let ReserveOutcome::Reserved(reservation) =
                    ledger.reserve(&sms, request).await.unwrap()
                {
                    pending.push(reservation);
                }
            }
            Op::Settle { pick, outcome } => {
                if pending.is_empty() {
                    continue;
                }
                let reservation = pending.remove(pick % pending.len());
                let (outcome, charge) = OUTCOMES[*outcome];
                ledger
                    .settle(
                        &reservation,
                        Settlement {
                            outcome,
                            charge,
                            upstream: UpstreamRecord::default(),
                        },
                    )
                    .await
                    .unwrap();
            }
            Op::Reconcile { remaining } => {
                ledger.reconcile(&sms, *remaining, None).await.unwrap();
            }
            Op::Wait { minutes } => clock.advance(Duration::minutes(*minutes)),
        }
    }
    pending
}

/// The quota figures recomputed from packages, sends and entries alone.
async fn recomputed_quota(ledger: &Ledger, now: DateTime<Utc>) -> (i64, i64, i64, i64, i64, i64) {
    let pool = ledger.db().pool();
    let scalar = |sql: &'static str| async move {
        sqlx::query(sql)
            .bind(to_micros(now))
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get::<Option<i64>, _>(0)
            .unwrap()
            .unwrap_or(0)
    };
    let purchased = scalar("SELECT CAST(SUM(units) AS BIGINT) FROM packages WHERE $1 = $1").await;
    let used = scalar(
        "SELECT CAST(SUM(units) AS BIGINT) FROM ledger_entries WHERE send_id IS NOT NULL \
         AND package_id IS NOT NULL AND $1 = $1",
    )
    .await;
    let reserved =
        scalar("SELECT CAST(SUM(taken - charged) AS BIGINT) FROM packages WHERE $1 = $1").await;
    let reconciled = scalar(
        "SELECT CAST(-SUM(units) AS BIGINT) FROM ledger_entries \
         WHERE reconciliation_id IS NOT NULL AND $1 = $1",
    )
    .await;
    let expired = scalar(
        "SELECT CAST(SUM(units - taken) AS BIGINT) FROM packages \
         WHERE expires_at IS NOT NULL AND expires_at <= $1",
    )
    .await;
    let remaining = scalar(
        "SELECT CAST(SUM(units - taken) AS BIGINT) FROM packages \
         WHERE expires_at IS NULL OR expires_at > $1",
    )
    .await;
    (purchased, used, reserved, reconciled, expired, remaining)
}

type Buckets = BTreeMap<(DateTime<Utc>, String, String), [i64; 8]>;

/// Hour or day buckets recomputed from the sends and the adjustment entries.
async fn recomputed_buckets(ledger: &Ledger, span: Span) -> Buckets {
    let pool = ledger.db().pool();
    let start = |at: DateTime<Utc>| match span {
        Span::Hour => local_hour_start(at, SHANGHAI),
        Span::Day => local_day_start(at, SHANGHAI),
    };
    let mut buckets = Buckets::new();
    let sends = sqlx::query(
        "SELECT client, class, status, charged_units, cost_micros, settled_at FROM sends \
         WHERE status <> 'reserved'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for row in sends {
        let status: String = row.get("status");
        let at = from_micros(row.get("settled_at"));
        let counts = buckets
            .entry((start(at), row.get("client"), row.get("class")))
            .or_default();
        counts[0] += 1;
        counts[1] += i64::from(status == "sent");
        counts[2] += i64::from(status != "sent" && status != "uncertain");
        counts[3] += i64::from(status == "uncertain");
        counts[4] += row.get::<i64, _>("charged_units");
        counts[5] += row.get::<i64, _>("cost_micros");
    }
    let adjustments = sqlx::query(
        "SELECT units, cost_micros, created_at FROM ledger_entries \
         WHERE reconciliation_id IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for row in adjustments {
        let at = from_micros(row.get("created_at"));
        let counts = buckets
            .entry((start(at), String::new(), String::new()))
            .or_default();
        counts[6] += row.get::<i64, _>("units");
        counts[7] += row.get::<i64, _>("cost_micros");
    }
    buckets.retain(|_, counts| counts.iter().any(|c| *c != 0));
    buckets
}

async fn stored_buckets(ledger: &Ledger, span: Span) -> Buckets {
    let far = DateTime::from_timestamp(4_000_000_000, 0).unwrap();
    let mut buckets = Buckets::new();
    for row in ledger
        .usage(span, DateTime::UNIX_EPOCH, far, None)
        .await
        .unwrap()
    {
        let c = row.counts;
        let counts = buckets
            .entry((row.bucket_start, row.client, row.class))
            .or_default();
        for (total, value) in counts.iter_mut().zip([
            c.sends,
            c.sent,
            c.failed,
            c.uncertain,
            c.billed_units,
            c.cost_micros,
            c.adjusted_units,
            c.adjusted_cost_micros,
        ]) {
            *total += value;
        }
    }
    buckets.retain(|_, counts| counts.iter().any(|c| *c != 0));
    buckets
}

fn figures(view: &QuotaView) -> (i64, i64, i64, i64, i64, i64) {
    (
        view.purchased,
        view.used,
        view.reserved,
        view.reconciled,
        view.expired,
        view.remaining,
    )
}

async fn check(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let test = TestDb::new(backend).await;
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .into(),
    );
    let ledger = test.ledger_at(&clock);
    apply(&ledger, &clock, &ops).await;
    // Time passes after the last operation too, so that packages expire unobserved.
    clock.advance(Duration::hours(30));
    let view = ledger.quota(&channel("sms_code")).await.unwrap();
    let raw = recomputed_quota(&ledger, clock.now()).await;
    prop_assert_eq!(
        figures(&view),
        raw,
        "quota view vs recomputation after {:?}",
        ops
    );
    prop_assert_eq!(
        view.remaining,
        view.purchased - view.used - view.reserved - view.expired + view.reconciled
    );
    let totals = ledger.totals().await.unwrap();
    let billed: i64 = totals.iter().map(|t| t.billed_units).sum();
    prop_assert_eq!(billed, view.used);
    for span in [Span::Hour, Span::Day] {
        prop_assert_eq!(
            stored_buckets(&ledger, span).await,
            recomputed_buckets(&ledger, span).await,
            "{:?} buckets after {:?}",
            span,
            ops
        );
    }
    Ok(())
}

async fn the_aggregates_equal_a_recomputation_from_the_history(backend: Backend) {
    let cases = match backend {
        Backend::Sqlite => 24,
        Backend::Postgres => 12,
    };
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
            handle.block_on(check(backend, ops))
        })
    })
    .await
    .unwrap();
    if let Err(err) = result {
        panic!("{err}");
    }
}

on_both_backends!(the_aggregates_equal_a_recomputation_from_the_history);
