//! Monthly reports: month boundaries, exact totals, CSV, retention, the endpoint, and a
//! route's cost split by the channel that carried it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use tollgate::domain::{LedgerMode, ManualClock, Outcome};
use tollgate::ledger::{Ledger, LedgerOptions, Settlement, UpstreamRecord};
use tollgate::report::{Month, MonthlyReport};
use tollgate::store::{to_micros, Db};

use crate::app::{spawn_app, spawn_app_with, AppOptions, TestApp, ADMIN_TOKEN, MOBILE, SHOP_TOKEN};
use crate::helpers::*;
use crate::on_both_backends;
use crate::vendor::StandInVendor;

const SHANGHAI: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn month(raw: &str) -> Month {
    Month::parse(raw).unwrap()
}

/// One send through the ledger at `at` (the ledger's clock is set there): reserved,
/// then settled as `outcome`.
async fn send_at(
    ledger: &Ledger,
    clock: &ManualClock,
    channel_name: &str,
    client: &str,
    units: u32,
    outcome: Outcome,
    at: &str,
) -> String {
    clock.set(time(at));
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
    id
}

/// Parses RFC 4180 CSV: fields in double quotes may hold commas, line breaks and doubled
/// quotes; records end with CRLF or LF. Written here because the report's CSV is the
/// only CSV the tests read and no CSV crate is a dependency.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "the CSV ends inside a quoted field");
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[test]
fn parse_csv_reads_quoted_fields_and_crlf() {
    assert_eq!(
        parse_csv("a,\"b,c\",\"x\"\"y\"\r\n,\"line\nbreak\",\r\n"),
        vec![
            vec!["a".to_owned(), "b,c".to_owned(), "x\"y".to_owned()],
            vec![String::new(), "line\nbreak".to_owned(), String::new()],
        ]
    );
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
    let clock = ManualClock::new(time("2026-10-01T00:00:00Z"));
    let ledger = test.ledger_at(&clock);
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
        &clock,
        "sms_code",
        "shop",
        2,
        Outcome::Sent,
        "2026-10-20T03:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        &clock,
        "sms_code",
        "shop",
        1,
        Outcome::Sent,
        "2026-11-03T02:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        &clock,
        "sms_code",
        "shop",
        3,
        Outcome::VendorRejected,
        "2026-11-04T09:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        &clock,
        "sms_code",
        "crm",
        2,
        Outcome::UpstreamError,
        "2026-11-05T09:00:00Z",
    )
    .await;
    send_at(
        &ledger,
        &clock,
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
            &clock,
            "voice_notice",
            "crm",
            1,
            Outcome::Sent,
            &format!("2026-11-{day}T06:00:00Z"),
        )
        .await;
    }
    // The vendor says 1 voice unit is left where the ledger has 2: one unit is charged.
    clock.set(time("2026-11-29T08:00:00Z"));
    ledger
        .reconcile(&channel("voice_notice"), 1, None)
        .await
        .unwrap();
    clock.set(time("2026-12-10T00:00:00Z"));
    ledger
}

async fn a_charge_at_2330_on_the_last_day_belongs_to_that_month(backend: Backend) {
    // The same two sends on a ledger in Asia/Shanghai and on one in UTC.
    let mut months = Vec::new();
    for timezone in [SHANGHAI, chrono_tz::UTC] {
        let test = TestDb::new(backend).await;
        let clock = ManualClock::new(time("2026-11-01T00:00:00Z"));
        let ledger = Ledger::with_options(
            test.db.clone(),
            LedgerOptions {
                timezone,
                clock: clock.clock(),
                ..LedgerOptions::new(LedgerMode::Enforce)
            },
        );
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
        let (at_2330, at_midnight) = ("2026-11-30T15:30:00Z", "2026-11-30T16:00:00Z");
        send_at(
            &ledger,
            &clock,
            "sms_code",
            "shop",
            1,
            Outcome::Sent,
            at_2330,
        )
        .await;
        send_at(
            &ledger,
            &clock,
            "sms_code",
            "shop",
            2,
            Outcome::Sent,
            at_midnight,
        )
        .await;
        let now = time("2027-01-15T00:00:00Z");
        let november = MonthlyReport::build(&ledger, month("2026-11"), now)
            .await
            .unwrap();
        let december = MonthlyReport::build(&ledger, month("2026-12"), now)
            .await
            .unwrap();
        months.push((november, december));
    }
    let (november, december) = &months[0];
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
    // In UTC both fall in November.
    let (in_utc, december_in_utc) = &months[1];
    assert_eq!(in_utc.total.figures.billed_units, 3);
    assert_eq!(december_in_utc.total.figures.sends, 0);
}

