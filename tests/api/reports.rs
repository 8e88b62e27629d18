//! Monthly reports: month boundaries, exact totals, CSV, roll-ups, the endpoint.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use tollgate::domain::LedgerMode;
use tollgate::domain::Outcome;
use tollgate::ledger::{Ledger, Settlement, UpstreamRecord};
use tollgate::report::{apply_retention, roll_up, Month, MonthlyReport, Source};
use tollgate::store::{to_micros, Db};

use crate::app::{spawn_app, ADMIN_TOKEN, SHOP_TOKEN};
use crate::helpers::*;
use crate::on_both_backends;

const SHANGHAI: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn month(raw: &str) -> Month {
    Month::parse(raw).unwrap()
}

/// One send through the ledger (reserved, then settled as `outcome`), then moved to
/// `at`: its row and its charge entries are rewritten to that time.
async fn send_at(
    ledger: &Ledger,
    channel_name: &str,
    client: &str,
    units: u32,
    outcome: Outcome,
    at: &str,
) -> String {
    let mut req = request(units);
    req.client = client.to_owned();
    let id = req.send_id.clone();
    let reservation = reserved(ledger.reserve(&channel(channel_name), req).await.unwrap());
    let charge = !matches!(outcome, Outcome::UpstreamError | Outcome::Throttled);
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
    let at = to_micros(time(at));
    for table in [
        "sends SET created_at = $1 WHERE id = $2",
        "ledger_entries SET created_at = $1 WHERE send_id = $2",
    ] {
        sqlx::query(&format!("UPDATE {table}"))
            .bind(at)
            .bind(&id)
            .execute(ledger.db().pool())
            .await
            .unwrap();
    }
    id
}

async fn ledger_cost_between(db: &Db, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    sqlx::query(
        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost FROM ledger_entries \
         WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_one(db.pool())
    .await
    .unwrap()
    .try_get("cost")
    .unwrap()
}

/// A ledger with November traffic on two channels and two clients: sends that were sent,
/// rejected (charged), released and uncertain, two prices (one that does not divide
/// evenly), a reconciliation, and an October charge.
pub async fn november_ledger(test: &TestDb) -> Ledger {
    let ledger = test.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            units: 1000,
            price: "45.00",
            purchased_at: "2026-11-02T01:00:00Z",
            ..Default::default()
        },
    )
    .await;
    add_package(
        &ledger,
        PackageSpec {
            channel: "voice_notice",
            units: 7,
            price: "10.00",
            purchased_at: "2026-10-01T00:00:00Z",
            ..Default::default()
        },
    )
    .await;
    send_at(
        &ledger,
        "sms_code",
        "shop",
        2,
        Outcome::Sent,
        "2026-10-20T03:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        "sms_code",
        "shop",
        1,
        Outcome::Sent,
        "2026-11-03T02:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        "sms_code",
        "shop",
        3,
        Outcome::VendorRejected,
        "2026-11-04T09:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        "sms_code",
        "crm",
        2,
        Outcome::UpstreamError,
        "2026-11-05T09:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        "sms_code",
        "crm",
        2,
        Outcome::Uncertain,
        "2026-11-12T23:59:00Z",
    )
    .await;
    for day in ["03", "09", "17", "17", "28"] {
        send_at(
            &ledger,
            "voice_notice",
            "crm",
            1,
            Outcome::Sent,
            &format!("2026-11-{day}T06:00:00Z"),
        )
        .await;
    }
    // The vendor says 1 voice unit is left where the ledger has 2: one unit is charged.
    ledger
        .reconcile(&channel("voice_notice"), 1, None)
        .await
        .unwrap();
    sqlx::query("UPDATE ledger_entries SET created_at = $1 WHERE reconciliation_id IS NOT NULL")
        .bind(to_micros(time("2026-11-29T08:00:00Z")))
        .execute(test.db.pool())
        .await
        .unwrap();
    ledger
}

