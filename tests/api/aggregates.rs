//! The ledger's aggregates equal a recomputation from its history, on both backends,
//! after random sequences of purchases, reservations, settlements, reconciliations and
//! the passing of time (packages expiring), in enforce and in observe mode.
//!
//! Every column the ledger maintains beside its history is compared with raw SQL sums
//! over the rows it summarises, read here directly and never through the ledger:
//!
//! - `channel_totals`, per channel: `billed_units`, `cost_micros` and `unmetered_units`
//!   from the send entries of `ledger_entries`; `reconciled_units` and
//!   `reconciled_cost_micros` from its adjustment entries; `purchased_units` and
//!   `first_purchased_at` from `packages`; `reserved_units` from the sends still
//!   `reserved`; `auth_failing` from the latest settled send whose outcome judged the
//!   AppCode. `vendor_remaining` and `vendor_remaining_at` follow a count that is not
//!   stored per send, so they are compared with what the test itself settled last;
//! - `usage_buckets`, per span (hour and day), channel, local bucket start, client,
//!   class and route: `sends`, `sent`, `failed` and `uncertain` from `sends`,
//!   `billed_units` and `cost_micros` from the send entries, `adjusted_units` and
//!   `adjusted_cost_micros` from the adjustment entries; the buckets are cut in SQL
//!   (Asia/Shanghai is UTC+8 all year), not with the ledger's own functions;
//! - the packages' own counters: `charged` from the entries, `taken - charged` from the
//!   allocations of the sends still `reserved`.
//!
//! The comparison runs after every operation (a column that is only wrong until the
//! next settlement, such as `auth_failing`, is caught too) and once more after time has
//! passed. The read interface (quota views, `totals`, `usage`, `auth_failing`) is
//! compared with the same recomputations.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::any::AnyRow;
use sqlx::Row;
use tollgate::domain::{
    LedgerMode, ManualClock, Outcome, PackageUnits, RouteName, SendClass, Units, Yuan,
};
use tollgate::ledger::{
    Ledger, LedgerOptions, NewPackage, QuotaView, Reservation, ReserveOutcome, Settlement, Span,
    UpstreamRecord,
};
use tollgate::store::to_micros;

use crate::helpers::*;
use crate::on_both_backends;

const CHANNELS: [&str; 2] = ["sms_code", "voice_notice"];
const CLIENTS: [&str; 3] = ["shop", "crm", "ops"];
const ROUTES: [Option<&str>; 3] = [None, Some("otp"), Some("notices")];

/// (outcome, charged) as the vendor client classifies them.
const OUTCOMES: [(Outcome, bool); 8] = [
    (Outcome::Sent, true),
    (Outcome::Sent, true),
    (Outcome::VendorRejected, true),
    (Outcome::VendorQuotaExhausted, false),
    (Outcome::Throttled, false),
    (Outcome::UpstreamError, false),
    (Outcome::AuthFailed, false),
    (Outcome::Uncertain, true),
];

/// The outcomes in which the vendor said something about the AppCode.
const JUDGED: &str =
    "('sent', 'vendor_rejected', 'vendor_quota_exhausted', 'throttled', 'auth_failed')";

/// Bucket starts in UTC microseconds, for Asia/Shanghai (UTC+8, no daylight saving).
const UTC_OFFSET_MICROS: i64 = 8 * 3_600_000_000;
const HOUR_MICROS: i64 = 3_600_000_000;
const DAY_MICROS: i64 = 24 * HOUR_MICROS;

#[derive(Debug, Clone)]
enum Op {
    Buy {
        channel: usize,
        units: i64,
        price_fen: i64,
        bought_hours_ago: i64,
        expires_in_hours: Option<i64>,
    },
    Reserve {
        channel: usize,
        units: u32,
        client: usize,
        class: usize,
        route: usize,
    },
    Settle {
        pick: usize,
        outcome: usize,
        vendor_remaining: Option<i64>,
    },
    Reconcile {
        channel: usize,
        remaining: u64,
    },
    Wait {
        minutes: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..2, 1i64..30, 0i64..5_000, 0i64..48, proptest::option::of(1i64..72))
            .prop_map(|(channel, units, price_fen, bought_hours_ago, expires_in_hours)| {
                Op::Buy { channel, units, price_fen, bought_hours_ago, expires_in_hours }
            }),
        5 => (0usize..2, 1u32..4, 0usize..3, 0usize..3, 0usize..3).prop_map(
            |(channel, units, client, class, route)| Op::Reserve {
                channel,
                units,
                client,
                class,
                route
            }
        ),
        5 => (0usize..100, 0usize..OUTCOMES.len(), proptest::option::of(0i64..500)).prop_map(
            |(pick, outcome, vendor_remaining)| Op::Settle { pick, outcome, vendor_remaining }
        ),
        1 => (0usize..2, 0u64..40).prop_map(|(channel, remaining)| Op::Reconcile {
            channel,
            remaining
        }),
        2 => (1i64..600).prop_map(|minutes| Op::Wait { minutes }),
    ]
}