async fn report_totals_equal_the_ledger_to_the_fen_and_the_csv_parses_back(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = november_ledger(&test).await;
    let november = month("2026-11");
    let report = MonthlyReport::build(&ledger, november, time("2026-12-10T00:00:00Z"))
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
    let rows: Vec<Vec<String>> = parse_csv(&csv).into_iter().skip(1).collect();
    let cost_of = |row: &Vec<String>| row[9].parse::<Decimal>().unwrap();
    let sum_of =
        |section: &str| -> Decimal { rows.iter().filter(|r| r[0] == section).map(cost_of).sum() };
    let total_row = rows.iter().find(|r| r[0] == "total").unwrap();
    let exact = Decimal::new(ledger_total, 6);
    assert_eq!(cost_of(total_row), exact);
    assert_eq!(sum_of("usage") + sum_of("adjustment"), exact);
    assert_eq!(sum_of("channel"), exact);
    // Every send here named its channel: one direct row per channel, with all of it.
    assert_eq!(sum_of("route") + sum_of("adjustment"), exact);
    assert!(rows
        .iter()
        .filter(|r| r[0] == "route")
        .all(|r| r[11].is_empty()));
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

/// (channel, client) → (settled sends, billed units, cost) recomputed from the raw
/// rows, for sends settled in `[from, to)`.
async fn raw_usage(
    db: &Db,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> std::collections::BTreeMap<(String, String), (i64, i64, i64)> {
    let rows = sqlx::query(
        "SELECT channel, client, COUNT(*) AS sends, CAST(SUM(charged_units) AS BIGINT) AS units, \
         CAST(SUM(cost_micros) AS BIGINT) AS cost FROM sends WHERE status <> 'reserved' \
         AND settled_at >= $1 AND settled_at < $2 GROUP BY channel, client",
    )
    .bind(to_micros(from))
    .bind(to_micros(to))
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|row| {
            (
                (
                    row.try_get("channel").unwrap(),
                    row.try_get("client").unwrap(),
                ),
                (
                    row.try_get("sends").unwrap(),
                    row.try_get("units").unwrap(),
                    row.try_get("cost").unwrap(),
                ),
            )
        })
        .collect()
}

async fn a_report_equals_a_recomputation_from_the_raw_rows_and_outlives_them(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = november_ledger(&test).await;
    let november = month("2026-11");
    let later = time("2026-12-20T00:00:00Z");
    let report = MonthlyReport::build(&ledger, november, later)
        .await
        .unwrap();
    let raw = raw_usage(&test.db, november.start(SHANGHAI), november.end(SHANGHAI)).await;
    let from_report: std::collections::BTreeMap<_, _> = report
        .lines
        .iter()
        .map(|l| {
            (
                (l.channel.clone(), l.client.clone()),
                (
                    l.figures.sends,
                    l.figures.billed_units,
                    l.figures.cost.micros(),
                ),
            )
        })
        .collect();
    assert_eq!(from_report, raw);

    // Raw rows past retention deleted: the report reads the aggregates and stands.
    let retention = std::time::Duration::from_secs(31 * 86_400);
    let deleted = ledger
        .housekeeping(Some(retention), time("2027-03-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(
        deleted.entries_deleted > 0 && deleted.sends_deleted > 0,
        "{deleted:?}"
    );
    let after_retention = MonthlyReport::build(&ledger, november, later)
        .await
        .unwrap();
    assert_eq!(after_retention, report);
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

async fn retention_keeps_reserved_sends_packages_and_reconciliations(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = november_ledger(&test).await;
    // A send reserved in November and never settled (its instance died).
    let in_flight = reserved(
        ledger
            .reserve(&channel("sms_code"), request(1))
            .await
            .unwrap(),
    );
    let count = |sql: &'static str| {
        let db = test.db.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(db.pool())
                .await
                .unwrap()
                .try_get::<i64, _>("n")
                .unwrap()
        }
    };
    let retention = std::time::Duration::from_secs(31 * 86_400);
    ledger
        .housekeeping(Some(retention), time("2027-06-01T00:00:00Z"))
        .await
        .unwrap();

    assert_eq!(
        count("SELECT COUNT(*) AS n FROM sends WHERE status <> 'reserved'").await,
        0
    );
    let kept = ledger.get_send(&in_flight.send_id).await.unwrap().unwrap();
    assert_eq!(kept.status, tollgate::ledger::SendStatus::Reserved);
    assert_eq!(count("SELECT COUNT(*) AS n FROM packages").await, 2);
    assert_eq!(count("SELECT COUNT(*) AS n FROM reconciliations").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM ledger_entries WHERE send_id IS NOT NULL").await,
        0
    );
}

/// The app with a second SMS vendor, `backup_sms` (its own stand-in, which is returned),
/// and the route `otp` over `sms_code` then `backup_sms` (SPEC §13).
pub async fn app_with_a_route(backend: Backend) -> (TestApp, StandInVendor) {
    let backup = StandInVendor::start().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: format!(
                r#"
                [[channels]]
                name = "backup_sms"
                kind = "sms_code"
                url = "{url}"
                method = "POST"
                signature = "【卡池】"

                [[templates]]
                name = "login_code"
                channel = "backup_sms"
                body = "【卡池】你的验证码是：#code#，3分钟内有效！"

                [[routes]]
                name = "otp"
                channels = ["sms_code", "backup_sms"]
                strategy = "priority"
                "#,
                url = backup.url("/chuangxin/dxjk"),
            ),
            ..AppOptions::default()
        },
    )
    .await;
    (app, backup)
}