async fn a_charge_at_2330_on_the_last_day_belongs_to_that_month(backend: Backend) {
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
    // 23:30 on 30 November in Shanghai, and midnight that begins 1 December there.
    send_at(
        &ledger,
        "sms_code",
        "shop",
        1,
        Outcome::Sent,
        "2026-11-30T15:30:00Z",
    )
    .await;
    send_at(
        &ledger,
        "sms_code",
        "shop",
        2,
        Outcome::Sent,
        "2026-11-30T16:00:00Z",
    )
    .await;

    let now = time("2027-01-15T00:00:00Z");
    let november = MonthlyReport::build(&test.db, month("2026-11"), SHANGHAI, now)
        .await
        .unwrap();
    let december = MonthlyReport::build(&test.db, month("2026-12"), SHANGHAI, now)
        .await
        .unwrap();

    assert_eq!(
        (
            november.total.figures.sends,
            november.total.figures.billed_units
        ),
        (1, 1)
    );
    assert_eq!(november.total.total_cost, yuan("0.10"));
    assert_eq!(
        (
            december.total.figures.sends,
            december.total.figures.billed_units
        ),
        (1, 2)
    );
    assert_eq!(december.previous_month.total_cost, yuan("0.10"));
    // In UTC both would fall in November.
    let in_utc = MonthlyReport::build(&test.db, month("2026-11"), chrono_tz::UTC, now)
        .await
        .unwrap();
    assert_eq!(in_utc.total.figures.billed_units, 3);
}

async fn report_totals_equal_the_ledger_to_the_fen_and_the_csv_parses_back(backend: Backend) {
    let test = TestDb::new(backend).await;
    november_ledger(&test).await;
    let november = month("2026-11");
    let report = MonthlyReport::build(&test.db, november, SHANGHAI, time("2026-12-10T00:00:00Z"))
        .await
        .unwrap();

    let ledger_total =
        ledger_cost_between(&test.db, november.start(SHANGHAI), november.end(SHANGHAI)).await;
    assert_eq!(report.total.total_cost.micros(), ledger_total);
    assert!(ledger_total > 0);
    // 45.00/1000 per SMS unit: 1 + 3 + 2 (uncertain) units; 10.00/7 per voice unit: 5 + 1.
    assert_eq!(report.total.figures.billed_units, 11);
    assert_eq!(report.total.adjusted_units, 1);
    assert_eq!(report.total.total_cost, yuan("8.841429")); // 0.27 + round(10·6/7)
    let shop = report.lines.iter().find(|l| l.client == "shop").unwrap();
    assert_eq!(
        (shop.figures.sends, shop.figures.sent, shop.figures.failed),
        (2, 1, 1)
    );
    let crm_sms = report
        .lines
        .iter()
        .find(|l| l.client == "crm" && l.channel == "sms_code")
        .unwrap();
    assert_eq!(
        (
            crm_sms.figures.sends,
            crm_sms.figures.failed,
            crm_sms.figures.uncertain
        ),
        (2, 1, 1)
    );
    assert_eq!(report.previous_month.total_cost, yuan("0.09"));
    assert_eq!(report.purchases.len(), 1);
    assert_eq!(report.total.purchases, yuan("45.00"));
    // November's 30 days, projected onto December's 31.
    let sms_forecast = report
        .forecast
        .channels
        .iter()
        .find(|c| c.channel == "sms_code")
        .unwrap();
    assert_eq!(sms_forecast.cost, yuan("0.279")); // 0.27 / 30 × 31

    // The CSV parses back to the same numbers.
    let csv = tollgate::report::to_csv(&report);
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let cost_of = |row: &Vec<String>| row[9].parse::<Decimal>().unwrap();
    let sum_of =
        |section: &str| -> Decimal { rows.iter().filter(|r| r[0] == section).map(cost_of).sum() };
    let total_row = rows.iter().find(|r| r[0] == "total").unwrap();
    let exact = Decimal::new(ledger_total, 6);
    assert_eq!(cost_of(total_row), exact);
    assert_eq!(sum_of("usage") + sum_of("adjustment"), exact);
    assert_eq!(sum_of("channel"), exact);
    assert_eq!(total_row[8], "12");
    let previous = rows
        .iter()
        .find(|r| r[0] == "previous_month_total")
        .unwrap();
    assert_eq!(
        (previous[1].as_str(), cost_of(previous)),
        ("2026-10", Decimal::new(90_000, 6))
    );
}