/// What the test settled last with a vendor's count, per channel: (count, when).
type VendorCounts = BTreeMap<String, (i64, i64)>;

/// Applies one operation; `pending` holds the reservations not settled yet.
async fn apply(
    ledger: &Ledger,
    clock: &ManualClock,
    op: &Op,
    pending: &mut Vec<Reservation>,
    vendor_counts: &mut VendorCounts,
) {
    {
        match op {
            Op::Buy {
                channel: c,
                units,
                price_fen,
                bought_hours_ago,
                expires_in_hours,
            } => {
                let now = clock.now();
                let package = NewPackage::new(
                    channel(CHANNELS[*c]),
                    PackageUnits::new(*units).unwrap(),
                    Yuan::from_micros(price_fen * 10_000),
                    now - Duration::minutes(1) - Duration::hours(*bought_hours_ago),
                    expires_in_hours.map(|h| now + Duration::hours(h)),
                    None,
                    None,
                )
                .unwrap();
                ledger.register_package(package).await.unwrap();
            }
            Op::Reserve {
                channel: c,
                units,
                client,
                class,
                route,
            } => {
                let mut request = request(*units);
                request.client = CLIENTS[*client].to_owned();
                request.class = SendClass::ALL[*class];
                request.route = ROUTES[*route].map(|r| RouteName::parse(r).unwrap());
                request.units = Units::new(*units).unwrap();
                if let ReserveOutcome::Reserved(reservation) = ledger
                    .reserve(&channel(CHANNELS[*c]), request)
                    .await
                    .unwrap()
                {
                    pending.push(reservation);
                }
            }
            Op::Settle {
                pick,
                outcome,
                vendor_remaining,
            } => {
                if pending.is_empty() {
                    return;
                }
                let reservation = pending.remove(pick % pending.len());
                let (outcome, charge) = OUTCOMES[*outcome];
                let settled = ledger
                    .settle(
                        &reservation,
                        Settlement {
                            outcome,
                            charge,
                            upstream: UpstreamRecord {
                                package_remaining: *vendor_remaining,
                                ..UpstreamRecord::default()
                            },
                        },
                    )
                    .await
                    .unwrap();
                assert!(settled.applied, "a pending reservation settles");
                if let Some(count) = vendor_remaining {
                    vendor_counts.insert(
                        reservation.channel.to_string(),
                        (*count, to_micros(clock.now())),
                    );
                }
            }
            Op::Reconcile {
                channel: c,
                remaining,
            } => {
                ledger
                    .reconcile(&channel(CHANNELS[*c]), *remaining, None)
                    .await
                    .unwrap();
            }
            Op::Wait { minutes } => clock.advance(Duration::minutes(*minutes)),
        }
    }
}