/// Through [`app_with_a_route`]: one code sent to `sms_code` itself, then five through
/// the route `otp`: `sms_code`'s 4 units (¥0.10 each) carry three of them, and
/// `backup_sms` (¥0.05 a unit) the two sent after they ran out.
pub async fn send_through_the_route(app: &TestApp, backup: &StandInVendor) {
    app.add_package("sms_code", 4, "0.40").await;
    app.add_package("backup_sms", 100, "5.00").await;
    assert_eq!(app.send_login_code().await.status(), 200);
    let mut carriers = Vec::new();
    for _ in 0..5 {
        let response = app
            .send_json(&serde_json::json!({
                "channel": "otp",
                "to": MOBILE,
                "template": "login_code",
                "params": { "code": "482913" }
            }))
            .await;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["route"], "otp", "{answer}");
        carriers.push(answer["channel"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        carriers,
        [
            "sms_code",
            "sms_code",
            "sms_code",
            "backup_sms",
            "backup_sms"
        ]
    );
    assert_eq!((app.vendor.calls(), backup.calls()), (4, 2));
}

/// The report's route-and-channel rows as (route, channel) → (sends, units, cost).
fn route_rows(json: &serde_json::Value) -> Vec<(String, String, i64, i64, String)> {
    json["routes"]
        .as_array()
        .expect("a routes section")
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap_or("(direct)").to_owned(),
                r["channel"].as_str().unwrap().to_owned(),
                r["sends"].as_i64().unwrap(),
                r["billed_units"].as_i64().unwrap(),
                r["cost"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn the_report_splits_a_routes_cost_by_the_channel_that_carried_it(backend: Backend) {
    // Arrange: a direct send and five through the route, which fails over.
    let (app, backup) = app_with_a_route(backend).await;
    send_through_the_route(&app, &backup).await;
    let month = Month::containing(app.ledger.now(), SHANGHAI);

    // Act: the month's report, as JSON and as CSV.
    let path = format!("/v1/reports/monthly?month={month}");
    let json = app.get_json(&path, ADMIN_TOKEN).await;
    let csv = app
        .get_as(&format!("{path}&format=csv"), ADMIN_TOKEN)
        .await
        .text()
        .await
        .unwrap();

    // Assert: the route's cost is split by the channel that carried it, routes first,
    // then the direct sends.
    let direct = "(direct)".to_owned();
    assert_eq!(
        route_rows(&json),
        [
            (
                "otp".to_owned(),
                "backup_sms".to_owned(),
                2,
                2,
                "0.10".to_owned()
            ),
            (
                "otp".to_owned(),
                "sms_code".to_owned(),
                3,
                3,
                "0.30".to_owned()
            ),
            (direct, "sms_code".to_owned(), 1, 1, "0.10".to_owned()),
        ]
    );
    assert!(json["routes"][2]["route"].is_null());

    // The totals are the ledger's: every entry of the month, and each channel's charges.
    let ledger_total =
        ledger_cost_between(&app.db.db, month.start(SHANGHAI), month.end(SHANGHAI)).await;
    let exact = Decimal::new(ledger_total, 6);
    assert_eq!(exact, "0.50".parse::<Decimal>().unwrap());
    let decimal = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    assert_eq!(decimal(&json["total"]["total_cost"]), exact);
    let routes = json["routes"].as_array().unwrap();
    let json_route_sum: Decimal = routes.iter().map(|r| decimal(&r["cost"])).sum();
    assert_eq!(json_route_sum, exact);
    assert_eq!(
        routes
            .iter()
            .map(|r| r["sends"].as_i64().unwrap())
            .sum::<i64>(),
        json["total"]["sends"].as_i64().unwrap()
    );
    for totals in app.ledger.totals().await.unwrap() {
        let (units, cost): (i64, Decimal) = routes
            .iter()
            .filter(|r| r["channel"] == totals.channel.as_str())
            .fold((0, Decimal::ZERO), |(u, c), r| {
                (
                    u + r["billed_units"].as_i64().unwrap(),
                    c + decimal(&r["cost"]),
                )
            });
        assert_eq!(
            (units, cost),
            (
                totals.billed_units,
                totals.cost.to_string().parse().unwrap()
            ),
            "{}",
            totals.channel
        );
        let by_channel = json["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == totals.channel.as_str())
            .unwrap();
        assert_eq!(decimal(&by_channel["total_cost"]), cost);
    }

    // The CSV says the same, with the route in its own column.
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], tollgate::report::CSV_HEADER);
    let csv_routes: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .filter(|r| r[0] == "route")
        .map(|r| (r[11].as_str(), r[2].as_str(), r[8].as_str(), r[9].as_str()))
        .collect();
    assert_eq!(
        csv_routes,
        [
            ("otp", "backup_sms", "2", "0.10"),
            ("otp", "sms_code", "3", "0.30"),
            ("", "sms_code", "1", "0.10"),
        ]
    );
    let csv_route_sum: Decimal = rows
        .iter()
        .filter(|r| r[0] == "route")
        .map(|r| r[9].parse::<Decimal>().unwrap())
        .sum();
    let csv_total = rows.iter().find(|r| r[0] == "total").unwrap();
    assert_eq!(csv_route_sum, exact);
    assert_eq!(csv_total[9].parse::<Decimal>().unwrap(), exact);

    // People's formats carry the section too: the HTML email and the CLI's table.
    let html = app
        .get_as(&format!("{path}&format=html"), ADMIN_TOKEN)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("按路由与渠道"), "{html}");
    assert!(html.contains("By route and channel"));
    assert!(
        html.contains("<td>otp</td><td>backup_sms</td><td>2</td>"),
        "{html}"
    );
    let report = MonthlyReport::build(&app.ledger, month, app.ledger.now())
        .await
        .unwrap();
    let table = tollgate::report::to_table(&report, &Default::default());
    let section = table
        .split("按路由与渠道 By route and channel")
        .nth(1)
        .expect("the table has the section");
    assert!(
        section.contains("otp") && section.contains("backup_sms"),
        "{table}"
    );
    assert!(section.contains(tollgate::report::DIRECT_LABEL), "{table}");
}

on_both_backends!(
    a_charge_at_2330_on_the_last_day_belongs_to_that_month,
    the_report_splits_a_routes_cost_by_the_channel_that_carried_it,
    report_totals_equal_the_ledger_to_the_fen_and_the_csv_parses_back,
    a_report_equals_a_recomputation_from_the_raw_rows_and_outlives_them,
    retention_keeps_reserved_sends_packages_and_reconciliations,
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
