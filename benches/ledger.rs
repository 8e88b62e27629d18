//! Send-path ledger throughput: batched writers against one transaction per operation.
//!
//! Run with `cargo bench --bench ledger` (PostgreSQL on 127.0.0.1:5432, or
//! TOLLGATE_BENCH_POSTGRES_URL). Each round runs the same workload twice in this
//! process, on a throwaway database: concurrent tasks each reserve and settle (charge)
//! one unit at a time. The baseline writer applies one operation per transaction, as a
//! naive ledger would; the batched writer is tollgate's. Machines here are shared and
//! noisy, so the result is reported as ratios measured in the same run, not as absolute
//! numbers to compare across runs.

use std::time::{Duration, Instant};

use chrono::Utc;
use tollgate::domain::{ChannelName, LedgerMode, Outcome, PackageUnits, SendClass, Units, Yuan};
use tollgate::ledger::{
    Ledger, LedgerOptions, NewPackage, ReserveOutcome, ReserveRequest, Settlement, UpstreamRecord,
};
use tollgate::secret::Secret;
use tollgate::store::Db;

const TASKS: usize = 64;
const SENDS_PER_TASK: usize = 150;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let admin_url = std::env::var("TOLLGATE_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        println!("ledger benchmark: {TASKS} tasks x {SENDS_PER_TASK} sends (reserve + charge), PostgreSQL");
        let mut ratios = Vec::new();
        for round in 1..=3 {
            let baseline = run(&admin_url, 1).await?;
            let batched = run(&admin_url, tollgate::ledger::MAX_BATCH).await?;
            let ratio = batched.per_second / baseline.per_second;
            println!(
                "round {round}: baseline {:>7.0} sends/s (p50 {:>6.2} ms, p99 {:>6.2} ms) | batched {:>7.0} sends/s (p50 {:>6.2} ms, p99 {:>6.2} ms) | throughput x{ratio:.2}, p99 latency x{:.2}",
                baseline.per_second,
                ms(baseline.p50),
                ms(baseline.p99),
                batched.per_second,
                ms(batched.p50),
                ms(batched.p99),
                batched.p99.as_secs_f64() / baseline.p99.as_secs_f64(),
            );
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        println!("median throughput ratio (batched / one transaction per operation): x{:.2}", ratios[1]);
        Ok(())
    })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

struct Result {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(admin_url: &str, batch_limit: usize) -> anyhow::Result<Result> {
    let name = format!("tollgate_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = Db::connect(&Secret::new(admin_url), 1).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await?;
    let url = Secret::new(format!(
        "{}/{name}",
        admin_url.rsplit_once('/').expect("a database URL").0
    ));
    let result = async {
        let db = Db::connect(&url, 16).await?;
        db.migrate().await?;
        let ledger = Ledger::with_options(
            db.clone(),
            LedgerOptions {
                batch_limit,
                ..LedgerOptions::new(LedgerMode::Enforce)
            },
        );
        let channel = ChannelName::parse("sms_code")?;
        let package = NewPackage::new(
            channel.clone(),
            PackageUnits::new(1_000_000)?,
            Yuan::parse("45000.00")?,
            Utc::now(),
            None,
            None,
            None,
        )?;
        ledger.register_package(package).await?;
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let ledger = ledger.clone();
                let channel = channel.clone();
                tokio::spawn(async move { send_loop(ledger, channel).await })
            })
            .collect();
        let mut latencies = Vec::with_capacity(TASKS * SENDS_PER_TASK);
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let charged = ledger.quota(&channel).await?.used;
        anyhow::ensure!(
            charged == (TASKS * SENDS_PER_TASK) as i64,
            "charged {charged} units"
        );
        db.close().await;
        anyhow::Ok(Result {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: latencies[latencies.len() / 2],
            p99: latencies[latencies.len() * 99 / 100],
        })
    }
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await?;
    admin.close().await;
    result
}

/// One task's sends: reserve, then charge; returns each send's ledger latency.
async fn send_loop(ledger: Ledger, channel: ChannelName) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(SENDS_PER_TASK);
    for _ in 0..SENDS_PER_TASK {
        let started = Instant::now();
        let request = ReserveRequest {
            send_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            client: "bench".into(),
            units: Units::ONE,
            class: SendClass::Critical,
            route: None,
            idempotency: None,
            mobile_masked: "138****8000".into(),
            mobile_full: None,
            attempts: Vec::new(),
            takes_key_from: None,
        };
        let ReserveOutcome::Reserved(reservation) = ledger.reserve(&channel, request).await? else {
            anyhow::bail!("the package ran out");
        };
        let settlement = Settlement {
            outcome: Outcome::Sent,
            charge: true,
            upstream: UpstreamRecord::default(),
        };
        ledger.settle(&reservation, settlement).await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}