async fn rows(ledger: &Ledger, sql: &str) -> Vec<AnyRow> {
    sqlx::query(sql)
        .fetch_all(ledger.db().pool())
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

fn opt(row: &AnyRow, column: &str) -> i64 {
    row.get::<Option<i64>, _>(column).unwrap_or(0)
}

/// The quota figures of one channel recomputed from packages, sends and entries alone.
async fn recomputed_quota(
    ledger: &Ledger,
    channel: &str,
    now: DateTime<Utc>,
) -> (i64, i64, i64, i64, i64, i64) {
    let pool = ledger.db().pool();
    let scalar = |sql: &'static str| async move {
        sqlx::query(sql)
            .bind(channel)
            .bind(to_micros(now))
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get::<Option<i64>, _>(0)
            .unwrap()
            .unwrap_or(0)
    };
    let purchased =
        scalar("SELECT CAST(SUM(units) AS BIGINT) FROM packages WHERE channel = $1 AND $2 = $2")
            .await;
    let used = scalar(
        "SELECT CAST(SUM(units) AS BIGINT) FROM ledger_entries WHERE channel = $1 \
         AND send_id IS NOT NULL AND package_id IS NOT NULL AND $2 = $2",
    )
    .await;
    let reserved = scalar(
        "SELECT CAST(SUM(units - unmetered_units) AS BIGINT) FROM sends \
         WHERE channel = $1 AND status = 'reserved' AND $2 = $2",
    )
    .await;
    let reconciled = scalar(
        "SELECT CAST(-SUM(units) AS BIGINT) FROM ledger_entries \
         WHERE channel = $1 AND reconciliation_id IS NOT NULL AND $2 = $2",
    )
    .await;
    let expired = scalar(
        "SELECT CAST(SUM(units - taken) AS BIGINT) FROM packages \
         WHERE channel = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
    )
    .await;
    let remaining = scalar(
        "SELECT CAST(SUM(units - taken) AS BIGINT) FROM packages \
         WHERE channel = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .await;
    (purchased, used, reserved, reconciled, expired, remaining)
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

/// Every column of a `channel_totals` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Totals {
    billed_units: i64,
    cost_micros: i64,
    purchased_units: i64,
    reserved_units: i64,
    unmetered_units: i64,
    reconciled_units: i64,
    reconciled_cost_micros: i64,
    auth_failing: bool,
    vendor_remaining: Option<i64>,
    vendor_remaining_at: Option<i64>,
    first_purchased_at: Option<i64>,
}

type TotalsByChannel = BTreeMap<String, Totals>;

async fn stored_totals(ledger: &Ledger) -> TotalsByChannel {
    let mut totals = TotalsByChannel::new();
    for row in rows(
        ledger,
        "SELECT channel, billed_units, cost_micros, purchased_units, reserved_units, \
         unmetered_units, reconciled_units, reconciled_cost_micros, auth_failing, \
         vendor_remaining, vendor_remaining_at, first_purchased_at FROM channel_totals",
    )
    .await
    {
        totals.insert(
            row.get("channel"),
            Totals {
                billed_units: row.get("billed_units"),
                cost_micros: row.get("cost_micros"),
                purchased_units: row.get("purchased_units"),
                reserved_units: row.get("reserved_units"),
                unmetered_units: row.get("unmetered_units"),
                reconciled_units: row.get("reconciled_units"),
                reconciled_cost_micros: row.get("reconciled_cost_micros"),
                auth_failing: row.get::<i64, _>("auth_failing") != 0,
                vendor_remaining: row.get("vendor_remaining"),
                vendor_remaining_at: row.get("vendor_remaining_at"),
                first_purchased_at: row.get("first_purchased_at"),
            },
        );
    }
    totals.retain(|_, t| *t != Totals::default());
    totals
}

async fn recomputed_totals(ledger: &Ledger, vendor_counts: &VendorCounts) -> TotalsByChannel {
    let mut totals = TotalsByChannel::new();
    for row in rows(
        ledger,
        "SELECT channel, CAST(SUM(units) AS BIGINT) AS units, \
         CAST(MIN(purchased_at) AS BIGINT) AS first FROM packages GROUP BY channel",
    )
    .await
    {
        let t = totals.entry(row.get("channel")).or_default();
        t.purchased_units = opt(&row, "units");
        t.first_purchased_at = row.get("first");
    }
    for row in rows(
        ledger,
        "SELECT channel, CAST(SUM(units) AS BIGINT) AS units, \
         CAST(SUM(cost_micros) AS BIGINT) AS cost, \
         CAST(SUM(CASE WHEN package_id IS NULL THEN units ELSE 0 END) AS BIGINT) AS unmetered \
         FROM ledger_entries WHERE send_id IS NOT NULL GROUP BY channel",
    )
    .await
    {
        let t = totals.entry(row.get("channel")).or_default();
        t.billed_units = opt(&row, "units");
        t.cost_micros = opt(&row, "cost");
        t.unmetered_units = opt(&row, "unmetered");
    }
    for row in rows(
        ledger,
        "SELECT channel, CAST(-SUM(units) AS BIGINT) AS units, \
         CAST(-SUM(cost_micros) AS BIGINT) AS cost \
         FROM ledger_entries WHERE reconciliation_id IS NOT NULL GROUP BY channel",
    )
    .await
    {
        let t = totals.entry(row.get("channel")).or_default();
        t.reconciled_units = opt(&row, "units");
        t.reconciled_cost_micros = opt(&row, "cost");
    }
    for row in rows(
        ledger,
        "SELECT channel, CAST(SUM(units - unmetered_units) AS BIGINT) AS units \
         FROM sends WHERE status = 'reserved' GROUP BY channel",
    )
    .await
    {
        totals.entry(row.get("channel")).or_default().reserved_units = opt(&row, "units");
    }
    // The latest word on the AppCode: every operation has an instant of its own, so
    // no two settlements share a `settled_at`.
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for row in rows(
        ledger,
        &format!("SELECT channel, status, settled_at FROM sends WHERE status IN {JUDGED}"),
    )
    .await
    {
        let at: i64 = row.get("settled_at");
        let entry = latest
            .entry(row.get("channel"))
            .or_insert((i64::MIN, String::new()));
        assert_ne!(entry.0, at, "two settlements at one instant");
        if at > entry.0 {
            *entry = (at, row.get("status"));
        }
    }
    for (channel, (_, status)) in latest {
        totals.entry(channel).or_default().auth_failing = status == "auth_failed";
    }
    for (channel, (count, at)) in vendor_counts {
        let t = totals.entry(channel.clone()).or_default();
        t.vendor_remaining = Some(*count);
        t.vendor_remaining_at = Some(*at);
    }
    totals.retain(|_, t| *t != Totals::default());
    totals
}

/// (channel, bucket start in UTC micros, client, class, route) → sends, sent, failed,
/// uncertain, billed units, cost, adjusted units, adjusted cost.
type Buckets = BTreeMap<(String, i64, String, String, String), [i64; 8]>;

/// The start of the local bucket of `span` holding the instant in `column`, in SQL.
fn bucket_start(span: Span, column: &str) -> String {
    let length = match span {
        Span::Hour => HOUR_MICROS,
        Span::Day => DAY_MICROS,
    };
    format!("((({column} + {UTC_OFFSET_MICROS}) / {length}) * {length} - {UTC_OFFSET_MICROS})")
}

/// Hour or day buckets recomputed from the sends, the send entries and the adjustment
/// entries.
async fn recomputed_buckets(ledger: &Ledger, span: Span) -> Buckets {
    let mut buckets = Buckets::new();
    let sends = format!(
        "SELECT s.channel, {start} AS start, s.client, s.class, s.route, \
         CAST(COUNT(*) AS BIGINT) AS sends, \
         CAST(SUM(CASE WHEN s.status = 'sent' THEN 1 ELSE 0 END) AS BIGINT) AS sent, \
         CAST(SUM(CASE WHEN s.status IN ('sent', 'uncertain') THEN 0 ELSE 1 END) AS BIGINT) \
         AS failed, \
         CAST(SUM(CASE WHEN s.status = 'uncertain' THEN 1 ELSE 0 END) AS BIGINT) AS uncertain, \
         CAST(SUM(COALESCE(e.units, 0)) AS BIGINT) AS units, \
         CAST(SUM(COALESCE(e.cost, 0)) AS BIGINT) AS cost \
         FROM sends s LEFT JOIN (SELECT send_id, SUM(units) AS units, \
         SUM(cost_micros) AS cost FROM ledger_entries WHERE send_id IS NOT NULL \
         GROUP BY send_id) e ON e.send_id = s.id \
         WHERE s.status <> 'reserved' \
         GROUP BY s.channel, {start}, s.client, s.class, s.route",
        start = bucket_start(span, "s.settled_at"),
    );
    for row in rows(ledger, &sends).await {
        let key = (
            row.get("channel"),
            row.get("start"),
            row.get("client"),
            row.get("class"),
            row.get("route"),
        );
        let counts = buckets.entry(key).or_default();
        for (i, column) in ["sends", "sent", "failed", "uncertain", "units", "cost"]
            .into_iter()
            .enumerate()
        {
            counts[i] += opt(&row, column);
        }
    }
    let adjustments = format!(
        "SELECT channel, {start} AS start, CAST(SUM(units) AS BIGINT) AS units, \
         CAST(SUM(cost_micros) AS BIGINT) AS cost FROM ledger_entries \
         WHERE reconciliation_id IS NOT NULL GROUP BY channel, {start}",
        start = bucket_start(span, "created_at"),
    );
    for row in rows(ledger, &adjustments).await {
        let key = (
            row.get("channel"),
            row.get("start"),
            String::new(),
            String::new(),
            String::new(),
        );
        let counts = buckets.entry(key).or_default();
        counts[6] += opt(&row, "units");
        counts[7] += opt(&row, "cost");
    }
    buckets.retain(|_, counts| counts.iter().any(|c| *c != 0));
    buckets
}

/// The `usage_buckets` rows of `span`, read from the table.
async fn stored_buckets(ledger: &Ledger, span: Span) -> Buckets {
    let mut buckets = Buckets::new();
    let sql = format!(
        "SELECT channel, bucket_start, client, class, route, sends, sent, failed, uncertain, \
         billed_units, cost_micros, adjusted_units, adjusted_cost_micros FROM usage_buckets \
         WHERE span = '{}'",
        span.as_str()
    );
    for row in rows(ledger, &sql).await {
        let key = (
            row.get("channel"),
            row.get("bucket_start"),
            row.get("client"),
            row.get("class"),
            row.get("route"),
        );
        let counts = [
            "sends",
            "sent",
            "failed",
            "uncertain",
            "billed_units",
            "cost_micros",
            "adjusted_units",
            "adjusted_cost_micros",
        ]
        .map(|column| row.get::<i64, _>(column));
        assert!(buckets.insert(key, counts).is_none(), "one row per bucket");
    }
    buckets.retain(|_, counts| counts.iter().any(|c| *c != 0));
    buckets
}

/// The buckets of `span` as the ledger's read interface returns them.
async fn buckets_read(ledger: &Ledger, span: Span) -> Buckets {
    let far = DateTime::from_timestamp(4_000_000_000, 0).unwrap();
    let mut buckets = Buckets::new();
    for row in ledger
        .usage(span, DateTime::UNIX_EPOCH, far, None)
        .await
        .unwrap()
    {
        let c = row.counts;
        let key = (
            row.channel,
            to_micros(row.bucket_start),
            row.client,
            row.class,
            row.route,
        );
        let counts = [
            c.sends,
            c.sent,
            c.failed,
            c.uncertain,
            c.billed_units,
            c.cost_micros,
            c.adjusted_units,
            c.adjusted_cost_micros,
        ];
        assert!(buckets.insert(key, counts).is_none(), "one row per bucket");
    }
    buckets.retain(|_, counts| counts.iter().any(|c| *c != 0));
    buckets
}

/// Per package: (charged, taken − charged) as stored, and as the entries and the
/// allocations of the sends still reserved make them.
async fn package_counters(
    ledger: &Ledger,
) -> (BTreeMap<i64, (i64, i64)>, BTreeMap<i64, (i64, i64)>) {
    let mut stored = BTreeMap::new();
    let mut recomputed: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for row in rows(ledger, "SELECT id, taken, charged FROM packages").await {
        let (taken, charged): (i64, i64) = (row.get("taken"), row.get("charged"));
        stored.insert(row.get("id"), (charged, taken - charged));
        recomputed.insert(row.get("id"), (0, 0));
    }
    for row in rows(
        ledger,
        "SELECT package_id, CAST(SUM(units) AS BIGINT) AS units FROM ledger_entries \
         WHERE package_id IS NOT NULL GROUP BY package_id",
    )
    .await
    {
        recomputed.entry(row.get("package_id")).or_default().0 = opt(&row, "units");
    }
    for row in rows(
        ledger,
        "SELECT allocation FROM sends WHERE status = 'reserved'",
    )
    .await
    {
        let allocation: String = row.get("allocation");
        for part in allocation.split(',').filter(|part| !part.is_empty()) {
            let (package, units) = part.split_once(':').expect("package:units");
            recomputed.entry(package.parse().unwrap()).or_default().1 +=
                units.parse::<i64>().unwrap();
        }
    }
    (stored, recomputed)
}

/// Compares every aggregate with its recomputation; `ops` are the operations applied
/// so far (for the failure message).
async fn compare(
    ledger: &Ledger,
    now: DateTime<Utc>,
    vendor_counts: &VendorCounts,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mode = ledger.mode();
    let totals = stored_totals(ledger).await;
    prop_assert_eq!(
        &totals,
        &recomputed_totals(ledger, vendor_counts).await,
        "channel_totals vs recomputation ({:?} mode) after {:?}",
        mode,
        ops
    );
    for span in [Span::Hour, Span::Day] {
        let stored = stored_buckets(ledger, span).await;
        prop_assert_eq!(
            &stored,
            &recomputed_buckets(ledger, span).await,
            "{:?} usage_buckets vs recomputation ({:?} mode) after {:?}",
            span,
            mode,
            ops
        );
        prop_assert_eq!(&buckets_read(ledger, span).await, &stored);
    }
    let (stored, recomputed) = package_counters(ledger).await;
    prop_assert_eq!(
        stored,
        recomputed,
        "package counters vs recomputation ({:?} mode) after {:?}",
        mode,
        ops
    );

    // The read interface agrees with the same recomputations.
    for name in CHANNELS {
        let view = ledger.quota(&channel(name)).await.unwrap();
        prop_assert_eq!(
            figures(&view),
            recomputed_quota(ledger, name, now).await,
            "{} quota view vs recomputation ({:?} mode) after {:?}",
            name,
            mode,
            ops
        );
        prop_assert_eq!(
            view.remaining,
            view.purchased - view.used - view.reserved - view.expired + view.reconciled
        );
        let t = totals.get(name).cloned().unwrap_or_default();
        prop_assert_eq!(view.unmetered, t.unmetered_units);
        prop_assert_eq!(view.vendor_remaining, t.vendor_remaining);
        prop_assert_eq!(
            view.vendor_remaining_at.map(to_micros),
            t.vendor_remaining_at
        );
        prop_assert_eq!(
            ledger.auth_failing(&channel(name)).await.unwrap(),
            t.auth_failing
        );
    }
    let billed: BTreeMap<String, (i64, i64)> = ledger
        .totals()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.channel, (t.billed_units, t.cost.micros())))
        .collect();
    let expected: BTreeMap<String, (i64, i64)> = totals
        .iter()
        .filter(|(_, t)| t.billed_units != 0 || t.cost_micros != 0)
        .map(|(channel, t)| (channel.clone(), (t.billed_units, t.cost_micros)))
        .collect();
    prop_assert_eq!(billed, expected);
    Ok(())
}

