//! Monthly report over a large ledger: scanning raw rows against reading daily roll-ups.
//!
//! Run with `cargo bench --bench report` (PostgreSQL on 127.0.0.1:5432, or
//! TOLLGATE_BENCH_POSTGRES_URL). It creates a throwaway database, fills one month with
//! CHARGES sends and their charge entries (generated in the database with
//! `generate_series`: three channels, five clients, a mix of outcomes), then builds the
//! month's report three times from raw rows only and three times from the roll-ups, in
//! the same run, and prints the median of each and their ratio. The database is dropped
//! at the end.

use std::time::{Duration, Instant};

use tollgate::report::{roll_up, Month, MonthlyReport, Source};
use tollgate::secret::Secret;
use tollgate::store::{to_micros, Db};

const CHARGES: i64 = 1_000_000;
const TIMEZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let admin_url = std::env::var("TOLLGATE_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("tollgate_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Db::connect(&Secret::new(admin_url.clone()), 1).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(admin.pool())
            .await?;
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        let result = run(&url).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(admin.pool())
            .await?;
        admin.close().await;
        result
    })
}

async fn run(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(&Secret::new(url.to_owned()), 4).await?;
    db.migrate().await?;
    let month = Month::parse("2026-10")?;
    let (from, to) = (month.start(TIMEZONE), month.end(TIMEZONE));
    let now = to + chrono::Duration::days(10);

    let filling = Instant::now();
    fill(&db, to_micros(from), to_micros(to)).await?;
    println!(
        "report benchmark: {CHARGES} charges in {month} (PostgreSQL), generated in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let rolling = Instant::now();
    let rolled = roll_up(&db, TIMEZONE, now).await?;
    println!(
        "roll-up of {} days (once, by the hourly housekeeping job): {:.2} s",
        rolled.days_rolled_up,
        rolling.elapsed().as_secs_f64()
    );

    let mut raw_times = Vec::new();
    let mut rollup_times = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let raw = MonthlyReport::build_from(&db, month, TIMEZONE, now, Source::RawOnly).await?;
        raw_times.push(started.elapsed());
        let started = Instant::now();
        let rolled = MonthlyReport::build(&db, month, TIMEZONE, now).await?;
        rollup_times.push(started.elapsed());
        reports.push((raw, rolled));
    }
    let (raw, rolled) = &reports[0];
    assert_eq!(raw, rolled, "the roll-up report must equal the raw one");
    assert_eq!(raw.total.figures.sends, CHARGES);
    let raw_median = median(&mut raw_times);
    let rollup_median = median(&mut rollup_times);
    println!(
        "report from raw rows: median {:.1} ms ({:?})",
        ms(raw_median),
        raw_times
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
    );
    println!(
        "report from roll-ups: median {:.1} ms ({:?})",
        ms(rollup_median),
        rollup_times
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
    );
    println!(
        "roll-ups are x{:.1} faster; total cost {} CNY over {} billed units",
        raw_median.as_secs_f64() / rollup_median.as_secs_f64(),
        raw.total.total_cost,
        raw.total.figures.billed_units
    );
    db.close().await;
    Ok(())
}

/// One package per channel, then CHARGES sends spread evenly over the month, each with
/// its charge entry. Every 20th send was rejected (still charged), every 50th uncertain.
async fn fill(db: &Db, from: i64, to: i64) -> anyhow::Result<()> {
    for channel in ["sms_code", "sms_notice", "voice_notice"] {
        sqlx::query(
            "INSERT INTO packages (channel, units, price_micros, purchased_at, taken, charged, created_at) \
             VALUES ($1, $2, $3, $4, $2, $2, $4)",
        )
        .bind(channel)
        .bind(CHARGES)
        .bind(CHARGES * 45_000)
        .bind(from)
        .execute(db.pool())
        .await?;
    }
    let step = (to - from) / CHARGES;
    sqlx::query(
        "INSERT INTO sends (id, channel, client, mobile_masked, units, allocation, status, \
         charged_units, cost_micros, created_at, settled_at) \
         SELECT 'msg_bench_' || i, \
                (ARRAY['sms_code','sms_notice','voice_notice'])[1 + i % 3], \
                'client-' || (i % 5), '138****8000', 1 + i % 2, '', \
                CASE WHEN i % 20 = 0 THEN 'vendor_rejected' WHEN i % 50 = 1 THEN 'uncertain' ELSE 'sent' END, \
                1 + i % 2, 45000 * (1 + i % 2), $1 + i * $2, $1 + i * $2 \
         FROM generate_series(0, $3 - 1) AS i",
    )
    .bind(from)
    .bind(step)
    .bind(CHARGES)
    .execute(db.pool())
    .await?;
    sqlx::query(
        "INSERT INTO ledger_entries (channel, package_id, send_id, client, units, cost_micros, created_at) \
         SELECT s.channel, p.id, s.id, s.client, s.charged_units, s.cost_micros, s.created_at \
         FROM sends s JOIN packages p ON p.channel = s.channel",
    )
    .execute(db.pool())
    .await?;
    sqlx::query("ANALYZE").execute(db.pool()).await?;
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