async fn a_report_from_rollups_equals_one_from_raw_rows(backend: Backend) {
    let test = TestDb::new(backend).await;
    november_ledger(&test).await;
    let november = month("2026-11");

    // Mid-month: the days before the 17th are rolled up, the rest is read raw.
    let mid = time("2026-11-17T12:00:00Z");
    let rolled = roll_up(&test.db, SHANGHAI, mid).await.unwrap();
    assert!(rolled.days_rolled_up >= 20, "{rolled:?}"); // from 20 October
    let later = time("2026-12-20T00:00:00Z");
    let raw = MonthlyReport::build_from(&test.db, november, SHANGHAI, later, Source::RawOnly)
        .await
        .unwrap();
    let mixed = MonthlyReport::build(&test.db, november, SHANGHAI, later)
        .await
        .unwrap();
    assert_eq!(mixed, raw);

    // Everything rolled up, then raw rows past retention deleted: the report stands.
    roll_up(&test.db, SHANGHAI, later).await.unwrap();
    let retention = std::time::Duration::from_secs(31 * 86_400);
    let deleted = apply_retention(&test.db, retention, time("2027-03-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(
        deleted.entries_deleted > 0 && deleted.sends_deleted > 0,
        "{deleted:?}"
    );
    let after_retention = MonthlyReport::build(&test.db, november, SHANGHAI, later)
        .await
        .unwrap();
    assert_eq!(after_retention, raw);
    // Reconciliations and their adjustment entries are never deleted.
    let adjustments: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM ledger_entries WHERE reconciliation_id IS NOT NULL")
            .fetch_one(test.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(adjustments, 1);
}

async fn retention_never_deletes_rows_that_are_not_rolled_up(backend: Backend) {
    let test = TestDb::new(backend).await;
    november_ledger(&test).await;
    // Rolled up to 10 November only.
    roll_up(&test.db, SHANGHAI, time("2026-11-10T12:00:00Z"))
        .await
        .unwrap();
    let (_, rolled_until) = tollgate::report::rolled_up_stretch(&test.db)
        .await
        .unwrap()
        .unwrap();
    let count = |sql: &'static str| {
        let db = test.db.clone();
        async move {
            sqlx::query(sql)
                .bind(to_micros(rolled_until))
                .fetch_one(db.pool())
                .await
                .unwrap()
                .try_get::<i64, _>("n")
                .unwrap()
        }
    };
    let later_sends = count("SELECT COUNT(*) AS n FROM sends WHERE created_at >= $1").await;
    let later_entries =
        count("SELECT COUNT(*) AS n FROM ledger_entries WHERE created_at >= $1").await;
    assert!(later_sends > 0 && later_entries > 0);

    let retention = std::time::Duration::from_secs(31 * 86_400);
    apply_retention(&test.db, retention, time("2027-06-01T00:00:00Z"))
        .await
        .unwrap();

    assert_eq!(
        count("SELECT COUNT(*) AS n FROM sends WHERE created_at < $1").await,
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM sends WHERE created_at >= $1").await,
        later_sends
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM ledger_entries WHERE created_at >= $1").await,
        later_entries
    );
    let packages: i64 = sqlx::query("SELECT COUNT(*) AS n FROM packages")
        .fetch_one(test.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(packages, 2);
}

on_both_backends!(
    a_charge_at_2330_on_the_last_day_belongs_to_that_month,
    report_totals_equal_the_ledger_to_the_fen_and_the_csv_parses_back,
    a_report_from_rollups_equals_one_from_raw_rows,
    retention_never_deletes_rows_that_are_not_rolled_up,
);

#[tokio::test]
async fn the_monthly_report_endpoint_is_for_admins_in_json_csv_and_html() {
    let app = spawn_app(Backend::Sqlite).await;
    let get = |query: &str, token: &str| {
        app.http
            .get(app.url(&format!("/v1/reports/monthly{query}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        get("?month=2026-11", SHOP_TOKEN).await.unwrap().status(),
        403
    );
    let json: serde_json::Value = get("?month=2026-11", ADMIN_TOKEN)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["month"], "2026-11");
    assert_eq!(json["from"], "2026-10-31T16:00:00Z");
    assert_eq!(json["total"]["total_cost"], "0.00");

    let csv = get("?month=2026-11&format=csv", ADMIN_TOKEN).await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let body = csv.text().await.unwrap();
    assert!(
        body.starts_with("section,month,channel,client,sends,"),
        "{body}"
    );
    assert!(body.contains("\r\ntotal,2026-11,"), "{body}");

    let html = get("?month=2026-11&format=html", ADMIN_TOKEN)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<h1>tollgate 月度费用报告 2026-11</h1>"),
        "{html}"
    );

    for bad in ["?month=2026-13", "?month=2026-11&format=xml"] {
        let response = get(bad, ADMIN_TOKEN).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_request");
    }
    // Without a month: last month.
    let default: serde_json::Value = get("", ADMIN_TOKEN).await.unwrap().json().await.unwrap();
    let expected = Month::containing(Utc::now(), SHANGHAI)
        .previous()
        .to_string();
    assert_eq!(default["month"], expected);
}