/// Applies `ops` one by one and compares after each of them (states such as
/// `auth_failing` or `reserved_units` are only caught when they are not back at rest),
/// and once more after time has passed.
async fn check(backend: Backend, observe: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let test = TestDb::new(backend).await;
    let clock = ManualClock::new(
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
            .unwrap()
            .into(),
    );
    let mode = if observe {
        LedgerMode::Observe
    } else {
        LedgerMode::Enforce
    };
    let ledger = Ledger::with_options(
        test.db.clone(),
        LedgerOptions {
            clock: clock.clock(),
            timezone: chrono_tz::Asia::Shanghai,
            ..LedgerOptions::new(mode)
        },
    );
    let mut pending = Vec::new();
    let mut vendor_counts = VendorCounts::new();
    for (i, op) in ops.iter().enumerate() {
        apply(&ledger, &clock, op, &mut pending, &mut vendor_counts).await;
        compare(&ledger, clock.now(), &vendor_counts, &ops[..=i]).await?;
        // Every operation at its own instant, so that "the latest" is well defined.
        clock.advance(Duration::seconds(1));
    }
    // Time passes after the last operation too, so that packages expire unobserved.
    clock.advance(Duration::hours(30));
    compare(&ledger, clock.now(), &vendor_counts, &ops).await
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
        runner.run(
            &(any::<bool>(), proptest::collection::vec(op(), 1..60)),
            |(observe, ops)| handle.block_on(check(backend, observe, ops)),
        )
    })
    .await
    .unwrap();
    if let Err(err) = result {
        panic!("{err}");
    }
}

on_both_backends!(the_aggregates_equal_a_recomputation_from_the_history);
